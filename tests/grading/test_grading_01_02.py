"""The hidden checks of notebooks 01-02: they pass the reference (and differently written correct answers)
over many seeds and catch typical mistakes."""

import pytest
import torch
from grading_harness import assert_fails_with_a_clean_message, reference_failures

from course import lib
from course.grading import GradingFailure, nb01, nb02
from course.grading.wrong_answers import nb01_02 as wrong

CHECKS = {
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
}
SEEDS = range(25)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_reference_passes_for_many_seeds(name):
    assert not reference_failures(CHECKS[name], getattr(lib, name), SEEDS)


def _alternative_parallel_db(db, remove_index):
    keep = torch.ones(len(db), dtype=torch.bool)
    keep[remove_index] = False
    return db[keep]


def _alternative_differencing_attack_mean(db, index):
    n = len(db)
    return round(n * db.float().mean().item() - (n - 1) * _alternative_parallel_db(db, index).float().mean().item())


ALTERNATIVES = [
    ("create_db", lambda n, p=0.5: torch.bernoulli(torch.full((n,), float(p))).bool()),
    ("get_parallel_db", _alternative_parallel_db),
    ("threshold_query", lambda db, threshold=5: torch.tensor(1.0 if int(db.sum()) > threshold else 0.0)),
    ("sum_query", lambda db: torch.sum(db.int())),
    ("differencing_attack_mean", _alternative_differencing_attack_mean),
]


@pytest.mark.parametrize("name, function", ALTERNATIVES, ids=[a[0] for a in ALTERNATIVES])
def test_differently_written_correct_answers_pass(name, function):
    assert not reference_failures(CHECKS[name], function, range(5))


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


@pytest.mark.parametrize("name, function, message", MISTAKES, ids=[m[1].__name__ for m in MISTAKES])
def test_typical_mistakes_fail_with_an_actionable_message(name, function, message):
    assert_fails_with_a_clean_message(CHECKS[name], function, range(10), message)


def test_a_crashing_answer_is_reported_not_raised():
    def create_db(num_entries, p=0.5):
        raise IndexError("index 3 is out of bounds")

    with pytest.raises(GradingFailure, match="create_db raised IndexError: index 3 is out of bounds"):
        nb01.check_create_db(create_db)
