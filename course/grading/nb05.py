"""Hidden-test checks for notebook 05_pate.

Each `check_<function>(student_function, seed=0)` raises `GradingFailure` with an actionable message when the
student's function disagrees with `course.lib.pate` or `course.lib.pate_analysis`. Deterministic functions are
compared with the reference on generated inputs (exactly, or to relative tolerance 1e-9); the noisy-max
aggregators are tested statistically against their exact output distributions (calibration in
`course.grading.stats`). Checks seed the global generators with `seed_everything` (students may ignore `rng`
and draw from `np.random`) and also pass an explicit `numpy.random.Generator` as the `rng` argument; inputs
come from a separate NumPy generator.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import numpy as np

from course.grading import GradingFailure, as_float, call, fail, require, seed_everything
from course.grading.stats import alpha_per_test, require_binomial
from course.lib import pate, pate_analysis

_INPUT_STREAM = 5  # distinguishes this notebook's input generator from other notebooks' for the same seed
_STUDENT_STREAM = 50  # the stream of the generator handed to the student as `rng`
_RELATIVE_TOLERANCE = 1e-9

_FIXED_PARTITIONS = ((10, 3), (1, 1), (7, 7), (60_000, 250), (9_001, 16))
_RANDOM_PARTITIONS = 5
_MAX_RANDOM_TEACHERS = 300

_FIXED_VOTES = ((250, 300, 10), (5, 17, 3), (1, 4, 10), (30, 1, 10), (12, 40, 10))  # (teachers, queries, classes)
_RANDOM_VOTES = 10

_PRECISE_ROWS = 200  # rows whose plurality class must win when the noise is tiny
_TIE_ROWS = 2000  # rows with two classes tied for the most votes
_ROWS_PER_HISTOGRAM = 4000
_NUM_CLASSES = 10
_MIN_TESTED_PROBABILITY = 0.01  # rarer labels (under 40 expected of 4000) give a binomial test little power

_PUBLISHED_PATE = ((100, 0.1, 1e-5), (100, 0.1, 1e-5, 20), (163, 0.1, 1e-5))  # 11.7564627..., 15.5364627...
_FIXED_PATE = ((50, 1.0, 1e-5, 8), (1000, 0.05, 1e-6, 30), (10, 2.0, 1e-3, 3), (5000, 0.01, 1e-8, 1))
_RANDOM_ACCOUNTANT_CASES = 40
_TYPICAL_GNMAX = ((1000, 40.0, 1e-5), (100, 40.0, 1e-5), (300, 100.0, 1e-6))  # (queries, sigma, delta)
_DEFAULT_ORDERS_SLACK = 1.25  # orders=None may give at most 25% more than the best order


@dataclasses.dataclass(frozen=True)
class _NoisyMax:
    """What a noisy-max check needs to know about one aggregator."""

    name: str  # the student's function name
    parameter: str  # "gamma" or "sigma"
    precise_value: float  # a parameter value whose noise is far below one vote
    histograms: tuple  # ((counts, parameter value), ...) for the distribution tests
    probabilities: Callable  # exact output distribution: (counts, value) -> probabilities
    noise_rule: str  # the noise law, in the student's terms


_LAPLACE = _NoisyMax(
    "laplace_noisy_max",
    "gamma",
    1000.0,
    (((10, 9, 8, 3, 0), 0.5), ((4, 4, 3, 0, 1), 1.0), ((25, 20, 22, 5, 0), 0.2)),
    pate.laplace_noisy_max_probabilities,
    "the noise must be Laplace(0, 1/gamma): numpy's scale argument is 1/gamma, not gamma",
)
_GAUSSIAN = _NoisyMax(
    "gaussian_noisy_max",
    "sigma",
    1e-3,
    (((10, 9, 8, 3, 0), 3.0), ((4, 4, 3, 0, 1), 0.8), ((25, 20, 22, 5, 0), 2.0)),
    pate.gaussian_noisy_max_probabilities,
    "the noise must be N(0, sigma^2): numpy's scale argument is the standard deviation sigma, not sigma**2",
)


def _inputs(seed: int) -> np.random.Generator:
    return np.random.default_rng((seed, _INPUT_STREAM))


def _student_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng((seed, _STUDENT_STREAM))


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=_RELATIVE_TOLERANCE, abs_tol=1e-12)


# --- partition_indices ---------------------------------------------------------------------------------------


def _partition(student_partition, num_examples: int, num_teachers: int, seed: int) -> list[np.ndarray]:
    """Call the student's function; return its partitions as 1-D integer arrays after format checks."""
    where = f"partition_indices({num_examples}, {num_teachers}, seed={seed})"
    result = call(student_partition, num_examples, num_teachers, seed)
    try:
        parts = [np.asarray(part) for part in result]
    except TypeError:
        fail(f"{where} should return a list of index arrays, got {type(result).__name__}.")
    require(
        len(parts) == num_teachers,
        f"{where} returned {len(parts)} partitions; expected one per teacher ({num_teachers}).",
    )
    malformed = [part for part in parts if part.ndim != 1 or (part.size and not np.issubdtype(part.dtype, np.integer))]
    if malformed:
        fail(
            f"{where}: every partition must be a 1-D array of integer indices, got one of shape "
            f"{malformed[0].shape} and dtype {malformed[0].dtype}."
        )
    return parts


