"""The PneumoniaMNIST helpers shown in notebooks 06 and 07, on the real offline data."""

import os

import pytest
import torch
from torch import nn

from course.shown import pneumonia

DATA_ROOT = os.environ["DP_COURSE_DATA"]
pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(DATA_ROOT, "medmnist", "pneumoniamnist.npz")),
    reason="PneumoniaMNIST is not in DP_COURSE_DATA (make data copies it)",
)


@pytest.fixture(scope="module")
def splits():
    return {s: pneumonia.to_tensor_dataset(pneumonia.load_pneumonia(s, DATA_ROOT)) for s in ("train", "val", "test")}


def test_real_split_sizes_and_tensor_shapes(splits):
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4708, 524, 624]
    images, labels = splits["train"].tensors
    assert images.shape == (4708, 1, 28, 28) and labels.shape == (4708, 1) and labels.dtype == torch.int64
    assert images.min() >= -1 and images.max() <= 1 and set(labels.unique().tolist()) == {0, 1}


def test_resplit_is_disjoint_covering_and_reproducible(splits):
    training, assessment, validation = pneumonia.resplit(splits["train"], splits["val"], 2000, seed=3)
    assert (len(training), len(assessment), len(validation)) == (2000, 2000, 1232)
    pooled = torch.cat([splits["train"].tensors[0], splits["val"].tensors[0]]).reshape(5232, -1)
    seen = torch.cat([d.tensors[0] for d in (training, assessment, validation)]).reshape(5232, -1)
    # Same multiset of images: sort rows by a hash-like projection and compare.
    projection = torch.randn(784, dtype=torch.float64)
    assert torch.allclose((pooled.double() @ projection).sort().values, (seen.double() @ projection).sort().values)
    again = pneumonia.resplit(splits["train"], splits["val"], 2000, seed=3)[0]
    assert torch.equal(again.tensors[0], training.tensors[0])
    with pytest.raises(ValueError, match="train_size"):
        pneumonia.resplit(splits["train"], splits["val"], 3000)


def test_training_learns_something(splits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 1))
    training, _, validation = pneumonia.resplit(splits["train"], splits["val"], 1000)
    history = pneumonia.train_non_private(model, training, validation, epochs=3)
    assert len(history) == 3 and history[-1][1] < history[0][1]
    assert pneumonia.binary_accuracy(model, splits["test"]) > 0.7


def test_private_training_reaches_its_epsilon(splits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 1))
    training, _, validation = pneumonia.resplit(splits["train"], splits["val"], 1000)
    trained, history = pneumonia.train_private_opacus(
        model, training, validation, epochs=2, target_epsilon=2.0, delta=1e-5
    )
    assert trained is model and len(history) == 2
    epsilons = [h[3] for h in history]
    assert epsilons[0] < epsilons[1] <= 2.0 * 1.05
    assert not any(hasattr(p, "grad_sample") for p in model.parameters()), "Opacus's state must be removed"
