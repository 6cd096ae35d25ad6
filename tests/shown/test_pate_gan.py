"""Tests of the GAN-assisted PATE student, `course.shown.pate_gan`, on tiny synthetic data (bars in the top or
bottom half of an image, as in test_pate_training)."""

from __future__ import annotations

import pytest
import torch
from test_pate_training import _halves, _one_thread  # noqa: F401 (_one_thread: an autouse fixture, one thread)
from torch import nn

from course.shown import pate_gan
from course.shown.pate_gan import (
    FeatureMatchingDiscriminator,
    FeatureMatchingGenerator,
    train_feature_matching_gan,
    train_gan_assisted_student,
)
from course.shown.pate_training import confident_pseudo_labels, label_accuracy, predict_classes


def test_discriminator_adds_seeded_noise_only_while_training():
    torch.manual_seed(0)
    model = FeatureMatchingDiscriminator((8, 6), num_classes=3)
    images = torch.rand(5, 1, 28, 28)
    logits, features = model(images, features=True)
    assert logits.shape == (5, 3) and features.shape == (5, 6)
    model.eval()
    assert torch.equal(model(images), model(images))  # no noise when evaluating
    model.train()
    model.noise = torch.Generator().manual_seed(1)
    first = model(images)
    model.noise = torch.Generator().manual_seed(1)
    assert torch.equal(first, model(images))  # the noise comes from the trainer's generator
    assert not torch.equal(first, model(images))
    model.eval()
    assert not torch.allclose(first, model(images))
    with pytest.raises(ValueError):
        FeatureMatchingDiscriminator(())
    with pytest.raises(ValueError):
        FeatureMatchingDiscriminator((8,), hidden_noise=-1.0)


def test_generator_makes_images_in_the_unit_interval():
    torch.manual_seed(0)
    images = FeatureMatchingGenerator(latent=7)(6, torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1


def test_gan_learns_the_classes_from_two_labels_each_and_is_reproducible():
    images, labels = _halves(30)
    labelled = torch.tensor([0, 1, 30, 31])
    first = train_feature_matching_gan(
        images[labelled], labels[labelled], images, steps=150, batch_size=16, widths=(32, 16), num_classes=2, seed=0
    )
    assert isinstance(first, FeatureMatchingDiscriminator) and not first.training
    assert label_accuracy(predict_classes(first, images), labels) == 1.0
    again = train_feature_matching_gan(
        images[labelled], labels[labelled], images, steps=150, batch_size=16, widths=(32, 16), num_classes=2, seed=0
    )
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    other = train_feature_matching_gan(
        images[labelled], labels[labelled], images, steps=150, batch_size=16, widths=(32, 16), num_classes=2, seed=1
    )
    assert not torch.equal(
        first.output.parametrizations.weight.original1, other.output.parametrizations.weight.original1
    )


@pytest.mark.parametrize(
    "change",
    [
        dict(labels=torch.tensor([0, 1, 2])),  # a label outside 0..1
        dict(labels=torch.tensor([0, 1])),  # one label short
        dict(real_images=torch.zeros(4, 1, 14, 14)),  # real images of another shape
        dict(real_images=torch.zeros(0, 1, 28, 28)),  # no real image
        dict(steps=0),
        dict(lr=0.0),
    ],
)
def test_gan_rejects_bad_input(change):
    arguments = dict(
        labelled_images=torch.zeros(3, 1, 28, 28),
        labels=torch.tensor([0, 1, 1]),
        real_images=torch.zeros(4, 1, 28, 28),
        steps=1,
        num_classes=2,
    )
    with pytest.raises(ValueError):
        train_feature_matching_gan(**{**arguments, **change})


class FixedProbabilities(nn.Module):
    """A model whose softmax on image i is the i-th row of `probabilities`, whatever the pixels."""

    def __init__(self, probabilities: torch.Tensor):
        super().__init__()
        self.log_probabilities = probabilities.log()

    def forward(self, images):
        return self.log_probabilities[: len(images)]


def test_confident_pseudo_labels_keep_exactly_the_sure_predictions():
    probabilities = torch.tensor([[0.96, 0.04], [0.5, 0.5], [0.05, 0.95], [0.3, 0.7]])
    keep, guesses = confident_pseudo_labels(FixedProbabilities(probabilities), torch.zeros(4, 1, 28, 28), 0.95)
    assert keep.tolist() == [True, False, True, False]
    assert guesses[keep].tolist() == [0, 1]
    for confidence in (0.0, 1.5):
        with pytest.raises(ValueError):
            confident_pseudo_labels(FixedProbabilities(probabilities), torch.zeros(4, 1, 28, 28), confidence)


def test_gan_assisted_student_gives_the_cnn_the_gans_sure_guesses(monkeypatch):
    labelled, labels = torch.rand(2, 1, 28, 28), torch.tensor([3, 4])
    unlabelled = torch.rand(4, 1, 28, 28)
    probabilities = torch.full((4, 10), 0.01)
    probabilities[[0, 1, 2, 3], [7, 2, 5, 9]] = torch.tensor([0.91, 0.5, 0.91, 0.2])  # images 0 and 2 are sure
    seen = {}

    def fake_gan(images, targets, real_images, steps, seed, progress):
        seen["gan"] = (images, targets, real_images, steps, seed)
        return FixedProbabilities(probabilities)

    def fake_self_training(images, targets, rest, rounds, confidence, seed, **kwargs):
        seen["cnn"] = (images, targets, rest, rounds, confidence, seed, kwargs)
        return "the CNN"

    monkeypatch.setattr(pate_gan, "train_feature_matching_gan", fake_gan)
    monkeypatch.setattr(pate_gan, "train_semi_supervised_student", fake_self_training)
    assert (
        train_gan_assisted_student(
            labelled, labels, unlabelled, gan_steps=5, confidence=0.9, rounds=2, seed=3, augment="affine"
        )
        == "the CNN"
    )
    gan_images, gan_targets, real, steps, seed = seen["gan"]
    assert gan_images is labelled and gan_targets is labels and (steps, seed) == (5, 3)
    assert torch.equal(real, torch.cat([labelled, unlabelled]))  # every public image counts as real
    images, targets, rest, rounds, confidence, seed, kwargs = seen["cnn"]
    assert torch.equal(images, torch.cat([labelled, unlabelled[[0, 2]]]))
    assert targets.tolist() == [3, 4, 7, 5]
    assert torch.equal(rest, unlabelled[[1, 3]])
    assert (rounds, confidence, seed, kwargs) == (2, 0.9, 3, {"augment": "affine"})


def test_gan_assisted_student_learns_from_one_label_per_class():
    images, labels = _halves(30)
    labelled = torch.tensor([0, 30])
    unlabelled = torch.cat([torch.arange(1, 30), torch.arange(31, 60)])
    student = train_gan_assisted_student(
        images[labelled],
        labels[labelled],
        images[unlabelled],
        gan_steps=150,
        rounds=1,
        seed=0,
        example_budget=600,
        max_epochs=30,
        channels=(4, 8),
    )
    assert label_accuracy(predict_classes(student, images), labels) == 1.0
    with pytest.raises(ValueError):
        train_gan_assisted_student(images[:0], labels[:0], images)


def test_no_unlabelled_image_means_no_pseudo_label():
    keep, guesses = confident_pseudo_labels(
        FixedProbabilities(torch.full((1, 2), 0.5)), torch.zeros(0, 1, 28, 28), 0.95
    )
    assert keep.shape == guesses.shape == (0,) and guesses.dtype == torch.long
