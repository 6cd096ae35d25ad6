"""MNIST for PATE (notebook 05): the splits, a small CNN, and the training of teachers and students.

These functions are shown to students in read-only notebook cells, so they use only public packages.

The story: partner hospitals hold labelled private data (MNIST's 60,000 training images), and our hospital
holds unlabelled images (MNIST's 10,000 test images, shuffled with seed 0: the first 9,000 are the public,
unlabelled student set and the last 1,000 a held-out evaluation set). Images are kept in memory as float
tensors of shape `(n, 1, 28, 28)` scaled to [0, 1], labels as int64 tensors of shape `(n,)`, so that training
hundreds of small teachers spends its time on arithmetic rather than on data loading.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from course.shown.training import train_epochs


def load_mnist_splits(data_root: str, num_public: int = 9_000, seed: int = 0):
    """MNIST through torchvision's own loader, cut into the three sets of the PATE story.

    Returns `((private_images, private_labels), (public_images, public_labels), (eval_images, eval_labels))`:
    the 60,000 training images (the partners' private data), then the 10,000 test images after a shuffle
    seeded with `seed`: the first `num_public` of them are the public set the student learns from, the rest
    are held out for evaluation. MNIST's test set is ordered by difficulty (its second half is harder), so
    without the shuffle the evaluation images would all be harder than the queried ones. The public labels
    exist only to *measure* how good the teachers' answers are; the student never sees them.
    Archives are read from `<data_root>/MNIST/raw` and downloaded only when missing.
    """
    private = torchvision.datasets.MNIST(root=data_root, train=True, download=True)
    test = torchvision.datasets.MNIST(root=data_root, train=False, download=True)
    if not 0 < num_public < len(test):
        raise ValueError(f"num_public must be between 1 and {len(test) - 1}, got {num_public}")
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(test)))

    def as_tensors(dataset, rows):
        images = dataset.data[rows].unsqueeze(1).float().div(255)  # uint8 (n, 28, 28) -> float (n, 1, 28, 28)
        return images, dataset.targets[rows].long()

    return (
        as_tensors(private, slice(None)),
        as_tensors(test, order[:num_public]),
        as_tensors(test, order[num_public:]),
    )


class SmallCNN(nn.Module):
    """Two 5x5 convolutions with stride 2 (28x28 -> 14x14 -> 7x7) and a linear layer to 10 class logits.

    Input `(batch, 1, 28, 28)`, output `(batch, 10)`. Strided convolutions instead of pooling keep it fast on
    a CPU: about 0.2 million multiply-adds per image with the default `channels=(8, 16)`.
    """

    def __init__(self, channels: tuple[int, int] = (8, 16), num_classes: int = 10):
        super().__init__()
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, first, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(first, second, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(second * 7 * 7, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def random_shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """The batch `(n, 1, 28, 28)` moved by one random offset of up to `max_shift` pixels in each direction.

    Empty borders are filled with 0 (background). A cheap augmentation that matters when a model has only a
    few hundred examples, as each teacher does.
    """
    size = images.shape[-1]
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift))
    down, right = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., down : down + size, right : right + size]


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    max_degrees: float = 15.0,
    max_scale: float = 0.1,
    max_shift: float = 0.1,
) -> torch.Tensor:
    """The batch `(n, 1, 28, 28)` with an independent random rotation, scaling and shift per image.

    Rotation up to `max_degrees`, scale in [1 - max_scale, 1 + max_scale], shift up to `max_shift` of the image
    size in each direction; bilinear resampling, zero (background) outside. A stronger augmentation than
    `random_shift`, for a student that must learn from few labels.
    """
    n = len(images)
    uniform = torch.rand(n, 4, generator=generator) * 2 - 1  # in [-1, 1)
    angle = uniform[:, 0] * max_degrees * torch.pi / 180
    scale = 1 + uniform[:, 1] * max_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, uniform[:, 2] * 2 * max_shift], dim=1),
            torch.stack([sin, cos, uniform[:, 3] * 2 * max_shift], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def train_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
    augment=True,
    progress: str | None = None,
) -> nn.Module:
    """Train `model` in place on `images` `(n, 1, 28, 28)` with `labels` `(n,)` and return it.

    A fresh Adam optimizer is created here, for this model only: two teachers that shared a model or an
    optimizer would be one model trained on everybody's data. Cross-entropy loss; a one-cycle schedule
    (the learning rate rises to `lr` during the first 30% of the steps, then decays to almost 0), which
    avoids the occasional diverging start of a constant large rate and makes the final model depend little
    on the last few batches; shuffled mini-batches drawn from a generator seeded with `seed`; random shifts
    when `augment` is True (`random_shift`), no augmentation when False, or `augment(batch, generator)` when it
    is a function (e.g. `random_affine`). `progress` is the label of a progress bar over the epochs (None: no bar).
    """
    if images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError(
            f"expected images (n, 1, 28, 28) and labels (n,), got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if len(images) == 0 or epochs < 1 or batch_size < 1:
        raise ValueError(
            f"need at least one example, epoch and batch size; got {len(images)} examples, "
            f"epochs={epochs}, batch_size={batch_size}"
        )
    augmentation = random_shift if augment is True else augment or None
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)

    def batches(epoch):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            yield order[start : start + batch_size]

    def step(batch):
        inputs = augmentation(images[batch], generator) if augmentation else images[batch]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels[batch])
        loss.backward()
        optimizer.step()
        schedule.step()
        return loss.item(), len(batch)

    train_epochs(model, epochs, batches, step, progress=progress, leave=False)
    model.eval()
    return model


def train_semi_supervised_student(
    labelled_images: torch.Tensor,
    labels: torch.Tensor,
    unlabelled_images: torch.Tensor,
    rounds: int = 2,
    confidence: float = 0.95,
    example_budget: int = 80_000,
    max_epochs: int = 40,
    channels: tuple[int, int] = (16, 32),
    augment=True,
    seed: int = 0,
    progress: str | None = None,
) -> nn.Module:
    """A student trained by self-training (pseudo-labelling with a confidence threshold) on public images only.

    `labelled_images` `(n, 1, 28, 28)` carry the aggregator's noisy `labels` `(n,)`; `unlabelled_images`
    `(u, 1, 28, 28)` are the public images that were not answered. Round 0 trains a fresh `SmallCNN(channels)`
    on the labelled images. Each further round labels the unlabelled images with the previous model, keeps those
    it predicts with probability at least `confidence`, and trains a fresh model on the labelled images plus
    these pseudo-labelled ones. Every model is trained by `train_model` for
    `min(max_epochs, ceil(example_budget / training-set size))` epochs (at least one) with augmentation
    `augment` (see `train_model`), seeded from `seed`.
    The student never sees a private image, nor any label but the noisy ones: it is post-processing of the
    aggregator's output. Returns the last round's model.
    """
    if rounds < 0 or not 0 < confidence <= 1:
        raise ValueError(f"need rounds >= 0 and 0 < confidence <= 1, got rounds={rounds}, confidence={confidence}")
    if len(labelled_images) == 0:
        raise ValueError("the student needs at least one labelled image")

    def fit(images, targets, model_seed):
        epochs = max(1, min(max_epochs, -(-example_budget // len(images))))
        torch.manual_seed(model_seed)
        return train_model(SmallCNN(channels=channels), images, targets, epochs, seed=model_seed, augment=augment)

    images, targets = labelled_images, labels
    model = None
    for round_index in tqdm(range(rounds + 1), desc=progress, disable=progress is None, leave=False):
        if round_index > 0:
            keep, guesses = confident_pseudo_labels(model, unlabelled_images, confidence)
            images = torch.cat([labelled_images, unlabelled_images[keep]])
            targets = torch.cat([labels, guesses[keep]])
        model = fit(images, targets, seed + round_index)
    return model


def train_teachers(
    images: torch.Tensor, labels: torch.Tensor, partitions, epochs: int, seed: int = 0, **training
) -> list[nn.Module]:
    """One new `SmallCNN` per partition, each trained only on its own examples; returns the teachers in order.

    `partitions` is a list of index arrays into `images` `(n, 1, 28, 28)` and `labels` `(n,)` (disjoint, from
    `partition_indices`). Teacher t is initialised from `torch.manual_seed(seed + t)` and trained by
    `train_model` (extra keyword arguments go there) with its own model and its own optimizer.
    """
    teachers = []
    for index, part in enumerate(tqdm(partitions, desc="training teachers")):
        part = torch.as_tensor(np.asarray(part), dtype=torch.long)
        if part.numel() == 0:
            raise ValueError(f"partition {index} is empty: every teacher needs training data")
        torch.manual_seed(seed + index)
        teacher = SmallCNN()
        teachers.append(train_model(teacher, images[part], labels[part], epochs, seed=seed + index, **training))
    return teachers


def predict_classes(model: nn.Module, images: torch.Tensor, batch_size: int = 1_000) -> torch.Tensor:
    """The model's predicted class for each of `images` `(n, 1, 28, 28)`: an int64 tensor of shape `(n,)`."""
    return batched_logits(model, images, batch_size).argmax(dim=1)


def predict_classes_augmented(
    model: nn.Module,
    images: torch.Tensor,
    views: int = 8,
    seed: int = 0,
    max_degrees: float = 8.0,
    max_scale: float = 0.05,
    max_shift: float = 0.05,
    batch_size: int = 1_000,
) -> torch.Tensor:
    """Test-time augmentation: per image, the class with the largest softmax averaged over the image itself and
    `views` copies moved by `random_affine` (a milder one than in training by default), seeded with `seed`.

    Returns int64 classes of shape `(n,)`. Averaging over small moves smooths out a model's quirks on the exact
    pixels of an image; it uses nothing but the model and the image, so it is post-processing.
    """
    if views < 0:
        raise ValueError(f"views must be >= 0, got {views}")
    generator = torch.Generator().manual_seed(seed)
    probabilities = torch.softmax(batched_logits(model, images, batch_size), dim=1)
    for _ in range(views):
        moved = random_affine(images, generator, max_degrees, max_scale, max_shift)
        probabilities += torch.softmax(batched_logits(model, moved, batch_size), dim=1)
    return probabilities.argmax(dim=1)


def confident_pseudo_labels(
    model: nn.Module, images: torch.Tensor, confidence: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(keep, guesses)`: the model's predicted class for each image and a mask of the predictions whose
    softmax probability is at least `confidence` (in (0, 1])."""
    if not 0 < confidence <= 1:
        raise ValueError(f"confidence must be in (0, 1], got {confidence}")
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    best, guesses = torch.softmax(batched_logits(model, images), dim=1).max(dim=1)
    return best >= confidence, guesses


def batched_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1_000) -> torch.Tensor:
    """The model's logits `(n, num_classes)` on `images` `(n, 1, 28, 28)`, in evaluation mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])


def teacher_predictions(teachers: list[nn.Module], images: torch.Tensor) -> np.ndarray:
    """Every teacher's prediction on every image, shape `(num_teachers, num_queries)` (int64).

    Row t holds teacher t's answers: the predictions are stacked teacher by teacher, so no reshape (which
    would reinterpret memory and mix teachers with queries) is ever needed.
    """
    if len(teachers) == 0:
        raise ValueError("need at least one teacher")
    return np.stack([predict_classes(teacher, images).numpy() for teacher in tqdm(teachers, desc="teacher votes")])


def label_accuracy(predicted, labels) -> float:
    """The fraction of positions where `predicted` equals `labels` (1-D tensors or arrays of the same length)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or predicted.ndim != 1 or predicted.size == 0:
        raise ValueError(
            f"expected two non-empty 1-D label arrays of the same length, got shapes "
            f"{predicted.shape} and {labels.shape}"
        )
    return float(np.mean(predicted == labels))