def check_partition_indices(student_partition, seed: int = 0) -> None:
    """Structural checks on fixed and random (num_examples, num_teachers): one partition per teacher, indices
    in range, disjoint, covering every example (example 0 named explicitly), sizes differing by at most one,
    and the same partition when called again with the same seed. Deterministic: no statistical budget."""
    seed_everything(seed)
    inputs = _inputs(seed)
    cases = list(_FIXED_PARTITIONS)
    for _ in range(_RANDOM_PARTITIONS):
        num_examples = int(inputs.integers(2, 2000))
        cases.append((num_examples, int(inputs.integers(1, min(num_examples, _MAX_RANDOM_TEACHERS) + 1))))
    for num_examples, num_teachers in cases:
        partition_seed = int(inputs.integers(0, 2**31))
        where = f"partition_indices({num_examples}, {num_teachers}, seed={partition_seed})"
        parts = _partition(student_partition, num_examples, num_teachers, partition_seed)
        indices = np.concatenate(parts).astype(np.int64)
        require(
            indices.size == 0 or (indices.min() >= 0 and indices.max() < num_examples),
            f"{where} returned indices outside 0..{num_examples - 1}.",
        )
        uses = np.bincount(indices, minlength=num_examples)
        repeated = np.flatnonzero(uses > 1)
        if repeated.size:
            fail(
                f"{where}: example {repeated[0]} is in more than one partition (or twice in one). The "
                "teachers' data must be disjoint: split one random permutation of all indices, rather than "
                "drawing each teacher's indices separately."
            )
        require(
            uses[0] > 0,
            f"{where}: example 0 is in no partition. Does your permutation or range start at 1? The "
            f"indices run from 0 to {num_examples - 1}.",
        )
        missing = np.flatnonzero(uses == 0)
        if missing.size:
            fail(
                f"{where}: {missing.size} examples are in no partition (e.g. example {missing[0]}). Together "
                "the partitions must cover every example; when num_examples is not a multiple of "
                "num_teachers, share out the remainder (np.array_split does) instead of dropping it."
            )
        sizes = [part.size for part in parts]
        require(
            max(sizes) - min(sizes) <= 1,
            f"{where}: partition sizes range from {min(sizes)} to {max(sizes)}; they must differ by at most one.",
        )
        again = _partition(student_partition, num_examples, num_teachers, partition_seed)
        require(
            all(np.array_equal(first, second) for first, second in zip(parts, again)),
            f"{where} returned a different partition when called again with the same seed; draw the "
            "permutation from a generator seeded with `seed` (e.g. np.random.default_rng(seed)).",
        )


# --- vote_counts ---------------------------------------------------------------------------------------------


def _teacher_predictions(
    inputs: np.random.Generator, num_teachers: int, num_queries: int, num_classes: int
) -> np.ndarray:
    """Votes of shape (num_teachers, num_queries): mostly agreeing teachers, sometimes on a few classes only."""
    used_classes = num_classes if inputs.random() < 0.7 else int(inputs.integers(1, num_classes + 1))
    truth = inputs.integers(0, used_classes, num_queries)
    agree = inputs.random((num_teachers, num_queries)) < inputs.uniform(0.3, 0.95)
    return np.where(agree, truth, inputs.integers(0, used_classes, (num_teachers, num_queries))).astype(np.int64)


