"""The hidden checks of notebooks 01-02: they pass the reference (and differently written correct answers)
over many seeds and catch typical mistakes with a message that names them.

The seed sweeps come from grading_harness: a few seeds of each run in the fast suite; the reference and the
alternatives pass 200 seeds as the grader derives them, and each wrong answer is caught in at least 99% of 200
(slow).
"""

import pytest
import torch
from grading_harness import alternative_sweeps, seed_sweeps, student_seeds

from course import lib
from course.grading import GradingFailure, nb01, nb02
from course.grading.wrong_answers import nb01_02 as wrong

REFERENCE_SEEDS = student_seeds(200, "01_databases")  # as the grader derives them
WRONG_ANSWER_SEEDS = student_seeds(200, "02_differencing")
ALTERNATIVE_SEEDS = REFERENCE_SEEDS
QUICK_SEEDS = range(25)
QUICK_WRONG_ANSWER_SEEDS = range(10)
QUICK_ALTERNATIVE_SEEDS = range(5)
REQUIRED_CATCH_RATE = 0.99

CHECKS = {
    name: (check, getattr(lib, name))
    for name, check in {
        "create_db": nb01.check_create_db,
        "get_parallel_db": nb01.check_get_parallel_db,
        "get_parallel_dbs": nb01.check_get_parallel_dbs,
        "create_db_and_parallels": nb01.check_create_db_and_parallels,
        "sensitivity": nb01.check_sensitivity,
        "threshold_query": nb01.check_threshold_query,
        "sum_query": nb02.check_sum_query,
        "differencing_attack": nb02.check_differencing_attack,
        "differencing_attack_mean": nb02.check_differencing_attack_mean,
        "averaging_attack": nb02.check_averaging_attack,
    }.items()
}


# ---- correct answers written differently from the reference -----------------------------------------------


def create_db_bernoulli(n, p=0.5):
    return torch.bernoulli(torch.full((n,), float(p))).bool()


def get_parallel_db_mask(db, remove_index):
    keep = torch.ones(len(db), dtype=torch.bool)
    keep[remove_index] = False
    return db[keep]


def threshold_query_python_if(db, threshold=5):
    return torch.tensor(1.0 if int(db.sum()) > threshold else 0.0)


def sum_query_int(db):
    return torch.sum(db.int())


def differencing_attack_mean_rounded(db, index):
    n = len(db)
    return round(n * db.float().mean().item() - (n - 1) * get_parallel_db_mask(db, index).float().mean().item())


CORRECT_ALTERNATIVES = {
    create_db_bernoulli: "create_db",
    get_parallel_db_mask: "get_parallel_db",
    threshold_query_python_if: "threshold_query",
    sum_query_int: "sum_query",
    differencing_attack_mean_rounded: "differencing_attack_mean",
}

# Each typical mistake, with the check that must catch it and a phrase its failure message must contain.
MISTAKES = [
    ("create_db", wrong.create_db_ignoring_p, "probability p"),
    ("create_db", wrong.create_db_float, "bool tensor"),
    ("get_parallel_db", wrong.get_parallel_db_off_by_one, "exactly one row removed"),
    ("get_parallel_db", wrong.get_parallel_db_removes_next, "except row"),
    ("get_parallel_dbs", wrong.get_parallel_dbs_skips_first, "parallel databases"),
    ("create_db_and_parallels", wrong.create_db_and_parallels_mismatched, "without row"),
    ("sensitivity", wrong.sensitivity_averaging, "largest"),
    ("sensitivity", wrong.sensitivity_ignores_num_entries, "num_entries=50"),
    ("threshold_query", wrong.threshold_query_greater_or_equal, "strictly greater"),
    ("threshold_query", wrong.threshold_query_returns_bool, "float tensor"),
    ("sum_query", wrong.sum_query_counts_rows, "True rows"),
    ("differencing_attack", wrong.differencing_attack_fixed_sum, "use the query argument"),
    ("differencing_attack", wrong.differencing_attack_wrong_sign, "recover row"),
    ("differencing_attack_mean", wrong.differencing_attack_mean_without_sizes, "database size"),
    ("averaging_attack", wrong.averaging_attack_queries_once, "ask the noisy query"),
    ("averaging_attack", wrong.averaging_attack_sums, "average the differences"),
]
WRONG_ANSWERS = {mistake: name for name, mistake, _ in MISTAKES}
PHRASES = {mistake: phrase for _, mistake, phrase in MISTAKES}


(
    test_reference_passes_quick,
    test_reference_passes_every_check_for_200_seeds,
    test_wrong_answer_fails_quick,
    test_wrong_answer_caught_in_99_percent_of_seeds,
) = seed_sweeps(
    CHECKS,
    WRONG_ANSWERS,
    QUICK_SEEDS,
    REFERENCE_SEEDS,
    WRONG_ANSWER_SEEDS,
    REQUIRED_CATCH_RATE,
    phrases=PHRASES,
    quick_wrong_answer_seeds=QUICK_WRONG_ANSWER_SEEDS,
)
test_correct_alternative_passes_quick, test_correct_alternative_passes_more_seeds = alternative_sweeps(
    CHECKS, CORRECT_ALTERNATIVES, QUICK_ALTERNATIVE_SEEDS, ALTERNATIVE_SEEDS
)


def test_a_crashing_answer_is_reported_not_raised():
    def create_db(num_entries, p=0.5):
        raise IndexError("index 3 is out of bounds")

    with pytest.raises(GradingFailure, match="create_db raised IndexError: index 3 is out of bounds"):
        nb01.check_create_db(create_db)
