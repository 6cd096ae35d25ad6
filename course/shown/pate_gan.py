"""A GAN-based semi-supervised student for PATE (PATE 2017 and 2018 used one for MNIST).

The method is feature matching of Salimans et al. ("Improved techniques for training GANs", NeurIPS 2016,
sections 3.1 and 5). The discriminator is a 10-class classifier whose logits also say how real an image is:
with Z(x) = sum_j exp(logit_j(x)), D(x) = Z(x) / (Z(x) + 1) is the probability that x is real. It learns from
three batches per step:

- the labelled images, by cross-entropy on the aggregator's noisy labels;
- public images without labels, which it should call real: -log D(x);
- the generator's images, which it should call fake: -log(1 - D(G(z))).

The generator does not try to fool the discriminator directly. It matches the mean of the discriminator's
last hidden layer on real and on generated images. Its images fill the space between the classes, and that is
what teaches the classifier where the class boundaries are not. `train_gan_assisted_student` then
pseudo-labels the unlabelled images it is sure of and hands them to the self-training CNN
(`course.shown.pate_training.train_semi_supervised_student`).

Everything here sees only public images and the aggregator's noisy labels: it is post-processing of the
aggregator's output and costs no privacy.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm
from tqdm.auto import tqdm

from course.shown.pate_training import confident_pseudo_labels, train_semi_supervised_student


class FeatureMatchingDiscriminator(nn.Module):
    """An MLP classifier with weight normalisation and Gaussian noise on its input and hidden layers (training
    mode only), as in Salimans et al. 2016 for MNIST. Their widths are 1000, 500, 250, 250, 250; ours are
    narrower by default, about 50 ms a training step on one CPU thread against 133. Returns logits
    `(n, num_classes)`, and with `features=True` also the last hidden layer, which the generator matches."""

    def __init__(
        self,
        widths: tuple[int, ...] = (500, 250, 250),
        num_inputs: int = 784,
        num_classes: int = 10,
        input_noise: float = 0.3,
        hidden_noise: float = 0.5,
    ):
        super().__init__()
        if not widths or min(widths) < 1 or num_classes < 2 or input_noise < 0 or hidden_noise < 0:
            raise ValueError(
                f"need positive widths, at least 2 classes and noise >= 0; got widths={widths}, "
                f"num_classes={num_classes}, noise {input_noise}, {hidden_noise}"
            )
        sizes = (num_inputs, *widths)
        self.hidden = nn.ModuleList(weight_norm(nn.Linear(a, b)) for a, b in zip(sizes, sizes[1:]))
        self.output = weight_norm(nn.Linear(widths[-1], num_classes))
        self.input_noise, self.hidden_noise = input_noise, hidden_noise
        self.noise: torch.Generator | None = None  # set by the trainer, so that its noise is seeded

    def _noisy(self, values: torch.Tensor, std: float) -> torch.Tensor:
        if not self.training or std == 0:
            return values
        return values + std * torch.randn(values.shape, generator=self.noise)

    def forward(self, images: torch.Tensor, features: bool = False):
        hidden = self._noisy(images.flatten(1), self.input_noise)
        for layer in self.hidden:
            hidden = self._noisy(F.relu(layer(hidden)), self.hidden_noise)
        logits = self.output(hidden)
        return (logits, hidden) if features else logits


class FeatureMatchingGenerator(nn.Module):
    """Uniform noise `(n, latent)` -> images `(n, 1, 28, 28)` in [0, 1]: two softplus layers of 500 with batch
    norm, then a weight-normalised sigmoid layer (Salimans et al. 2016, MNIST)."""

    def __init__(self, latent: int = 100, image_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        self.latent, self.image_shape = latent, image_shape
        self.net = nn.Sequential(
            nn.Linear(latent, 500),
            nn.Softplus(),
            nn.BatchNorm1d(500),
            nn.Linear(500, 500),
            nn.Softplus(),
            nn.BatchNorm1d(500),
            weight_norm(nn.Linear(500, math.prod(image_shape))),
            nn.Sigmoid(),
        )

    def forward(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.net(torch.rand(count, self.latent, generator=generator)).view(count, *self.image_shape)


def _check_images_and_labels(
    labelled_images: torch.Tensor, labels: torch.Tensor, unlabelled_images: torch.Tensor, num_classes: int
) -> None:
    if labelled_images.ndim != 4 or labels.shape != (len(labelled_images),) or len(labelled_images) == 0:
        raise ValueError(
            f"expected non-empty labelled images (n, 1, 28, 28) and labels (n,), got "
            f"{tuple(labelled_images.shape)} and {tuple(labels.shape)}"
        )
    if unlabelled_images.shape[1:] != labelled_images.shape[1:]:
        raise ValueError(
            f"unlabelled images {tuple(unlabelled_images.shape)} do not match the labelled ones "
            f"{tuple(labelled_images.shape)}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")


def train_feature_matching_gan(
    labelled_images: torch.Tensor,
    labels: torch.Tensor,
    real_images: torch.Tensor,
    steps: int = 9_000,
    batch_size: int = 100,
    lr: float = 3e-3,
    widths: tuple[int, ...] = (500, 250, 250),
    num_classes: int = 10,
    seed: int = 0,
    progress: str | None = None,
) -> FeatureMatchingDiscriminator:
    """Train a discriminator and a generator by feature matching and return the discriminator, a classifier.

    `labelled_images` `(n, 1, 28, 28)` with their noisy `labels` `(n,)`; `real_images` `(m, 1, 28, 28)` are
    public images without labels (they may include the labelled ones). Each of `steps` steps draws
    `batch_size` labelled images (with replacement: there are few), `batch_size` real ones and as many
    generated ones, updates the discriminator on cross-entropy + the real/fake loss, then the generator on
    the squared distance between the mean features of a fresh real batch and a fresh generated batch. Adam
    (lr `lr`, beta1 0.5) for both; the rate stays at `lr` for two thirds of the steps and falls linearly to 0 in
    the last third (Salimans et al.'s schedule, in steps). Seeded by `seed`; `progress` labels a bar.
    """
    _check_images_and_labels(labelled_images, labels, real_images, num_classes)
    if steps < 1 or batch_size < 1 or lr <= 0 or len(real_images) == 0:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, lr > 0 and some real images; got steps={steps}, "
            f"batch_size={batch_size}, lr={lr}, {len(real_images)} real images"
        )
    torch.manual_seed(seed)  # the initial weights
    randomness = torch.Generator().manual_seed(seed)
    discriminator = FeatureMatchingDiscriminator(widths, math.prod(labelled_images.shape[1:]), num_classes)
    generator = FeatureMatchingGenerator(image_shape=tuple(labelled_images.shape[1:]))
    discriminator.noise = randomness
    optimisers = [torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999)) for m in (discriminator, generator)]
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda step: min(1.0, 3.0 * (1.0 - step / steps))) for o in optimisers
    ]
    discriminator_optimiser, generator_optimiser = optimisers
    discriminator.train()
    generator.train()

    def draw(images: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, len(images), (batch_size,), generator=randomness)

    for _ in tqdm(range(steps), desc=progress, disable=progress is None, leave=False):
        chosen = draw(labelled_images)
        fake = generator(batch_size, randomness).detach()
        real_log_z = torch.logsumexp(discriminator(real_images[draw(real_images)]), dim=1)
        fake_log_z = torch.logsumexp(discriminator(fake), dim=1)
        # -log D(real) = softplus(log Z) - log Z and -log(1 - D(fake)) = softplus(log Z), each averaged, halved
        real_fake_loss = 0.5 * (F.softplus(real_log_z) - real_log_z).mean() + 0.5 * F.softplus(fake_log_z).mean()
        loss = F.cross_entropy(discriminator(labelled_images[chosen]), labels[chosen]) + real_fake_loss
        discriminator_optimiser.zero_grad()
        loss.backward()
        discriminator_optimiser.step()

        _, real_features = discriminator(real_images[draw(real_images)], features=True)
        _, fake_features = discriminator(generator(batch_size, randomness), features=True)
        matching_loss = (real_features.detach().mean(dim=0) - fake_features.mean(dim=0)).pow(2).mean()
        generator_optimiser.zero_grad()
        matching_loss.backward()
        generator_optimiser.step()
        for schedule in schedules:
            schedule.step()
    discriminator.noise = None
    discriminator.eval()
    return discriminator


def train_gan_assisted_student(
    labelled_images: torch.Tensor,
    labels: torch.Tensor,
    unlabelled_images: torch.Tensor,
    gan_steps: int = 9_000,
    confidence: float = 0.95,
    rounds: int = 1,
    seed: int = 0,
    progress: str | None = None,
    **self_training,
) -> nn.Module:
    """The PATE student: a feature-matching GAN, then self-training of a CNN on what the GAN is sure of.

    1. `train_feature_matching_gan` on the labelled images (noisy labels) with all public images as the real
       ones (`gan_steps` steps).
    2. The GAN's classifier labels the unlabelled images; those it gives probability >= `confidence` join the
       labelled set with its guesses.
    3. `train_semi_supervised_student` trains a CNN on that set, with the rest as its unlabelled images, for
       `rounds` more rounds of self-training at the same confidence; `self_training` goes to it (e.g.
       `augment`). Returns the CNN.

    Seeded by `seed` throughout, so a run is reproducible bit for bit under one thread and
    `torch.use_deterministic_algorithms` (as scripts/pate2018_results.py runs it); results/pate2018_mnist.md gives
    its held-out accuracy on MNIST over several training runs.
    """
    _check_images_and_labels(labelled_images, labels, unlabelled_images, num_classes=10)
    gan = train_feature_matching_gan(
        labelled_images,
        labels,
        torch.cat([labelled_images, unlabelled_images]),
        steps=gan_steps,
        seed=seed,
        progress=progress,
    )
    keep, guesses = confident_pseudo_labels(gan, unlabelled_images, confidence)
    return train_semi_supervised_student(
        torch.cat([labelled_images, unlabelled_images[keep]]),
        torch.cat([labels, guesses[keep]]),
        unlabelled_images[~keep],
        rounds=rounds,
        confidence=confidence,
        seed=seed,
        **self_training,
    )
