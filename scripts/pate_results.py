"""Regenerate the PATE results table of notebook 05: accuracy against epsilon on MNIST.

    python scripts/pate_results.py [--teachers 250] [--teacher-epochs 20] [--queries 500,1000,2000,9000]
                                   [--student-epochs 30] [--student-budget 60000] [--seed 0] [--data DATA_ROOT]

The pipeline is the notebook's, with the course library's reference functions: MNIST's 60,000 training images are
split disjointly among the teachers (`partition_indices`), every teacher is its own `SmallCNN` trained on its share
(`train_teachers`; the teachers' predictions are cached in build/ and shared with scripts/pate2018_results.py), the
teachers vote on the first max(queries) public images (the first 9,000 of MNIST's test images after the seeded
shuffle of `load_mnist_splits`), and for every aggregator setting and query count a student `SmallCNN(channels=(16,
32))` is trained on the first `queries` public images with the noisy labels only, then scored on the held-out last
1,000 test images; it trains for `--student-epochs` epochs, or fewer when the query count is large, so that it sees
at most `--student-budget` examples in all (9,000 queries: 7 epochs). Non-private references: the same student
trained on the noise-free plurality vote, and on the true labels.

Aggregator settings: Laplace noisy max with gamma 0.05 (PATE 2017's MNIST setting), GNMax with sigma 40 (PATE
2018's typical setting), and GNMax with sigma calibrated so that the data-independent epsilon of the query count is
8 and 2. Epsilons are for delta = 1e-6 (far below 1/60,000; PATE's 1e-5 is 0.6/n) under replacement neighbours:
data-independent (Laplace: moments accountant, moments 1..8; GNMax: RDP with the library's default orders) and
data-dependent (PATE 2017 theorem 2; PATE 2018 theorem 6), the latter computed from the private votes and so not
publishable as it is.

Prints a markdown table on stdout (progress bars on stderr).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import brentq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from pate2018_results import cached_teacher_predictions  # noqa: E402  (the same cached teachers)

from course.lib.pate import gaussian_noisy_max, laplace_noisy_max, partition_indices, vote_counts  # noqa: E402
from course.lib.pate_analysis import gnmax_epsilon, pate_epsilon_data_independent  # noqa: E402
from course.shown.pate_accounting import gnmax_epsilon_data_dependent, pate_epsilon_data_dependent  # noqa: E402
from course.shown.pate_training import SmallCNN, label_accuracy, load_mnist_splits, predict_classes, train_model  # noqa: E402

DELTA = 1e-6
NUM_CLASSES = 10
LAPLACE_GAMMA = 0.05
GNMAX_SIGMA = 40.0
CALIBRATED_EPSILONS = (8.0, 2.0)


def gnmax_sigma_for(epsilon: float, num_queries: int) -> float:
    """The sigma at which `num_queries` GNMax answers have data-independent epsilon `epsilon` (at DELTA)."""
    root = brentq(lambda sigma: gnmax_epsilon(num_queries, sigma, DELTA) - epsilon, 1.0, 1e5, xtol=1e-9)
    return root * (1 + 1e-9)  # just above the root, so that the epsilon is at most the target


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--queries", default="500,1000,2000,9000", help="comma-separated query counts")
    parser.add_argument("--student-epochs", type=int, default=30)
    parser.add_argument(
        "--student-budget", type=int, default=60_000, help="most examples a student sees in all (epochs times queries)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=os.environ.get("DP_COURSE_DATA", str(REPO / "data")))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    query_counts = sorted(int(q) for q in args.queries.split(","))
    torch.set_num_threads(1)  # tiny models: one thread beats two that keep synchronising
    started = time.perf_counter()

    (private_images, private_labels), (public_images, public_labels), (eval_images, eval_labels) = load_mnist_splits(
        args.data
    )
    if (args.teachers, args.teacher_epochs) != (250, 20):
        raise SystemExit("the cached teachers are 250 teachers trained for 20 epochs")
    partitions = partition_indices(len(private_images), args.teachers, seed=args.seed)
    max_queries = max(query_counts)
    teacher_preds = cached_teacher_predictions(args.data, args.seed)[:, :max_queries]
    counts = vote_counts(teacher_preds, NUM_CLASSES)
    true_labels = public_labels[:max_queries].numpy()
    teacher_accuracy = float(np.mean(teacher_preds == true_labels))

    def student_epochs(num_queries: int) -> int:
        return max(1, min(args.student_epochs, math.ceil(args.student_budget / num_queries)))

    def student_accuracy(num_queries: int, labels: np.ndarray, seed: int) -> float:
        torch.manual_seed(seed)
        student = train_model(
            SmallCNN(channels=(16, 32)),
            public_images[:num_queries],
            torch.as_tensor(labels),
            student_epochs(num_queries),
            seed=seed,
        )
        return label_accuracy(predict_classes(student, eval_images), eval_labels)

    rng = np.random.default_rng(args.seed)
    rows = []
    for num_queries in query_counts:
        votes, truth = counts[:num_queries], true_labels[:num_queries]
        ensemble = label_accuracy(votes.argmax(axis=1), truth)
        settings = [
            ("Laplace", LAPLACE_GAMMA, f"gamma {LAPLACE_GAMMA:g}"),
            ("GNMax", GNMAX_SIGMA, f"sigma {GNMAX_SIGMA:g}"),
        ]
        for target in CALIBRATED_EPSILONS:
            sigma = gnmax_sigma_for(target, num_queries)
            settings.append(("GNMax", sigma, f"sigma {sigma:.1f} (eps {target:g})"))
        for aggregator, value, setting in settings:
            if aggregator == "Laplace":
                labels = laplace_noisy_max(votes, value, rng)
                eps = pate_epsilon_data_independent(num_queries, value, DELTA)
                eps_dependent = pate_epsilon_data_dependent(votes, value, DELTA)
            else:
                labels = gaussian_noisy_max(votes, value, rng)
                eps = gnmax_epsilon(num_queries, value, DELTA)
                eps_dependent = gnmax_epsilon_data_dependent(votes, value, DELTA)
            rows.append(
                (
                    num_queries,
                    f"{aggregator}, {setting}",
                    ensemble,
                    label_accuracy(labels, truth),
                    student_accuracy(num_queries, labels, args.seed),
                    eps,
                    eps_dependent,
                )
            )
        plurality = votes.argmax(axis=1)
        rows.append(
            (
                num_queries,
                "plurality, no noise (non-private)",
                ensemble,
                ensemble,
                student_accuracy(num_queries, plurality, args.seed),
                math.inf,
                math.inf,
            )
        )
        rows.append(
            (
                num_queries,
                "true labels (non-private)",
                ensemble,
                1.0,
                student_accuracy(num_queries, truth, args.seed),
                math.inf,
                math.inf,
            )
        )
        print(f"done: {num_queries} queries after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    schedule = ", ".join(f"{student_epochs(q)} epochs for {q} queries" for q in query_counts)
    print(
        f"PATE on MNIST: {args.teachers} teachers ({len(partitions[0])} private images each, "
        f"{args.teacher_epochs} epochs, cached), mean teacher accuracy {teacher_accuracy:.3f} on the queried public "
        f"images; student SmallCNN(16, 32), {schedule}; delta = {DELTA:g}; seed {args.seed}.\n"
    )
    print(
        "| queries | labels | ensemble acc | noisy-label acc | student acc (held-out 1,000) "
        "| eps data-independent | eps data-dependent |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for num_queries, setting, ensemble, label_quality, student, eps, eps_dependent in rows:
        print(
            f"| {num_queries} | {setting} | {ensemble:.3f} | {label_quality:.3f} | {student:.3f} "
            f"| {eps:.2f} | {eps_dependent:.2f} |"
        )
    private = [row for row in rows if math.isfinite(row[5])]
    for bound in (8.0, 2.0):
        eligible = [row for row in private if row[5] <= bound + 1e-9]
        if eligible:
            best = max(eligible, key=lambda row: row[4])
            print(
                f"\nBest student at data-independent epsilon <= {bound:g}: {best[4]:.3f} "
                f"({best[1]}, {best[0]} queries, epsilon {best[5]:.2f}).",
                end="",
            )
    print(
        f"\n\nTotal time: {time.perf_counter() - started:.0f} s on {os.cpu_count()} CPU cores "
        f"(load average {os.getloadavg()[0]:.2f} at the end)."
    )


if __name__ == "__main__":
    main()
