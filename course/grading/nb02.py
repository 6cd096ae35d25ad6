"""Hidden-test checks for notebook 02 (the differencing attack)."""

from __future__ import annotations

import torch

from course.lib import databases
from course.lib import differencing as ref

from . import as_float, call, require, seed_everything


def check_sum_query(sum_query, seed: int = 0) -> None:
    generator = seed_everything(seed)
    for num_entries in (1, 10, 1000):
        db = databases.create_db(num_entries, generator=generator)
        for version in (db, db.float(), db.long()):
            expected = float(ref.sum_query(version))
            got = as_float(call(sum_query, version.clone()), "sum_query(db)")
            require(got == expected, f"sum_query on a database with {int(expected)} True rows returned {got:g}")


def check_differencing_attack(differencing_attack, seed: int = 0) -> None:
    generator = seed_everything(seed)
    db = databases.create_db(40, generator=generator)
    for index in range(len(db)):
        got = as_float(call(differencing_attack, db.clone(), index), "differencing_attack(db, index)")
        require(
            abs(got - float(db[index])) < 1e-6,
            f"differencing_attack(db, index={index}) should recover row {index} = {float(db[index])}, got {got:g}",
        )

    # The size term makes every difference differ from the plain row value, so a fixed sum cannot pass.
    def weighted(d):
        return 2.5 * d.float().sum() + len(d)

    for index in (0, 17, 39):
        expected = ref.differencing_attack(db, index, weighted)
        got = as_float(call(differencing_attack, db.clone(), index, weighted), "differencing_attack(db, index, query)")
        require(
            abs(got - expected) < 1e-5,
            f"differencing_attack(db, {index}, query) should return query(db) - query(parallel db) = {expected:g} "
            f"for the query it is given, got {got:g} (use the query argument, not a fixed sum)",
        )


def check_differencing_attack_mean(differencing_attack_mean, seed: int = 0) -> None:
    generator = seed_everything(seed)
    for num_entries in (2, 10, 100, 1000):
        db = databases.create_db(num_entries, generator=generator)
        for index in sorted({0, num_entries // 2, num_entries - 1}):
            got = as_float(call(differencing_attack_mean, db.clone(), index), "differencing_attack_mean(db, index)")
            require(
                abs(got - float(db[index])) < 1e-3,
                f"differencing_attack_mean on {num_entries} rows should recover row {index} = {float(db[index])}, "
                f"got {got:g} (the mean hides the count: multiply each mean by its database size)",
            )


class _CountingNoisySum:
    """A noisy sum query with Laplace(0, 1) noise that counts how often it is asked."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.calls = 0

    def __call__(self, db):
        self.calls += 1
        uniform = torch.rand((), generator=self.generator, dtype=torch.float64) - 0.5
        noise = -torch.sign(uniform) * torch.log1p(-2 * uniform.abs())
        return db.double().sum() + noise


def check_averaging_attack(averaging_attack, seed: int = 0) -> None:
    generator = seed_everything(seed)
    db = databases.create_db(60, generator=generator)
    for index, num_queries in ((3, 2000), (41, 2000), (7, 1)):
        query = _CountingNoisySum(generator)
        got = as_float(
            call(averaging_attack, query, db.clone(), index, num_queries),
            "averaging_attack(noisy_query, db, index, num_queries)",
        )
        require(
            query.calls == 2 * num_queries,
            f"averaging_attack with num_queries={num_queries} should ask the noisy query {2 * num_queries} "
            f"times (once on db and once on the parallel database per difference), it asked {query.calls}",
        )
        if num_queries > 1:
            # The average of 2000 differences of independent Laplace(0, 1) draws (MGF 1/(1-t^2)^2) is off by
            # 0.35 or more with probability below 2 exp(-2000 max_t (0.35 t + 2 ln(1 - t^2))) = 1.2e-13
            # (Chernoff bound, t = 0.087): a fixed tolerance far inside the 1e-6 of course.grading.stats.
            require(
                abs(got - float(db[index])) < 0.35,
                f"averaging 2000 noisy differences should estimate row {index} = {float(db[index])} closely, "
                f"got {got:g} (average the differences, do not sum them)",
            )
