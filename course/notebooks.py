"""Each notebook's facts in one place, for the grader and the tools around it.

Adding an eighth notebook means a folder in source/, its hidden checks in `course/grading/nbNN.py`, a typical
mistake in `course/grading/wrong_answers/`, and one entry here (docs/ARCHITECTURE.md lists the rest);
tests/grading/test_notebook_registry.py fails while a notebook of source/ has no entry, or an entry names something
that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

# The datasets a notebook may read from DP_COURSE_DATA, as the grader's preflight checks them.
DATASETS = ("mnist", "pneumonia")


@dataclass(frozen=True)
class Notebook:
    assignment: str  # its folder in source/ and release/
    checks: str  # the module of course.grading that holds its hidden checks
    datasets: tuple[str, ...]  # what it reads (of DATASETS); the preflight checks they are in place
    # For the demo's sample class: (graded function, course.grading.wrong_answers.<module>.<function>).
    typical_mistake: tuple[str, str]
    results_scripts: tuple[str, ...] = ()  # files of scripts/ that compute the numbers its text quotes


NOTEBOOKS = {
    notebook.assignment: notebook
    for notebook in (
        Notebook(
            assignment="01_databases",
            checks="nb01",
            datasets=(),
            typical_mistake=("threshold_query", "nb01_02.threshold_query_greater_or_equal"),
        ),
        Notebook(
            assignment="02_differencing",
            checks="nb02",
            datasets=(),
            typical_mistake=("differencing_attack_mean", "nb01_02.differencing_attack_mean_without_sizes"),
        ),
        Notebook(
            assignment="03_randomized_response",
            checks="nb03",
            datasets=(),
            typical_mistake=("randomized_response", "nb03_04.rr_flips_instead_of_coin"),
        ),
        Notebook(
            assignment="04_laplace",
            checks="nb04",
            datasets=(),
            typical_mistake=("private_mean", "nb03_04.private_mean_sum_sensitivity"),
        ),
        Notebook(
            assignment="05_pate",
            checks="nb05",
            datasets=("mnist",),
            typical_mistake=("laplace_noisy_max", "nb05.laplace_noise_truncated"),
            results_scripts=("pate_results.py", "pate2018_results.py"),
        ),
        Notebook(
            assignment="06_dpsgd",
            checks="nb06",
            datasets=("pneumonia",),
            typical_mistake=("dp_grads", "nb06.dp_grads_batch_clipping"),
            results_scripts=("dpsgd_results.py",),
        ),
        Notebook(
            assignment="07_membership",
            checks="nb07",
            datasets=("pneumonia",),
            typical_mistake=("attack_auc", "nb07.attack_auc_ties_ignored"),
            results_scripts=("membership_results.py",),
        ),
    )
}
