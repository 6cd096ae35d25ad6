"""Notebook 06's results on the real PneumoniaMNIST test split: the MLP without privacy and with DP-SGD.

Run from the repository root: `python scripts/dpsgd_results.py [--epsilons 0.5 1 5] [--seeds 3]`
(data from DP_COURSE_DATA, default ./data). Prints the hyperparameters, then a markdown table of test
accuracy (mean and standard deviation over training seeds, and each seed's value) for:

- "always pneumonia", the majority class a model that learnt nothing falls back to;
- the spec MLP trained non-privately (`pneumonia.train_non_private`: Adam, shuffled batches);
- the same MLP trained with DP-SGD at each epsilon (`dpsgd_training.train_dp_sgd` around the reference
  `dpsgd.dp_grads`): the code notebook 06 shows, with the notebook's hyperparameters.

Privacy: (epsilon, delta = 1e-5)-DP for add/remove neighbours, noise multiplier from
`opacus.accountants.utils.get_noise_multiplier` with the RDP accountant; the epsilon column is what the
training loop's own RDP accountant reports after the last step, converted to (epsilon, delta) by Opacus with
Balle et al. 2020 (AISTATS), theorem 21 (notebook 05 teaches Mironov's looser rdp + ln(1/delta)/(order - 1)).
Every run trains on the same re-split
(training 2,500 X-rays, seed 0) and only the model's initialisation, the Poisson batches and the noise change
with the seed. The hyperparameters were chosen on the validation set, never on the test split; that set comes
from the same private pool, so the epsilons exclude the cost of tuning (Papernot & Steinke, ICLR 2022).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch
from opacus.accountants.utils import get_noise_multiplier

from course.lib.dpsgd import dp_grads
from course.lib.dpsgd_data import label_fraction
from course.shown.dpsgd_training import train_dp_sgd
from course.shown.pneumonia import (
    binary_accuracy,
    load_pneumonia,
    resplit,
    spec_mlp,
    to_tensor_dataset,
    train_non_private,
)

TRAIN_SIZE = 2500
DELTA = 1e-5
NON_PRIVATE = {"optimizer": "Adam", "lr": 1e-3, "batch_size": 64, "epochs": 20}
PRIVATE = {
    "optimizer": "SGD, momentum 0.9",
    "lr": 1.0,
    "schedule": "CosineAnnealingLR(T_max=epochs)",
    "max_grad_norm": 0.1,
    "expected_batch_size": 250,
    "epochs": 10,
}


def load_splits(data_root: str):
    """(training, validation, test) TensorDatasets: notebook 06's re-split and the untouched test split."""
    train, val, test = (to_tensor_dataset(load_pneumonia(split, data_root)) for split in ("train", "val", "test"))
    training, _, validation = resplit(train, val, TRAIN_SIZE, seed=0)
    return training, validation, test


def run_non_private(training, validation, test, seed: int) -> tuple[float, float]:
    """(validation accuracy, test accuracy) of the non-private MLP."""
    torch.manual_seed(seed)
    model = spec_mlp()
    train_non_private(
        model,
        training,
        validation,
        epochs=NON_PRIVATE["epochs"],
        batch_size=NON_PRIVATE["batch_size"],
        lr=NON_PRIVATE["lr"],
        seed=seed,
    )
    return binary_accuracy(model, validation), binary_accuracy(model, test)


def run_private(training, validation, test, noise_multiplier: float, seed: int) -> tuple[float, float, float]:
    """(validation accuracy, test accuracy, epsilon spent) of the MLP trained with DP-SGD."""
    torch.manual_seed(seed)
    model, history = train_dp_sgd(
        spec_mlp(),
        training,
        validation,
        dp_grads,
        epochs=PRIVATE["epochs"],
        noise_multiplier=noise_multiplier,
        max_grad_norm=PRIVATE["max_grad_norm"],
        expected_batch_size=PRIVATE["expected_batch_size"],
        lr=PRIVATE["lr"],
        delta=DELTA,
        seed=seed,
    )
    return binary_accuracy(model, validation), binary_accuracy(model, test), history[-1][3]


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 5.0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per setting (default 3)")
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # RDP stays a valid bound
    seeds = range(arguments.seeds)
    training, validation, test = load_splits(os.environ.get("DP_COURSE_DATA", "./data"))
    sample_rate = PRIVATE["expected_batch_size"] / len(training)
    print(
        f"data: {len(training)} training, {len(validation)} validation, {len(test)} test X-rays; "
        f"delta = {DELTA:g} (1/n = {1 / len(training):.1e}); seeds {list(seeds)}"
    )
    print(f"non-private: {NON_PRIVATE}")
    print(
        f"DP-SGD: {PRIVATE}, sampling rate q = {sample_rate:g} (Poisson), "
        f"{PRIVATE['epochs'] * int(1 / sample_rate)} steps"
    )
    started = time.perf_counter()
    rows = [("always 'pneumonia'", "-", "-", [label_fraction(validation, 1)], [label_fraction(test, 1)])]
    runs = [run_non_private(training, validation, test, seed) for seed in seeds]
    rows.append(("MLP, non-private", "∞", "-", [v for v, _ in runs], [t for _, t in runs]))
    for epsilon in arguments.epsilons:
        noise_multiplier = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=DELTA,
            sample_rate=sample_rate,
            epochs=PRIVATE["epochs"],
            accountant="rdp",
        )
        runs = [run_private(training, validation, test, noise_multiplier, seed) for seed in seeds]
        spent = max(e for _, _, e in runs)
        rows.append(
            (
                f"MLP, DP-SGD (epsilon {epsilon:g})",
                f"{spent:.2f}",
                f"{noise_multiplier:.2f}",
                [v for v, _, _ in runs],
                [t for _, t, _ in runs],
            )
        )
    print(
        f"\n| model | add/remove epsilon (RDP accountant, Balle et al. 2020 conversion, delta {DELTA:g}) "
        f"| noise multiplier | validation accuracy | "
        "test accuracy | test, per seed |"
    )
    print("|---|---|---|---|---|---|")
    for name, epsilon, sigma, validation_accuracies, test_accuracies in rows:
        print(
            f"| {name} | {epsilon} | {sigma} | {summary(validation_accuracies)} | {summary(test_accuracies)} | "
            + ", ".join(f"{value:.3f}" for value in test_accuracies)
            + " |"
        )
    print(f"\n(total training time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
