"""Notebook 07's membership-inference results on real PneumoniaMNIST, measured with the reference library.

Run from the repository root: `python scripts/membership_results.py [--fast]` (data from DP_COURSE_DATA,
default ./data). It executes `source/07_membership/07_membership.ipynb` top to bottom with nbclient, in the
default mode unless `--fast`, so the models are trained by exactly the notebook's code and settings (250
members, the non-private MLP, Opacus models at the notebook's epsilons, the reference models). Then, in the same
kernel, it scores every model with `course.lib.membership` (not the notebook's solutions) and prints a markdown
table per attack:

- the loss attack ("member if loss <= tau", Yeom et al. 2018) and the difficulty-calibrated attack of the
  notebook's section 7 (offline LiRA-style z-score against the reference models);
- AUC, TPR at FPR <= 1% and <= 0.1% (each with its binomial standard error over the members), the best
  advantage max(TPR - FPR), and the DP limit on that advantage: `dp_advantage_bound` at the replacement
  guarantee (2 eps, (1 + e^eps) delta) derived from Opacus's add/remove epsilon (PRV accountant, delta 1e-5);
- test accuracy on the untouched PneumoniaMNIST test split.

Noise levels printed under the tables: the AUC's standard deviation under no leakage, and the advantage a useless
attack exceeds 1% of the time (one-sided Kolmogorov-Smirnov, constant sqrt(ln(100)/2) = 1.52). A model whose
replacement delta (1 + e^eps) 1e-5 is not far below 1/n (at least 1/(10 n)) gets no DP limit: "vacuous".
A last row checks the notebook's claim about notebook 06's setup: the same MLP on 2,500 members for 20 epochs
(Adam, lr 1e-3), scored by the loss attack.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from autograder.layout import REPO

NOTEBOOK = REPO / "source" / "07_membership" / "07_membership.ipynb"
RESULTS_MARKER = "MEMBERSHIP-RESULTS "

# Runs in the notebook's kernel after its last cell: every name it uses (models, training, assessment,
# test_set, guarantees, reference_in, reference_out, ...) is the notebook's own.
MEASURE = r"""
import json as _json
import math as _math
import numpy as _np
from course.lib import membership as _ref
from course.shown import membership_plots as _plots


def _measure(scores_in, scores_out):
    fpr, tpr = _ref.attack_roc(scores_in, scores_out)
    row = {"auc": _ref.attack_auc(scores_in, scores_out), "best_advantage": float(_np.max(tpr - fpr)),
           "n_in": len(scores_in), "n_out": len(scores_out)}
    for name, budget in (("tpr_1", 0.01), ("tpr_01", 0.001)):
        rate = _ref.tpr_at_fpr(scores_in, scores_out, budget)
        row[name], row[name + "_se"] = rate, _math.sqrt(rate * (1 - rate) / len(scores_in))
    return row


_rows = []
for _name, _model in models.items():
    _common = {"model": _name, "test_accuracy": binary_accuracy(_model, test_set),
               "train_accuracy": binary_accuracy(_model, training),
               "assessment_accuracy": binary_accuracy(_model, assessment),
               "bound": _ref.dp_advantage_bound(*guarantees[_name]) if _name in guarantees else None,
               "vacuous": _name in vacuous,
               "replacement_epsilon": (guarantees.get(_name) or vacuous.get(_name) or (None,))[0]}
    _loss = _measure(_ref.loss_scores(_model, training), _ref.loss_scores(_model, assessment))
    _calibrated = _measure(_plots.calibrated_scores(_plots.true_label_logits(_model, training), reference_in),
                           _plots.calibrated_scores(_plots.true_label_logits(_model, assessment), reference_out))
    _rows.append({**_common, "attack": "loss", **_loss})
    _rows.append({**_common, "attack": "calibrated", **_calibrated})

# Notebook 06's setup, for the claim in section 1: 2,500 members, 20 epochs, the same MLP and optimiser.
_train_06, _assess_06, _validation_06 = resplit(train_set, val_set, 2500, seed=0)
torch.manual_seed(0)
_model_06 = spec_mlp()
train_non_private(_model_06, _train_06, _validation_06, epochs=20)
_rows.append({"model": "non-private, notebook 06 setup (2,500 members, 20 epochs)", "attack": "loss",
              "test_accuracy": binary_accuracy(_model_06, test_set),
              "train_accuracy": binary_accuracy(_model_06, _train_06),
              "assessment_accuracy": binary_accuracy(_model_06, _assess_06), "bound": None, "vacuous": False,
              "replacement_epsilon": None,
              **_measure(_ref.loss_scores(_model_06, _train_06), _ref.loss_scores(_model_06, _assess_06))})
