"""DP-SGD training for notebook 06: a loop around any `dp_grads`, a small CNN, and Opacus's virtual batches.

These functions are shown to students in read-only notebook cells, so they use only public packages. Every
privacy statement here uses Opacus's neighbour notion: add or remove one training example. Images are
PneumoniaMNIST's `(n, 1, 28, 28)` tensors and labels `(n, 1)` int64, as `pneumonia.to_tensor_dataset` gives.
"""

import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from opacus.data_loader import DPDataLoader
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course.shown.pneumonia import binary_accuracy, binary_cross_entropy_step
from course.shown.training import train_epochs


def train_dp_sgd(
    model: nn.Module,
    training: TensorDataset,
    validation: TensorDataset,
    private_gradient,
    epochs: int,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: int,
    lr: float,
    delta: float,
    momentum: float = 0.9,
    seed: int = 0,
):
    """DP-SGD (Abadi et al., CCS 2016, Algorithm 1) with a given private-gradient function.

    `private_gradient(model, batch_data, criterion, max_grad_norm, noise_multiplier)` is notebook 06's
    `dp_grads`: it returns the clipped, noised gradient averaged over `len(batch_data)`. Each step:
    1. Poisson sampling (`DPDataLoader`): every example joins the batch independently with probability
       `q = expected_batch_size / len(training)`, so the batch size itself is random;
    2. the private gradient of that batch, rescaled to the sum divided by the *expected* batch size `q n`
       (dividing by the actual size, which depends on the data, is not what the accountant analyses);
    3. an SGD step with momentum; the learning rate follows `CosineAnnealingLR(T_max=epochs)`, stepped once
       per epoch, from `lr` down to 0.

    The epsilon spent so far is tracked by Opacus's RDP accountant (add/remove neighbours, sampling rate q,
    `noise_multiplier`), converted to (epsilon, `delta`)-DP. The training loss is for the notebook's plots;
    publishing it would cost privacy too.
    Returns (`model`, one (epoch, mean training loss, validation accuracy, epsilon so far) per epoch).
    """
    torch.manual_seed(seed)
    sample_rate = expected_batch_size / len(training)
    # int(1 / sample_rate) Poisson batches per epoch, so an epoch sees every example once on average
    batches = DPDataLoader(training, sample_rate=sample_rate, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    accountant = RDPAccountant()
    criterion = nn.BCEWithLogitsLoss()

    def step(batch):
        images, labels = batch
        loss = 0.0
        if len(images) > 0:
            gradient = private_gradient(model, list(zip(images, labels)), criterion, max_grad_norm, noise_multiplier)
            with torch.no_grad():
                loss = criterion(model(images).reshape(-1), labels.reshape(-1).float()).item()
        else:  # an empty Poisson batch (probability (1 - q)^n) is still a step: the noise alone
            gradient = {
                name: torch.randn_like(p) * noise_multiplier * max_grad_norm for name, p in model.named_parameters()
            }
        for name, parameter in model.named_parameters():
            parameter.grad = gradient[name] * (max(len(images), 1) / expected_batch_size)
        optimizer.step()
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        return loss, len(images)

    def after_epoch(epoch, loss):
        scheduler.step()
        return epoch, loss, binary_accuracy(model, validation), accountant.get_epsilon(delta)

    history = train_epochs(
        model, epochs, lambda epoch: batches, step, after_epoch, progress="DP-SGD with your dp_grads"
    )
    return model, history


def small_cnn(channels: tuple = (8, 16)) -> nn.Sequential:
    """A small CNN for 28x28 X-rays with BatchNorm, as non-private code often has it; one output logit.

    Two blocks of Conv2d(3x3) -> BatchNorm2d -> ReLU -> MaxPool2d(2) (28 -> 14 -> 7 pixels), then a Linear
    layer from `channels[1] * 7 * 7` features to one logit. Input `(batch, 1, 28, 28)`, output `(batch, 1)`.
    BatchNorm normalises each example with statistics of the whole batch, so one example's gradient depends
    on the others: per-example clipping no longer bounds one person's influence, and Opacus refuses it.
    """
    first, second = channels
    return nn.Sequential(
        nn.Conv2d(1, first, kernel_size=3, padding=1),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, kernel_size=3, padding=1),
        nn.BatchNorm2d(second),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(second * 7 * 7, 1),
    )


def train_private_virtual_batches(
    model: nn.Module,
    training: TensorDataset,
    validation: TensorDataset,
    epochs: int,
    target_epsilon: float,
    delta: float,
    max_grad_norm: float,
    batch_size: int,
    max_physical_batch_size: int,
    lr: float,
    momentum: float = 0.9,
    seed: int = 0,
):
    """DP-SGD through Opacus with large logical batches processed in small physical ones.

    `make_private_with_epsilon` calibrates the noise so that `epochs` epochs of Poisson batches of expected
    size `batch_size` reach (`target_epsilon`, `delta`)-DP (PRV accountant, add/remove neighbours).
    `BatchMemoryManager` splits each sampled batch into pieces of at most `max_physical_batch_size`
    examples: per-example gradients are clipped and accumulated piece by piece, and the optimizer adds the
    noise and steps only once the whole logical batch is in, so memory stays small while privacy and
    updates are those of the large batch. SGD with momentum; learning rate `CosineAnnealingLR(T_max=epochs)`.
    Returns (the trained `model`, one (epoch, mean training loss, validation accuracy, epsilon) per epoch).
    """
    torch.manual_seed(seed)
    engine = PrivacyEngine(accountant="prv")
    private_model, optimizer, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum),
        data_loader=DataLoader(training, batch_size=batch_size, shuffle=True),
        target_epsilon=target_epsilon,
        target_delta=delta,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    def physical_batches(epoch):
        with BatchMemoryManager(
            data_loader=loader, max_physical_batch_size=max_physical_batch_size, optimizer=optimizer
        ) as pieces:
            yield from pieces

    def after_epoch(epoch, loss):
        scheduler.step()
        return epoch, loss, binary_accuracy(model, validation), engine.get_epsilon(delta)

    # each step clips one piece; the optimizer adds noise and updates only at a logical batch's end
    step = binary_cross_entropy_step(private_model, optimizer)
    history = train_epochs(
        private_model,
        epochs,
        physical_batches,
        step,
        after_epoch,
        progress=f"Opacus, virtual batches (epsilon {target_epsilon:g})",
    )
    private_model.cleanup()  # detach Opacus's hooks: `model` is a plain model again
    return model, history
