"""Notebook 01: toy databases, parallel databases and empirical sensitivity.

A database is a 1-D tensor with one row per person, each row True/False (or 1/0).
Neighbour notion here: *removal* -- a parallel database is the database with exactly one row removed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .validators import as_database, check_index, check_positive_int, check_probability


def create_db(num_entries: int, p: float = 0.5, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random database: bool tensor of shape `(num_entries,)`, each row True with probability `p`."""
    num_entries = check_positive_int(num_entries, "num_entries")
    p = check_probability(p, "p")
    return torch.rand(num_entries, generator=generator) < p


def get_parallel_db(db: torch.Tensor, remove_index: int) -> torch.Tensor:
    """The removal-neighbour of `db` without row `remove_index`: shape `(len(db) - 1,)`, same dtype."""
    db = as_database(db)
    remove_index = check_index(remove_index, len(db), "remove_index")
    return torch.cat((db[:remove_index], db[remove_index + 1 :]))


def get_parallel_dbs(db: torch.Tensor) -> list[torch.Tensor]:
    """All removal-neighbours of `db`, in row order: element i lacks row i."""
    db = as_database(db)
    return [get_parallel_db(db, index) for index in range(len(db))]


def create_db_and_parallels(
    num_entries: int, p: float = 0.5, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A random database of `num_entries` rows and all of its removal-neighbours."""
    db = create_db(num_entries, p, generator=generator)
    return db, get_parallel_dbs(db)


def sensitivity(
    query: Callable[[torch.Tensor], object], num_entries: int = 1000, *, generator: torch.Generator | None = None
) -> float:
    """Empirical L1 sensitivity of `query` under removal.

    The largest `|query(db) - query(pdb)|` over every parallel database `pdb` of one fresh random database
    `db` of `num_entries` rows (p = 0.5). `query` may return a number or a 0-d tensor. This is a lower bound
    on the true sensitivity, which is a maximum over *all* databases.
    """
    if not callable(query):
        raise ValueError(f"query must be callable, got {type(query).__name__}")
    db, parallel_dbs = create_db_and_parallels(num_entries, generator=generator)
    full = float(query(db))
    return max((abs(float(query(pdb)) - full) for pdb in parallel_dbs), default=0.0)


def threshold_query(db: torch.Tensor, threshold: float = 5) -> torch.Tensor:
    """1.0 if strictly more than `threshold` rows are True, else 0.0; a 0-d float tensor."""
    db = as_database(db)
    return (db.sum() > threshold).float()
