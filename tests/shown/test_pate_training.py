"""Tests of the PATE training helpers shown in notebook 05, `course.shown.pate_training`, on tiny synthetic data.

The synthetic task: class 0 images are bright in the top half, class 1 images in the bottom half (plus a
little noise), so a few epochs of training must separate them perfectly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from course.shown.pate_training import (
    SmallCNN,
    label_accuracy,
    load_mnist_splits,
    predict_classes,
    predict_classes_augmented,
    random_affine,
    random_shift,
    teacher_predictions,
    train_model,
    train_semi_supervised_student,
    train_teachers,
)


def _halves(num_per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_per_class` images of each class, shape (2 * num_per_class, 1, 28, 28), labels 0 then 1."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(2 * num_per_class, 1, 28, 28, generator=generator)
    images[:num_per_class, :, 4:12, 6:22] += 0.8  # class 0: a bar in the top half
    images[num_per_class:, :, 16:24, 6:22] += 0.8  # class 1: a bar in the bottom half
    labels = torch.cat([torch.zeros(num_per_class), torch.ones(num_per_class)]).long()
    return images, labels


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_small_cnn_maps_images_to_class_logits():
    assert SmallCNN()(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert SmallCNN(channels=(4, 6), num_classes=3)(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_random_shift_translates_the_whole_batch_by_at_most_two_pixels():
    images = torch.zeros(3, 1, 28, 28)
    images[:, 0, 14, 14] = torch.tensor([1.0, 2.0, 3.0])
    generator = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(200):
        shifted = random_shift(images, generator)
        assert shifted.shape == images.shape
        rows, columns = torch.nonzero(shifted[0, 0], as_tuple=True)
        assert len(rows) == 1 and abs(rows.item() - 14) <= 2 and abs(columns.item() - 14) <= 2
        offsets.add((rows.item(), columns.item()))
        for index in (1, 2):  # every image of the batch moves the same way, nothing else changes
            assert shifted[index, 0, rows, columns].item() == index + 1 and shifted[index].sum() == index + 1
    assert len(offsets) == 25  # all 5 x 5 offsets occur: P(one is missing in 200 draws) < 25 * 0.96**200 < 1e-2
    assert torch.equal(random_shift(images, generator, max_shift=0), images)


def test_train_model_learns_a_separable_task_and_is_reproducible():
    images, labels = _halves(40)
    torch.manual_seed(0)
    model = SmallCNN()
    start = {name: value.clone() for name, value in model.state_dict().items()}
    returned = train_model(model, images, labels, epochs=8, seed=1)
    assert returned is model and not model.training
    assert label_accuracy(predict_classes(model, images), labels) == 1.0
    again = SmallCNN()
    again.load_state_dict(start)
    train_model(again, images, labels, epochs=8, seed=1)
    assert all(torch.equal(model.state_dict()[name], again.state_dict()[name]) for name in start)
    other_seed = SmallCNN()
    other_seed.load_state_dict(start)
    train_model(other_seed, images, labels, epochs=8, seed=2)
    assert not torch.equal(other_seed.classifier.weight, model.classifier.weight)


def test_random_affine_transforms_each_image_on_its_own_and_is_the_identity_at_zero():
    images = torch.zeros(2, 1, 28, 28)
    images[:, 0, 10:18, 12:16] = 1.0
    generator = torch.Generator().manual_seed(0)
    moved = random_affine(images, generator)
    assert moved.shape == images.shape and 0 <= moved.min() and moved.max() <= 1
    assert not torch.allclose(moved[0], moved[1], atol=1e-3)  # two copies of one image, two different transforms
    assert torch.allclose(random_affine(images, generator, 0.0, 0.0, 0.0), images, atol=1e-6)


def test_test_time_augmentation_averages_the_softmax_over_moved_copies():
    class MeanBrightness(torch.nn.Module):
        """Class 1 when the top-left quarter is bright: a model whose answer a move of the image can change."""

        def forward(self, images):
            score = 40 * (images[:, 0, :14, :14].mean(dim=(1, 2)) - 0.05)
            return torch.stack([-score, score], dim=1)

    images, labels = _halves(20)
    model = SmallCNN(channels=(4, 8))
    train_model(model, images, labels, epochs=8, seed=1)
    assert torch.equal(predict_classes_augmented(model, images, views=0), predict_classes(model, images))
    assert label_accuracy(predict_classes_augmented(model, images, views=8, seed=3), labels) == 1.0
    # the averaged softmax, by hand, for a model whose prediction the moves do change
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 8:14, 8:14] = torch.linspace(0, 0.5, 64).view(64, 1, 1, 1)  # a square of rising brightness
    generator = torch.Generator().manual_seed(5)
    by_hand = torch.softmax(MeanBrightness()(images), dim=1)
    for _ in range(4):
        by_hand += torch.softmax(MeanBrightness()(random_affine(images, generator, 8.0, 0.05, 0.05)), dim=1)
    ours = predict_classes_augmented(MeanBrightness(), images, views=4, seed=5)
    assert torch.equal(ours, by_hand.argmax(dim=1))
    assert not torch.equal(ours, predict_classes(MeanBrightness(), images))  # the moves mattered
    assert torch.equal(ours, predict_classes_augmented(MeanBrightness(), images, views=4, seed=5, batch_size=7))
    with pytest.raises(ValueError):
        predict_classes_augmented(model, images, views=-1)


def test_semi_supervised_student_uses_the_unlabelled_images():
    # 3 labelled images per class and 60 unlabelled ones; the bars are separable, so pseudo-labels are right
    images, labels = _halves(33)
    labelled = torch.cat([torch.arange(3), torch.arange(33, 36)])
    unlabelled = torch.cat([torch.arange(3, 33), torch.arange(36, 66)])
    student = train_semi_supervised_student(
        images[labelled],
        labels[labelled],
        images[unlabelled],
        rounds=1,
        example_budget=600,
        max_epochs=60,
        channels=(4, 8),
        seed=0,
    )
    assert label_accuracy(predict_classes(student, images), labels) == 1.0
    with pytest.raises(ValueError):
        train_semi_supervised_student(images[labelled], labels[labelled], images[unlabelled], rounds=-1)
    with pytest.raises(ValueError):
        train_semi_supervised_student(images[:0], labels[:0], images, rounds=1)


@pytest.mark.parametrize(
    "images, labels, epochs",
    [
        (torch.zeros(4, 1, 28, 28), torch.zeros(3).long(), 1),  # one label short
        (torch.zeros(4, 28, 28), torch.zeros(4).long(), 1),  # no channel dimension
        (torch.zeros(4, 1, 28, 28), torch.zeros(4).long(), 0),  # no epoch
        (torch.zeros(0, 1, 28, 28), torch.zeros(0).long(), 1),  # no example
    ],
)
def test_train_model_rejects_bad_input(images, labels, epochs):
    with pytest.raises(ValueError):
        train_model(SmallCNN(), images, labels, epochs)


def test_each_teacher_is_its_own_model_trained_on_its_own_partition():
    # Partition 0 holds only class 0 and partition 1 only class 1: a teacher that saw only its own data
    # predicts its own class everywhere; a shared model or optimizer would make the two agree.
    images, labels = _halves(30)
    partitions = [np.arange(30), np.arange(30, 60)]
    teachers = train_teachers(images, labels, partitions, epochs=3, augment=False)
    assert len(teachers) == 2 and teachers[0] is not teachers[1]
    first, second = (set(p.data_ptr() for p in teacher.parameters()) for teacher in teachers)
    assert not first & second
    assert torch.all(predict_classes(teachers[0], images) == 0) and torch.all(predict_classes(teachers[1], images) == 1)
    with pytest.raises(ValueError, match="empty"):
        train_teachers(images, labels, [np.arange(60), np.array([], dtype=np.int64)], epochs=1)


def test_teacher_predictions_stack_one_row_per_teacher():
    images, _ = _halves(10)
    torch.manual_seed(0)
    teachers = [SmallCNN() for _ in range(3)]
    votes = teacher_predictions(teachers, images)
    assert votes.shape == (3, 20) and votes.dtype == np.int64
    for row, teacher in zip(votes, teachers):
        assert np.array_equal(row, predict_classes(teacher, images).numpy())
        assert np.array_equal(row, predict_classes(teacher, images, batch_size=3).numpy())  # batching changes nothing
    with pytest.raises(ValueError):
        teacher_predictions([], images)


def test_accuracy():
    assert label_accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75
    assert label_accuracy(np.array([0, 0]), np.array([1, 1])) == 0.0
    with pytest.raises(ValueError):
        label_accuracy(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError):
        label_accuracy(np.array([]), np.array([]))


def test_mnist_splits_follow_the_story():
    root = Path(os.environ.get("DP_COURSE_DATA", "data"))
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST not found under {root}")
    (private_x, private_y), (public_x, public_y), (eval_x, eval_y) = load_mnist_splits(str(root))
    assert private_x.shape == (60_000, 1, 28, 28) and public_x.shape == (9_000, 1, 28, 28)
    assert eval_x.shape == (1_000, 1, 28, 28)
    for images, labels in ((private_x, private_y), (public_x, public_y), (eval_x, eval_y)):
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        assert labels.dtype == torch.int64 and labels.shape == (len(images),)
    # The split is a seeded shuffle (seed 0) of the whole test set: NumPy's default_rng(0).permutation order.
    order = np.random.default_rng(0).permutation(10_000)
    test = torchvision.datasets.MNIST(root=str(root), train=False, download=False)
    assert torch.equal(torch.cat([public_y, eval_y]), test.targets[torch.as_tensor(order)])
    assert torch.equal(eval_x[:3], test.data[torch.as_tensor(order[9_000:9_003])].unsqueeze(1).float() / 255)
    # Both halves of MNIST's test set (the easy first 5,000, the hard last 5,000) reach the evaluation set.
    assert 400 < int(np.sum(order[9_000:] < 5_000)) < 600
    assert not torch.equal(load_mnist_splits(str(root), seed=1)[2][1], eval_y)
    with pytest.raises(ValueError):
        load_mnist_splits(str(root), num_public=10_000)


def test_the_shared_epoch_loop_averages_the_loss_over_examples_and_records_rows():
    from course.shown.training import train_epochs

    model = torch.nn.Linear(1, 1)
    seen, modes = [], []

    def step(batch):
        modes.append(model.training)
        seen.append(batch)
        return float(batch), batch  # a batch of `batch` examples whose mean loss is `batch`

    def after_epoch(epoch, loss):
        model.eval()  # evaluation between epochs; the loop switches back to training mode
        return None if epoch == 2 else (epoch, loss)

    history = train_epochs(model, 3, lambda epoch: [1, 3] if epoch != 3 else [0], step, after_epoch)
    assert seen == [1, 3, 1, 3, 0] and all(modes)
    assert history == [(1, (1 * 1 + 3 * 3) / 4), (3, 0.0)]  # epoch 2 recorded nothing; an empty epoch has loss 0
    assert train_epochs(model, 2, lambda epoch: [2], step) == []  # no after_epoch: nothing recorded
