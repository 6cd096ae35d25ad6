"""Looking at the PneumoniaMNIST data before training on it (notebook 06).

A dataset here is anything with `len(dataset)` and `dataset[i] -> (image, target)`, where target holds one
label (medmnist gives a NumPy array of shape `(1,)`; a tensor or a plain number also works). PneumoniaMNIST's
labels are 0 = normal and 1 = pneumonia. No privacy is spent here: these are the data owner's own statistics.
"""

from __future__ import annotations

import numbers

import numpy as np


def label_fraction(dataset, label: int = 0) -> float:
    """The fraction of examples in `dataset` whose label equals `label`, a float in [0, 1].

    Reads every `(image, target)` pair through `dataset[i]`, so it works for medmnist datasets, torch
    `Subset`s and lists alike. Raises ValueError for an empty dataset, a non-integer label, or a target that
    does not hold exactly one number.
    """
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise ValueError(f"label must be an integer class label, got {label!r}")
    try:
        size = len(dataset)
    except TypeError:
        raise ValueError(f"dataset must support len() and indexing, got {type(dataset).__name__}") from None
    if size == 0:
        raise ValueError("dataset is empty: a label fraction needs at least one example")
    matches = 0
    for index in range(size):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dataset[{index}] must be an (image, target) pair, got {type(item).__name__}")
        target = np.asarray(item[1])
        if target.size != 1:
            raise ValueError(f"dataset[{index}]: the target must hold one label, got shape {target.shape}")
        matches += int(target.item() == label)
    return matches / size
