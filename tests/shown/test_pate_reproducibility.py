"""A seeded PATE 2018 student is reproducible bit for bit: two fresh processes that train the GAN-assisted student
of `scripts/pate2018_results.py` (tiny settings, same data, same seed) end with identical parameters, and another
training seed gives other parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: the script's own deterministic settings and fingerprint, a tiny student.
TRAIN_ONE_STUDENT = """
import json, sys
sys.path.insert(0, "scripts")
import torch
import pate2018_results as script
from course.shown.pate_gan import train_gan_assisted_student
from course.shown.pate_training import predict_classes_augmented, random_affine

script.deterministic_torch()
data = torch.Generator().manual_seed(123)  # the data are the same in every process
images = torch.rand(80, 1, 28, 28, generator=data)
labels = torch.randint(0, 10, (30,), generator=data)
seed = int(sys.argv[1])
student = train_gan_assisted_student(
    images[:30], labels, images[30:], gan_steps=15, rounds=1, augment=random_affine, example_budget=200,
    max_epochs=2, seed=seed,
)
predicted = predict_classes_augmented(student, images[:20], views=2, seed=seed)
print(json.dumps({"fingerprint": script.parameter_fingerprint(student), "predicted": predicted.tolist()}))
"""


def _train(seed: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE_STUDENT, str(seed)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # three fresh interpreters, each training a student
def test_a_seeded_student_is_reproducible_bit_for_bit_across_processes():
    first, second, other = _train(0), _train(0), _train(1)
    assert first == second, "the same training seed must give the same parameters, bit for bit"
    assert first["fingerprint"] != other["fingerprint"], "another training seed must give another student"