def check_vote_counts(student_vote_counts, seed: int = 0) -> None:
    """Exact comparison with the reference on fixed and random vote matrices (teachers != queries, some
    classes never voted for). Names the usual mistakes: transposed output, too few columns, votes reshaped
    instead of transposed."""
    seed_everything(seed)
    inputs = _inputs(seed)
    cases = list(_FIXED_VOTES)
    while len(cases) < len(_FIXED_VOTES) + _RANDOM_VOTES:
        shape = (int(inputs.integers(1, 60)), int(inputs.integers(1, 80)), int(inputs.integers(2, 13)))
        if shape[0] != shape[1]:
            cases.append(shape)
    for num_teachers, num_queries, num_classes in cases:
        preds = _teacher_predictions(inputs, num_teachers, num_queries, num_classes)
        original = preds.copy()
        where = f"vote_counts on teacher_preds of shape ({num_teachers}, {num_queries}) with num_classes={num_classes}"
        counts = np.asarray(call(student_vote_counts, preds, num_classes))
        require(np.array_equal(preds, original), f"{where} modified teacher_preds; leave the input unchanged.")
        expected = pate.vote_counts(preds, num_classes)
        require(
            counts.shape != (num_classes, num_queries) or counts.shape == expected.shape,
            f"{where} returned shape {counts.shape}: that is (num_classes, num_queries). Return one row per "
            "query: shape (num_queries, num_classes).",
        )
        require(
            counts.shape == expected.shape,
            f"{where} returned shape {counts.shape}; expected (num_queries, num_classes) = {expected.shape}. "
            "Every class needs a column, even one that no teacher voted for (np.bincount's minlength).",
        )
        reshaped = pate.vote_counts(preds.reshape(num_queries, num_teachers).T, num_classes)
        require(
            np.array_equal(counts, expected) or not np.array_equal(counts, reshaped),
            f"{where} counted the wrong votes: it looks like teacher_preds was reshaped to (num_queries, "
            "num_teachers). Reshaping keeps the memory order and mixes votes of different queries; "
            "transpose instead (teacher_preds.T): entry [t, q] is teacher t's vote on query q.",
        )
        if not np.array_equal(counts, expected):
            query = int(np.flatnonzero(np.any(counts != expected, axis=1))[0])
            fail(
                f"{where} returned wrong counts (e.g. query {query}: {counts[query].tolist()}, expected "
                f"{expected[query].tolist()}). Row q must count, for each class, how many teachers voted for "
                "it on query q."
            )


# --- laplace_noisy_max and gaussian_noisy_max -----------------------------------------------------------------


def _labels(
    student_noisy_max, aggregator: _NoisyMax, counts: np.ndarray, value: float, rng, context: str
) -> np.ndarray:
    """Call the student's aggregator on a copy-checked count matrix; return its labels after format checks."""
    original = counts.copy()
    where = f"{aggregator.name} with {aggregator.parameter}={value:g} {context}"
    labels = np.asarray(call(student_noisy_max, counts, value, rng))
    require(
        np.array_equal(counts, original),
        f"{where} modified the counts array passed to it; add the noise to a new float array.",
    )
    require(
        labels.shape == (counts.shape[0],),
        f"{where} returned shape {labels.shape} for counts of shape {counts.shape}; return one label per "
        f"query, shape ({counts.shape[0]},).",
    )
    require(
        np.issubdtype(labels.dtype, np.number)
        and np.all(labels == np.round(labels))
        and labels.min() >= 0
        and labels.max() < counts.shape[1],
        f"{where} must return class labels: whole numbers from 0 to {counts.shape[1] - 1}.",
    )
    return labels.astype(np.int64)


def _histogram_rows(inputs: np.random.Generator, num_rows: int) -> np.ndarray:
    """Vote histograms of 250 teachers over `_NUM_CLASSES` classes with a unique plurality class."""
    rows = np.empty((0, _NUM_CLASSES), dtype=np.int64)
    while len(rows) < num_rows:
        drawn = inputs.multinomial(250, inputs.dirichlet(np.full(_NUM_CLASSES, 0.5), size=num_rows))
        unique_top = np.sum(drawn == drawn.max(axis=1, keepdims=True), axis=1) == 1
        rows = np.concatenate([rows, drawn[unique_top]])
    return rows[:num_rows]


