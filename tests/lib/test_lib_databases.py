"""Unit tests of course.lib for notebooks 01 (databases) and 02 (differencing)."""

import pytest
import torch

from course.lib import databases as db_lib
from course.lib import differencing as diff_lib


def test_create_db_shape_dtype_and_rate():
    generator = torch.Generator().manual_seed(1)
    db = db_lib.create_db(50_000, 0.2, generator=generator)
    assert db.shape == (50_000,) and db.dtype == torch.bool
    assert abs(db.float().mean().item() - 0.2) < 0.01
    assert not db_lib.create_db(100, 0.0).any() and db_lib.create_db(100, 1.0).all()


def test_parallel_dbs_remove_each_row_once():
    db = torch.tensor([True, False, False, True, True])
    parallels = db_lib.get_parallel_dbs(db)
    assert len(parallels) == 5
    for index, pdb in enumerate(parallels):
        expected = [v for i, v in enumerate(db.tolist()) if i != index]
        assert pdb.tolist() == expected


def test_create_db_and_parallels_are_consistent():
    db, parallels = db_lib.create_db_and_parallels(12, generator=torch.Generator().manual_seed(0))
    assert [p.tolist() for p in parallels] == [p.tolist() for p in db_lib.get_parallel_dbs(db)]


@pytest.mark.parametrize(
    "query, expected",
    [
        (lambda d: d.float().sum(), 1.0),
        (lambda d: 4 * d.float().sum(), 4.0),
        (lambda d: 1.5, 0.0),
    ],
)
def test_sensitivity_known_values(query, expected):
    assert db_lib.sensitivity(query, 200, generator=torch.Generator().manual_seed(3)) == expected


def test_sensitivity_of_mean_is_about_one_over_n():
    value = db_lib.sensitivity(lambda d: d.float().mean(), 1000, generator=torch.Generator().manual_seed(0))
    assert 0 < value < 2 / 999


def test_threshold_query_is_strict():
    assert db_lib.threshold_query(torch.tensor([True] * 5 + [False])).item() == 0.0
    assert db_lib.threshold_query(torch.tensor([True] * 6)).item() == 1.0
    assert db_lib.threshold_query(torch.tensor([1.0, 1.0]), threshold=1.5).dtype == torch.float32


def test_differencing_attacks_recover_every_row():
    db = db_lib.create_db(300, generator=torch.Generator().manual_seed(5))
    assert [diff_lib.differencing_attack(db, i) for i in range(300)] == db.float().tolist()
    mean_attack = torch.tensor([diff_lib.differencing_attack_mean(db, i) for i in range(300)], dtype=torch.float64)
    assert torch.allclose(mean_attack, db.double(), atol=1e-9)


def test_averaging_attack_calls_twice_per_query_and_converges():
    generator = torch.Generator().manual_seed(0)
    calls = []

    def noisy(d):
        calls.append(len(d))
        return d.double().sum() + torch.randn((), generator=generator, dtype=torch.float64)

    db = torch.tensor([True, False, True])
    estimate = diff_lib.averaging_attack(noisy, db, 0, 4000)
    assert len(calls) == 8000 and calls.count(3) == 4000
    assert abs(estimate - 1.0) < 0.15


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: db_lib.create_db(0), "num_entries"),
        (lambda: db_lib.create_db(10, p=1.5), "p must be"),
        (lambda: db_lib.create_db(2.5), "num_entries"),
        (lambda: db_lib.get_parallel_db(torch.tensor([True, False]), 2), "remove_index"),
        (lambda: db_lib.get_parallel_db(torch.tensor([True, False]), -1), "remove_index"),
        (lambda: db_lib.get_parallel_dbs(torch.tensor([], dtype=torch.bool)), "empty"),
        (lambda: db_lib.threshold_query(torch.ones(2, 2)), "1-D"),
        (lambda: db_lib.threshold_query(torch.tensor([0.0, 2.0])), "0/1"),
        (lambda: db_lib.threshold_query([True, False]), "torch.Tensor"),
        (lambda: db_lib.sensitivity("sum"), "callable"),
        (lambda: diff_lib.differencing_attack_mean(torch.tensor([True]), 0), "two rows"),
        (lambda: diff_lib.averaging_attack(lambda d: d.sum(), torch.tensor([True]), 0, 0), "num_queries"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
