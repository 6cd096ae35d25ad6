"""Hidden-test checks for notebook 01 (databases, parallel databases, sensitivity)."""

from __future__ import annotations

import torch

from course.lib import databases as ref

from . import as_float, call, require, seed_everything
from .stats import alpha_per_test, require_binomial


def _require_database(db, num_entries: int, what: str) -> None:
    require(torch.is_tensor(db), f"{what} should return a torch.Tensor, got {type(db).__name__}")
    require(tuple(db.shape) == (num_entries,), f"{what} should have shape ({num_entries},), got {tuple(db.shape)}")


def _require_rate(db: torch.Tensor, p: float, alpha: float, what: str) -> None:
    require_binomial(
        int(db.sum()),
        len(db),
        p,
        alpha,
        f"{what}: how often rows are True",
        f"each row must be True with probability p={p}, independently",
    )


def _random_db(num_entries: int, generator: torch.Generator) -> torch.Tensor:
    return ref.create_db(num_entries, 0.5, generator=generator)


def check_create_db(create_db, seed: int = 0) -> None:
    """Shapes and dtype; 3 binomial tests of the rate (1e-6 / 3 each); p=0 and p=1; fresh rows per call.

    Two calls of create_db(200) with p=0.5 agree with probability 2**-200, so the last test needs no budget.
    """
    seed_everything(seed)
    alpha = alpha_per_test(3)
    for num_entries in (1, 7, 1000):
        db = call(create_db, num_entries)
        _require_database(db, num_entries, f"create_db({num_entries})")
        require(db.dtype == torch.bool, f"create_db should return a bool tensor, got dtype {db.dtype}")
    for p in (0.5, 0.1, 0.9):
        db = call(create_db, 20_000, p)
        _require_database(db, 20_000, f"create_db(20000, p={p})")
        _require_rate(db, p, alpha, f"create_db(20000, p={p})")
    require(not bool(call(create_db, 500, 0.0).any()), "create_db(500, p=0.0) should have no True rows")
    require(bool(call(create_db, 500, 1.0).all()), "create_db(500, p=1.0) should have only True rows")
    first, second = call(create_db, 200), call(create_db, 200)
    require(
        not torch.equal(first, second),
        "two calls of create_db(200) gave the same database: draw fresh random rows on every call",
    )


def check_get_parallel_db(get_parallel_db, seed: int = 0) -> None:
    generator = seed_everything(seed)
    for dtype in (torch.bool, torch.float32):
        db = _random_db(40, generator).to(dtype)
        for index in range(len(db)):
            expected = ref.get_parallel_db(db, index)
            result = call(get_parallel_db, db.clone(), index)
            require(torch.is_tensor(result), f"get_parallel_db should return a tensor, got {type(result).__name__}")
            require(
                tuple(result.shape) == tuple(expected.shape),
                f"get_parallel_db(db of {len(db)} rows, remove_index={index}) should have shape "
                f"{tuple(expected.shape)} (exactly one row removed), got {tuple(result.shape)}",
            )
            require(
                torch.equal(result.to(dtype), expected),
                f"get_parallel_db(db, remove_index={index}) should keep every row except row {index}, "
                "in the original order",
            )


def check_get_parallel_dbs(get_parallel_dbs, seed: int = 0) -> None:
    generator = seed_everything(seed)
    for num_entries in (1, 2, 25):
        db = _random_db(num_entries, generator)
        expected = ref.get_parallel_dbs(db)
        result = call(get_parallel_dbs, db.clone())
        require(
            isinstance(result, (list, tuple)), f"get_parallel_dbs should return a list, got {type(result).__name__}"
        )
        require(
            len(result) == num_entries,
            f"a database of {num_entries} rows has {num_entries} parallel databases, got {len(result)}",
        )
        for index, (got, want) in enumerate(zip(result, expected)):
            require(
                torch.is_tensor(got) and tuple(got.shape) == tuple(want.shape) and torch.equal(got.bool(), want),
                f"element {index} of get_parallel_dbs(db) should be db without row {index}",
            )


