"""Notebook 02: the differencing attack.

Two aggregate answers that differ by one person reveal that person. Neighbour notion: *removal*
(`get_parallel_db` drops one row), with the database size public where the mean attack needs it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .databases import get_parallel_db
from .validators import as_database, check_index, check_positive_int


def sum_query(db: torch.Tensor) -> torch.Tensor:
    """The number of True rows (a 0-d tensor)."""
    return as_database(db).sum()


def differencing_attack(db: torch.Tensor, index: int, query: Callable = sum_query) -> float:
    """Recover row `index` as `query(db) - query(db without row index)`.

    With the sum query this is exactly the row's value.
    """
    db = as_database(db)
    index = check_index(index, len(db))
    return float(query(db)) - float(query(get_parallel_db(db, index)))


def differencing_attack_mean(db: torch.Tensor, index: int) -> float:
    """Recover row `index` from two mean queries, knowing the sizes n and n - 1.

    `n * mean(db) - (n - 1) * mean(pdb)` equals the removed row; computed in float64 so the answer is
    exact to about 1e-12 for any realistic n.
    """
    db = as_database(db)
    index = check_index(index, len(db))
    n = len(db)
    if n < 2:
        raise ValueError("the mean attack needs at least two rows: the parallel database would be empty")
    mean_all = db.double().mean()
    mean_without = get_parallel_db(db, index).double().mean()
    return float(n * mean_all - (n - 1) * mean_without)


def averaging_attack(noisy_query: Callable, db: torch.Tensor, index: int, num_queries: int) -> float:
    """Estimate row `index` by averaging `num_queries` noisy differences.

    Each difference calls `noisy_query` once on `db` and once on the parallel database (2 * num_queries calls
    in all). Independent noise averages out like 1/sqrt(num_queries): this is why privacy budgets add up.
    """
    db = as_database(db)
    index = check_index(index, len(db))
    num_queries = check_positive_int(num_queries, "num_queries")
    parallel = get_parallel_db(db, index)
    differences = [float(noisy_query(db)) - float(noisy_query(parallel)) for _ in range(num_queries)]
    return sum(differences) / num_queries