def _tied_rows(inputs: np.random.Generator, num_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows where exactly two classes tie for the most votes; returns (counts, first tied, second tied)."""
    top = inputs.integers(3, 60, num_rows)
    counts = (inputs.random((num_rows, _NUM_CLASSES)) * top[:, None]).astype(np.int64)  # all below top
    pairs = np.sort(np.argsort(inputs.random((num_rows, _NUM_CLASSES)), axis=1)[:, :2], axis=1)
    rows = np.arange(num_rows)
    counts[rows, pairs[:, 0]] = top
    counts[rows, pairs[:, 1]] = top
    return counts, pairs[:, 0], pairs[:, 1]


@functools.cache
def _exact_probabilities(aggregator: _NoisyMax, counts: tuple, value: float) -> np.ndarray:
    return aggregator.probabilities(np.array(counts, dtype=np.float64), value)


def _check_noisy_max(student_noisy_max, aggregator: _NoisyMax, seed: int) -> None:
    """Tiny noise must give the plurality class; ties must be broken fairly; moderate noise must give the
    exact output distribution. The tie test and one binomial test per label of probability >= 0.01 in every
    histogram share the false-failure budget of 1e-6."""
    seed_everything(seed)
    inputs = _inputs(seed)
    rng = _student_rng(seed)
    tested_labels = [
        [
            (label, float(probability))
            for label, probability in enumerate(_exact_probabilities(aggregator, histogram, value))
            if probability >= _MIN_TESTED_PROBABILITY
        ]
        for histogram, value in aggregator.histograms
    ]
    alpha = alpha_per_test(1 + sum(len(labels) for labels in tested_labels))
    tiny = aggregator.precise_value
    name, parameter = aggregator.name, aggregator.parameter

    # Noise of scale 0.001 never moves a count by the one vote separating the top two: P < exp(-500).
    counts = _histogram_rows(inputs, _PRECISE_ROWS)
    labels = _labels(student_noisy_max, aggregator, counts, tiny, rng, "(tiny noise)")
    wrong = np.flatnonzero(labels != np.argmax(counts, axis=1))
    if wrong.size:
        fail(
            f"With {parameter}={tiny:g} the noise is tiny (scale 0.001), so {name} must return each row's "
            f"plurality class; it did not in {wrong.size} of {_PRECISE_ROWS} rows (e.g. counts "
            f"{counts[wrong[0]].tolist()} gave label {labels[wrong[0]]}). Check that {aggregator.noise_rule}, "
            "and that the noise is added to the counts in floating point."
        )

    counts, first, second = _tied_rows(inputs, _TIE_ROWS)
    labels = _labels(student_noisy_max, aggregator, counts, tiny, rng, "(tiny noise, tied rows)")
    require(
        np.all((labels == first) | (labels == second)),
        f"With tiny noise ({parameter}={tiny:g}) {name} returned a class that was not among the two tied "
        "for the most votes. Is the noise added into an integer count array? There it is truncated: a "
        "count of n becomes n or n - 1, so a class one vote behind can win. Keep the noisy counts in "
        "floating point.",
    )
    require_binomial(
        int(np.sum(labels == first)),
        _TIE_ROWS,
        0.5,
        alpha,
        f"When two classes tie for the most votes, {name} (tiny noise) chose the first of them",
        "continuous noise breaks a tie like a fair coin; noise added into an integer count array "
        "is truncated, and argmax then favours the first tied class, so keep the noisy counts in "
        "floating point",
    )

    for (histogram, value), tested in zip(aggregator.histograms, tested_labels):
        counts = np.tile(np.array(histogram, dtype=np.int64), (_ROWS_PER_HISTOGRAM, 1))
        labels = _labels(student_noisy_max, aggregator, counts, value, rng, f"on counts {list(histogram)}")
        for label, probability in tested:
            require_binomial(
                int(np.sum(labels == label)),
                _ROWS_PER_HISTOGRAM,
                probability,
                alpha,
                f"For counts {list(histogram)} and {parameter}={value:g}, {name} returned label {label}",
                f"the exact probability under correct noise; {aggregator.noise_rule}",
            )


def check_laplace_noisy_max(student_laplace_noisy_max, seed: int = 0) -> None:
    """Statistical check of Laplace noisy max against its exact output distribution (see `_check_noisy_max`)."""
    _check_noisy_max(student_laplace_noisy_max, _LAPLACE, seed)


def check_gaussian_noisy_max(student_gaussian_noisy_max, seed: int = 0) -> None:
    """Statistical check of GNMax against its exact output distribution (see `_check_noisy_max`)."""
    _check_noisy_max(student_gaussian_noisy_max, _GAUSSIAN, seed)


# --- the accountants ------------------------------------------------------------------------------------------


def _log_uniform(inputs: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(inputs.uniform(math.log(low), math.log(high))))


def _mismatch(actual: float, expected: float) -> str:
    direction = "too large" if actual > expected else "too small"
    return f"returned {actual:.10g}; expected {expected:.10g} ({direction})"


def check_pate_epsilon_data_independent(student_pate_epsilon, seed: int = 0) -> None:
    """The published values (100 and 163 queries, gamma 0.1, delta 1e-5), fixed cases where the pure-DP term
    2 gamma l is the smaller one, and random cases; relative tolerance 1e-9."""
    seed_everything(seed)
    inputs = _inputs(seed)
    cases = list(_PUBLISHED_PATE) + list(_FIXED_PATE)
    for _ in range(_RANDOM_ACCOUNTANT_CASES):
        cases.append(
            (
                int(inputs.integers(1, 20_000)),
                _log_uniform(inputs, 0.005, 5.0),
                _log_uniform(inputs, 1e-10, 1e-3),
                int(inputs.integers(1, 40)),
            )
        )
    for args in cases:
        shown = f"pate_epsilon_data_independent{args}"
        actual = as_float(call(student_pate_epsilon, *args), shown)
        expected = pate_analysis.pate_epsilon_data_independent(*args)
        require(
            _close(actual, expected),
            f"{shown} {_mismatch(actual, expected)}. Laplace noisy max with noise 1/gamma is "
            "(2 gamma)-DP per query, so its log moment is alpha(l) = min(2 gamma^2 l (l+1), 2 gamma l); "
            "epsilon is the minimum over l = 1..moments of (num_queries * alpha(l) + ln(1/delta)) / l.",
        )


def _call_with_orders(student_gnmax_epsilon, num_queries: int, sigma: float, delta: float, orders: np.ndarray):
    """Call with `orders` as a NumPy array, and again as a list if that raised: the spec fixes no type."""
    try:
        return call(student_gnmax_epsilon, num_queries, sigma, delta, orders.copy())
    except GradingFailure as array_failure:
        try:
            return call(student_gnmax_epsilon, num_queries, sigma, delta, orders.tolist())
        except GradingFailure:
            raise array_failure from None


def check_gnmax_epsilon(student_gnmax_epsilon, seed: int = 0) -> None:
    """Random cases with explicit `orders` (a NumPy array, or a list if the array is refused; relative
    tolerance 1e-9); then, with orders=None, typical settings must give a valid epsilon within 25% of the best
    over all orders > 1 (closed form)."""
    seed_everything(seed)
    inputs = _inputs(seed)
    cases = [(1000, 40.0, 1e-5, np.arange(2.0, 65.0)), (1, 1.0, 1e-5, np.array([1.5]))]
    for _ in range(_RANDOM_ACCOUNTANT_CASES):
        orders = np.sort(1 + np.exp(inputs.uniform(math.log(0.01), math.log(500), int(inputs.integers(1, 60)))))
        cases.append(
            (
                int(inputs.integers(1, 20_000)),
                _log_uniform(inputs, 0.5, 200.0),
                _log_uniform(inputs, 1e-10, 1e-3),
                orders,
            )
        )
    for num_queries, sigma, delta, orders in cases:
        shown = f"gnmax_epsilon({num_queries}, {sigma:.6g}, {delta:.6g}, orders=<{orders.size} orders>)"
        actual = as_float(_call_with_orders(student_gnmax_epsilon, num_queries, sigma, delta, orders), shown)
        expected = pate_analysis.gnmax_epsilon(num_queries, sigma, delta, orders)
        require(
            _close(actual, expected),
            f"{shown} {_mismatch(actual, expected)}. GNMax is (order, order / sigma^2)-RDP per query; "
            "epsilon is the minimum over the given orders of num_queries * order / sigma^2 + "
            "ln(1/delta) / (order - 1).",
        )
    for num_queries, sigma, delta in _TYPICAL_GNMAX:
        shown = f"gnmax_epsilon({num_queries}, {sigma:g}, {delta:g}) with the default orders"
        actual = as_float(call(student_gnmax_epsilon, num_queries, sigma, delta), shown)
        rdp_per_query, log_term = 1 / sigma**2, math.log(1 / delta)
        best = num_queries * rdp_per_query + 2 * math.sqrt(num_queries * rdp_per_query * log_term)
        require(
            math.isfinite(actual) and actual >= best * (1 - _RELATIVE_TOLERANCE),
            f"{shown} returned {actual:.6g}, below {best:.6g}, the smallest value any order > 1 can give: "
            "check the formula.",
        )
        require(
            actual <= _DEFAULT_ORDERS_SLACK * best,
            f"{shown} returned {actual:.6g}, but a suitable order gives {best:.6g}. Choose a default "
            "grid of orders that is fine enough and covers roughly 1.1 to a few hundred.",
        )
