"""A small sample class, built from source/ and release/, that shows the whole grading loop.

Students: `perfect` (the reference solutions typed into the release notebook), `untouched` (the release as
handed out), `one_wrong` (perfect but for one typical mistake per assignment) and `broken` (a file that is
not a notebook).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from .paths import RELEASE, SOURCE, assignments, notebooks

# One typical mistake per assignment: (graded function whose cell is replaced, the wrong code).
WRONG_ANSWERS = {
    "01_databases": ("threshold_query",
                     "def threshold_query(db, threshold=5):\n    return (db.sum() >= threshold).float()"),
    "02_differencing": ("differencing_attack_mean",
                        "def differencing_attack_mean(db, index):\n"
                        "    return float(db.float().mean() - get_parallel_db(db, index).float().mean())"),
    "03_randomized_response": ("randomized_response",
                               "def randomized_response(db, p_noise=0.5):\n"
                               "    flip = torch.rand(len(db)) < p_noise\n"
                               "    return (db.bool() ^ flip).to(db.dtype)"),
    "04_laplace": ("private_mean",
                   "def private_mean(db, epsilon):\n"
                   "    return laplace_mechanism(float(db.double().mean()), 1.0, epsilon)"),
    "05_pate": ("laplace_noisy_max",  # adds the noise into the integer counts in place: truncated to integers
                "def laplace_noisy_max(counts, gamma, rng=None):\n"
                "    counts = np.array(counts)  # a copy of the integer counts, as the caller's must not change\n"
                "    source = np.random if rng is None else rng\n"
                "    for row in counts:\n"
                "        for j in range(len(row)):\n"
                "            row[j] += source.laplace(0.0, 1.0 / gamma)\n"
                "    return np.argmax(counts, axis=1)"),
    "06_dpsgd": ("dp_grads",  # clips the whole batch's gradient once instead of each example's
                 "def dp_grads(model, batch_data, criterion, max_grad_norm, noise_multiplier):\n"
                 "    model.zero_grad()\n"
                 "    for x, t in batch_data:\n"
                 "        criterion(model(x).reshape(1), t.float().reshape(1)).backward()\n"
                 "    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)\n"
                 "    total = {name: p.grad.clone() for name, p in model.named_parameters()}\n"
                 "    model.zero_grad()\n"
                 "    noise_std = noise_multiplier * max_grad_norm\n"
                 "    return {name: (g + noise_std * torch.randn_like(g)) / len(batch_data) for name, g in total.items()}"),
    "07_membership": ("attack_auc",  # counts tied (member, non-member) pairs as 0 instead of one half
                      "def attack_auc(scores_in, scores_out):\n"
                      "    wins = np.asarray(scores_in)[:, None] < np.asarray(scores_out)[None, :]\n"
                      "    return float(wins.mean())"),
}
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def solution_text(source_cell) -> str:
    """A solution cell's code as a student would type it: the source without nbgrader's markers."""
    return "\n".join(line for line in source_cell.source.splitlines() if line.strip() not in SOLUTION_MARKERS)


def solved(assignment: str, notebook: str, source: Path = SOURCE, release: Path = RELEASE,
           replace: dict[str, str] | None = None):
    """The release notebook with every solution cell filled in from the source (or from `replace`)."""
    replace = replace or {}
    source_cells = {c.get("id"): c for c in nbformat.read(source / assignment / notebook, as_version=4).cells}
    nb = nbformat.read(release / assignment / notebook, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = replace.get(meta["grade_id"]) or solution_text(source_cells[cell.get("id")])
    return nb


def build(target: Path, source: Path = SOURCE, release: Path = RELEASE) -> list[str]:
    """Write the sample class under `target` (<student>/<assignment>/<notebook>); return the student names."""
    if target.exists():
        shutil.rmtree(target)
    for assignment in assignments(source):
        for notebook in notebooks(assignment, source):
            wrong = WRONG_ANSWERS.get(assignment)
            versions = {
                "perfect": solved(assignment, notebook, source, release),
                "untouched": nbformat.read(release / assignment / notebook, as_version=4),
                "one_wrong": solved(assignment, notebook, source, release, dict([wrong]) if wrong else None),
            }
            for student, nb in versions.items():
                path = target / student / assignment / notebook
                path.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, path)
            broken = target / "broken" / assignment / notebook
            broken.parent.mkdir(parents=True, exist_ok=True)
            broken.write_text('{"cells": [ this is not JSON')
    return ["perfect", "untouched", "one_wrong", "broken"]
