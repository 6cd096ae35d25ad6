"""PneumoniaMNIST for notebooks 06 and 07: the course's MLP, loading, the re-split, and training.

These functions are shown to students in read-only notebook cells, so they use only public packages.
Images are 28x28 chest X-rays; label 0 = normal, 1 = pneumonia.
"""

import os

import medmnist
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course.lib.validators import check_positive_int
from course.shown.training import train_epochs


def spec_mlp(in_features: int = 784, hidden: tuple[int, ...] = (128, 64)) -> nn.Sequential:
    """The course's model for PneumoniaMNIST: an MLP with ReLU activations and one output logit.

    With the default `hidden=(128, 64)` it has three Linear layers: Flatten -> Linear(784, 128) -> ReLU ->
    Linear(128, 64) -> ReLU -> Linear(64, 1). Input: images of shape `(batch, 1, 28, 28)` (or one image of
    shape `(1, 28, 28)`, which Flatten treats as a batch of one); output: logits of shape `(batch, 1)`, to be
    used with `nn.BCEWithLogitsLoss`. Initialised by PyTorch's default, so seed torch first for a
    reproducible model.
    """
    in_features = check_positive_int(in_features, "in_features")
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a tuple of layer widths, got {type(hidden).__name__}")
    widths = [in_features] + [check_positive_int(width, "each hidden width") for width in hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers)


def load_pneumonia(split: str, data_root: str) -> medmnist.PneumoniaMNIST:
    """One split ('train', 'val' or 'test') through medmnist's own loader.

    The file lives in `<data_root>/medmnist/pneumoniamnist.npz`; it is downloaded only when missing.
    """
    root = os.path.join(data_root, "medmnist")
    os.makedirs(root, exist_ok=True)
    present = os.path.exists(os.path.join(root, "pneumoniamnist.npz"))
    return medmnist.PneumoniaMNIST(split=split, root=root, download=not present)


def to_tensor_dataset(dataset: medmnist.PneumoniaMNIST) -> TensorDataset:
    """All images and labels as tensors: images `(n, 1, 28, 28)` scaled to [-1, 1], labels `(n, 1)` int64."""
    images = torch.from_numpy(dataset.imgs).float().div(255).sub(0.5).div(0.5).unsqueeze(1)
    labels = torch.from_numpy(dataset.labels.astype("int64"))
    return TensorDataset(images, labels)


def resplit(train: TensorDataset, val: TensorDataset, train_size: int, seed: int = 0):
    """Pool train and val, shuffle, and cut into (training, assessment, validation).

    `training` and the memorisation-`assessment` set both have `train_size` examples and never overlap:
    the model trains on the first and never sees the second, so comparing the two shows what it memorised.
    `validation` gets the rest. The permutation covers every example (index 0 included).
    """
    images = torch.cat([train.tensors[0], val.tensors[0]])
    labels = torch.cat([train.tensors[1], val.tensors[1]])
    if not 0 < 2 * train_size < len(images):
        raise ValueError(f"train_size must be between 1 and {(len(images) - 1) // 2}, got {train_size}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    parts = order[:train_size], order[train_size : 2 * train_size], order[2 * train_size :]
    return tuple(TensorDataset(images[part], labels[part]) for part in parts)


def binary_accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    """The accuracy of a one-logit classifier on `dataset`: the fraction of examples whose predicted label
    (logit > 0) equals the true label."""
    model.eval()
    with torch.no_grad():
        images, labels = dataset.tensors
        predictions = (model(images).reshape(-1) > 0).long()
    return (predictions == labels.reshape(-1)).float().mean().item()


def binary_cross_entropy_step(model: nn.Module, optimizer):
    """The training step of a one-logit model for `train_epochs`: on a batch `(images, labels)`, one
    `optimizer` step on the mean `BCEWithLogitsLoss`; returns (that loss, the batch size).

    With an Opacus model and optimizer the same step clips per-example gradients and adds the noise.
    """
    criterion = nn.BCEWithLogitsLoss()

    def step(batch):
        images, labels = batch
        optimizer.zero_grad()
        loss = criterion(model(images).reshape(-1), labels.reshape(-1).float())
        loss.backward()
        optimizer.step()  # with Opacus's virtual batches: noise and update only at a logical batch's end
        return loss.item(), len(images)

    return step


def train_non_private(
    model: nn.Module,
    training: TensorDataset,
    validation: TensorDataset,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> list:
    """Train with Adam and BCEWithLogitsLoss; return one (epoch, mean training loss, validation accuracy) per epoch."""
    torch.manual_seed(seed)
    loader = DataLoader(training, batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = binary_cross_entropy_step(model, optimizer)
    return train_epochs(
        model,
        epochs,
        lambda epoch: loader,
        step,
        progress="non-private training",
        after_epoch=lambda epoch, loss: (epoch, loss, binary_accuracy(model, validation)),
    )


def train_private_opacus(
    model: nn.Module,
    training: TensorDataset,
    validation: TensorDataset,
    epochs: int,
    target_epsilon: float,
    delta: float,
    max_grad_norm: float = 1.0,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
):
    """DP-SGD (with Adam's update rule) through Opacus, calibrated to reach `target_epsilon` after `epochs`.

    Opacus's `make_private_with_epsilon` picks the noise multiplier, samples Poisson batches of expected size
    `batch_size` and clips per-example gradients to `max_grad_norm`. Neighbour notion: add/remove one
    example (Opacus's accounting). Epsilons come from Opacus's default PRV accountant.
    Returns (the trained `model`, one (epoch, mean training loss, validation accuracy, epsilon so far) per epoch).
    """
    torch.manual_seed(seed)
    engine = PrivacyEngine(accountant="prv")
    private_model, optimizer, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        data_loader=DataLoader(training, batch_size=batch_size, shuffle=True),
        target_epsilon=target_epsilon,
        target_delta=delta,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
    )
    history = train_epochs(
        private_model,
        epochs,
        lambda epoch: loader,
        binary_cross_entropy_step(private_model, optimizer),
        progress=f"DP-SGD (epsilon {target_epsilon:g})",
        after_epoch=lambda epoch, loss: (epoch, loss, binary_accuracy(model, validation), engine.get_epsilon(delta)),
    )
    private_model.cleanup()  # detach Opacus's hooks and per-example gradients: `model` is a plain model again
    return model, history
