"""PATE 2018 on MNIST: Confident-GNMax, data-dependent RDP, smooth-sensitivity release, semi-supervised student.

    python scripts/pate2018_results.py [--seeds 0,1,2] [--out results/pate2018_mnist.md] [--quick]

Stage 1 (cached): 250 teachers, each a `SmallCNN` trained on its own 240 of MNIST's 60,000 training images
(`partition_indices`, `train_teachers`), vote on all 10,000 test images. Their predictions are saved to
`build/pate_teacher_predictions_<teachers>t_<epochs>e_seed<seed>.npy` (git-ignored), so later runs skip the
training. Stage 2 (per configuration and seed): the aggregator answers the first `queries` public images, the
privacy analysis runs on the votes, and a semi-supervised student learns from the answered images (noisy labels)
and the unlabelled rest of the 9,000 public images; it is scored on the held-out 1,000.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course.lib.pate import partition_indices  # noqa: E402
from course.lib.pate_training import load_mnist_splits, teacher_predictions, train_teachers  # noqa: E402

NUM_CLASSES = 10


def cached_teacher_predictions(data_root: str, num_teachers: int, epochs: int, seed: int,
                               cache_dir: Path = REPO / "build") -> np.ndarray:
    """Teacher predictions `(num_teachers, 10_000)` on the shuffled test images (public 9,000 then eval 1,000)."""
    path = cache_dir / f"pate_teacher_predictions_{num_teachers}t_{epochs}e_seed{seed}.npy"
    if path.exists():
        return np.load(path)
    (private_images, private_labels), (public_images, _), (eval_images, _) = load_mnist_splits(data_root)
    partitions = partition_indices(len(private_images), num_teachers, seed=seed)
    teachers = train_teachers(private_images, private_labels, partitions, epochs=epochs, seed=seed)
    predictions = teacher_predictions(teachers, torch.cat([public_images, eval_images])).astype(np.uint8)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, predictions)
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=int, default=250)
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--votes-only", action="store_true")
    parser.add_argument("--data", default=os.environ.get("DP_COURSE_DATA", str(REPO / "data")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    preds = cached_teacher_predictions(args.data, args.teachers, args.teacher_epochs, args.teacher_seed)
    print(f"teacher predictions {preds.shape} after {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