def check_create_db_and_parallels(create_db_and_parallels, seed: int = 0) -> None:
    """The db and its parallel databases agree; one binomial test of the rate at p=0.1 (budget 1e-6)."""
    seed_everything(seed)
    result = call(create_db_and_parallels, 30)
    require(
        isinstance(result, tuple) and len(result) == 2,
        "create_db_and_parallels should return a tuple (db, parallel_dbs)",
    )
    db, parallels = result
    _require_database(db, 30, "the db returned by create_db_and_parallels(30)")
    expected = ref.get_parallel_dbs(db.bool())
    require(
        len(parallels) == 30, f"create_db_and_parallels(30) should give 30 parallel databases, got {len(parallels)}"
    )
    for index, (got, want) in enumerate(zip(parallels, expected)):
        require(
            torch.is_tensor(got) and tuple(got.shape) == tuple(want.shape) and torch.equal(got.bool(), want),
            f"parallel database {index} should be the returned db without row {index}",
        )
    db, _ = call(create_db_and_parallels, 3000, 0.1)
    _require_database(db, 3000, "the db returned by create_db_and_parallels(3000, p=0.1)")
    _require_rate(db.bool(), 0.1, alpha_per_test(1), "create_db_and_parallels(3000, p=0.1)")


class _RecordingQuery:
    """A query that remembers the sizes of the databases it was asked about."""

    def __init__(self, query):
        self.query = query
        self.sizes: list[int] = []

    def __call__(self, db):
        self.sizes.append(len(db))
        return self.query(db)


def check_sensitivity(sensitivity, seed: int = 0) -> None:
    seed_everything(seed)
    cases = [
        ("the sum query", lambda db: db.float().sum(), 1.0),
        ("three times the sum", lambda db: 3 * db.float().sum(), 3.0),
        ("a constant query", lambda db: torch.tensor(7.0), 0.0),
        ("the number of rows", lambda db: float(len(db)), 1.0),
    ]
    for name, query, expected in cases:
        recording = _RecordingQuery(query)
        got = as_float(call(sensitivity, recording, 50), f"sensitivity({name}, num_entries=50)")
        require(
            abs(got - expected) < 1e-6,
            f"the sensitivity of {name} under removal is {expected}, got {got:g} "
            "(take the largest absolute change over all parallel databases)",
        )
        require(
            50 in recording.sizes and recording.sizes.count(49) >= 50,
            "sensitivity(query, num_entries=50) should query one database of 50 rows and all 50 of its "
            f"parallel databases (49 rows each); it queried databases of sizes {sorted(set(recording.sizes))}",
        )


def check_threshold_query(threshold_query, seed: int = 0) -> None:
    generator = seed_everything(seed)
    for threshold in (0, 5, 5.5, 12):
        for true_rows in sorted({max(0, int(threshold) - 1), int(threshold), int(threshold) + 1}):
            db = torch.zeros(30, dtype=torch.bool)
            db[torch.randperm(30, generator=generator)[:true_rows]] = True
            expected = float(ref.threshold_query(db, threshold))
            result = call(threshold_query, db, threshold)
            require(
                torch.is_tensor(result) and result.is_floating_point(),
                f"threshold_query should return a float tensor, got {type(result).__name__}"
                + (f" of dtype {result.dtype}" if torch.is_tensor(result) else ""),
            )
            got = as_float(result, "threshold_query")
            require(
                got == expected,
                f"threshold_query(db with {true_rows} True rows, threshold={threshold}) should be {expected}, "
                f"got {got:g} (1.0 only when the count is strictly greater than the threshold)",
            )
    db = torch.ones(6, dtype=torch.bool)
    require(
        as_float(call(threshold_query, db), "threshold_query") == 1.0,
        "threshold_query(db) should use threshold=5 by default: 6 True rows give 1.0",
    )