print("MEMBERSHIP-RESULTS " + _json.dumps(_rows))
"""


def run_notebook(fast: bool) -> tuple[list[dict], float]:
    """Execute the notebook plus the measuring cell; return (result rows, seconds the notebook's own cells took)."""
    os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))
    os.environ["MPLBACKEND"] = "Agg"
    if fast:
        os.environ["DP_COURSE_FAST"] = "1"
    else:
        os.environ.pop("DP_COURSE_FAST", None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    notebook_cells = len(nb.cells)
    nb.cells.append(new_code_cell(MEASURE))
    with tempfile.TemporaryDirectory() as scratch:
        client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": scratch}})
        with client.setup_kernel():
            start = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                if index == notebook_cells:
                    notebook_seconds = time.perf_counter() - start
                client.execute_cell(cell, index)
    for output in nb.cells[-1].outputs:
        for line in output.get("text", "").splitlines():
            if line.startswith(RESULTS_MARKER):
                return json.loads(line[len(RESULTS_MARKER) :]), notebook_seconds
    raise RuntimeError("the measuring cell printed no results")


def _rate(row: dict, key: str) -> str:
    return f"{row[key]:.3f} ± {row[key + '_se']:.3f}"


def markdown_table(rows: list[dict], attack: str) -> str:
    lines = [
        "| model | replacement ε | test acc. | AUC (± sd if no leak) | TPR @ FPR ≤ 1% | TPR @ FPR ≤ 0.1% "
        "| best TPR − FPR | DP limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["attack"] != attack:
            continue
        epsilon = "∞" if row["replacement_epsilon"] is None else f"{row['replacement_epsilon']:.2f}"
        bound = (
            ("vacuous (δ ≥ 1/(10n))" if row.get("vacuous") else "1 (none)")
            if row["bound"] is None
            else f"{row['bound']:.3f}"
        )
        null_sd = ((row["n_in"] + row["n_out"] + 1) / (12 * row["n_in"] * row["n_out"])) ** 0.5
        lines.append(
            f"| {row['model']} | {epsilon} | {row['test_accuracy']:.3f} | {row['auc']:.3f} (± {null_sd:.3f}) "
            f"| {_rate(row, 'tpr_1')} | {_rate(row, 'tpr_01')} | {row['best_advantage']:.3f} | {bound} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="run the notebook in its fast mode (a smoke test)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows, notebook_seconds = run_notebook(args.fast)
    load_after = os.getloadavg()
    mode = "fast" if args.fast else "default"
    print(
        f"Notebook 07, {mode} mode: its cells ran in {notebook_seconds:.0f} s "
        f"(1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after).\n"
    )
    first = rows[0]
    n_in, n_out = first["n_in"], first["n_out"]
    for attack, title in (
        ("loss", "Loss attack (member if loss <= tau)"),
        ("calibrated", "Calibrated attack (z-score against the reference models)"),
    ):
        print(f"### {title}\n")
        print(markdown_table(rows, attack))
        print()
    auc_sd = ((n_in + n_out + 1) / (12 * n_in * n_out)) ** 0.5
    # one-sided Kolmogorov-Smirnov (Smirnov 1939): P[max(TPR - FPR) > t] ~ exp(-2 t^2 n_in n_out / (n_in + n_out))
    useless = math.sqrt(math.log(100) / 2) * ((n_in + n_out) / (n_in * n_out)) ** 0.5
    print(
        f"Noise with {n_in} members and {n_out} non-members: AUC 0.5 ± {auc_sd:.3f} (1 sd) for an attack "
        f"that learns nothing; a useless attack's best TPR − FPR exceeds {useless:.3f} 1% of the time. "
        f"TPR ± is the binomial standard error over the members. With {n_out} non-members the smallest "
        f"non-zero FPR is {1 / n_out:.4f}, so TPR @ FPR ≤ 0.1% counts members found with no false alarm."
    )
    print("\nAccuracy on members / non-members (the gap is the advantage of 'member if classified correctly'):")
    for row in rows:
        if row["attack"] == "loss":
            print(f"- {row['model']}: {row['train_accuracy']:.3f} / {row['assessment_accuracy']:.3f}")


if __name__ == "__main__":
    main()
