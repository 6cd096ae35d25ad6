"""The one epoch loop that every training helper of the course runs (notebooks 05, 06 and 07).

Shown to students in read-only cells. What differs between the course's trainings (plain Adam, Opacus,
a student's own `dp_grads`, Opacus's virtual batches, PATE's teachers) is how one batch is trained and what
is recorded after an epoch; the loop itself, its progress bar and its loss bookkeeping are written once, here.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def train_epochs(
    model, epochs: int, batches, step, after_epoch=None, progress: str | None = None, leave: bool = True
) -> list:
    """Run `epochs` epochs of training and return the rows `after_epoch` recorded, one per epoch.

    Each epoch (numbered 1..epochs) puts `model` in training mode, then calls `step(batch)` for every batch
    of `batches(epoch)` (an iterable, made afresh each epoch); `step` trains on that batch and returns
    `(loss, size)`: the batch's mean loss as a float and its number of examples (0 for an empty batch).
    After the epoch, `after_epoch(epoch, mean_loss)` (mean over the epoch's examples, 0 if there were none)
    may step a scheduler or evaluate, and returns the history row for the epoch, or None to record nothing.
    `progress` labels a tqdm bar over the epochs (None: no bar); `leave` keeps the bar once done.
    """
    history = []
    for epoch in tqdm(range(1, epochs + 1), desc=progress, disable=progress is None, leave=leave):
        model.train()
        total, count = 0.0, 0
        for batch in batches(epoch):
            loss, size = step(batch)
            total, count = total + loss * size, count + size
        row = after_epoch(epoch, total / max(count, 1)) if after_epoch is not None else None
        if row is not None:
            history.append(row)
    return history
