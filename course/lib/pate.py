"""PATE: Private Aggregation of Teacher Ensembles (notebook 05).

Teachers are trained on disjoint partitions of the private data; their votes on a public, unlabelled example
are counted and released only through a noisy argmax (Papernot et al., "Semi-supervised knowledge transfer
for deep learning from private training data", ICLR 2017; Papernot et al., "Scalable private learning with
PATE", ICLR 2018).

Neighbour notion: *replacement*. Changing one private training example changes the data of exactly one
teacher (the partitions are disjoint), hence at most that teacher's vote: one count goes down by one and
another goes up by one. The privacy accounting of these aggregators lives in `course.lib.pate_analysis`
(graded, data-independent) and `course.shown.pate_accounting` (data-dependent bounds, and PATE 2018's
Confident-GNMax aggregator).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import integrate

from course.lib.validators import as_count_matrix, check_epsilon, check_positive_int, numpy_generator


def partition_indices(num_examples: int, num_teachers: int, seed: int = 0) -> list[np.ndarray]:
    """Split `range(num_examples)` at random into `num_teachers` disjoint index sets.

    The sets together cover every example (example 0 included) and their sizes differ by at most one.
    Disjointness is what makes PATE private: one person's record reaches one teacher only.

    Returns a list of `num_teachers` 1-D int64 arrays; the same `seed` always gives the same partition.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    num_teachers = check_positive_int(num_teachers, "num_teachers")
    if num_teachers > num_examples:
        raise ValueError(
            f"num_teachers ({num_teachers}) must not exceed num_examples ({num_examples}): "
            "every teacher needs at least one training example"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    shuffled = np.random.default_rng(int(seed)).permutation(num_examples)
    return np.array_split(shuffled, num_teachers)


def vote_counts(teacher_preds, num_classes: int) -> np.ndarray:
    """Count the teachers' votes for every query.

    `teacher_preds` has shape `(num_teachers, num_queries)`: entry `[t, q]` is teacher t's predicted class for
    query q. Returns int64 counts of shape `(num_queries, num_classes)` whose rows sum to `num_teachers`.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    preds = np.asarray(teacher_preds)
    if preds.ndim != 2:
        raise ValueError(f"teacher_preds must have shape (num_teachers, num_queries), got shape {preds.shape}")
    if preds.size and not np.issubdtype(preds.dtype, np.integer):
        if not np.issubdtype(preds.dtype, np.floating) or not np.all(preds == np.round(preds)):
            raise ValueError("teacher_preds must hold integer class labels")
    if preds.size and (preds.min() < 0 or preds.max() >= num_classes):
        raise ValueError(f"teacher_preds must hold class labels in [0, {num_classes - 1}]")
    num_queries = preds.shape[1]
    # One flat bincount: query q's votes land in bins q * num_classes + label.
    flat_bins = (np.arange(num_queries) * num_classes + preds.astype(np.int64)).ravel()
    counts = np.bincount(flat_bins, minlength=num_queries * num_classes)
    return counts.reshape(num_queries, num_classes)


def laplace_noisy_max(counts, gamma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The PATE (2017) aggregator: per row, the argmax of `counts + Laplace(0, 1/gamma)` noise.

    `counts` has shape `(num_queries, num_classes)`; returns int64 labels of shape `(num_queries,)`.
    The noise is added to a float copy: adding it into an integer count array would truncate it, which
    breaks ties deterministically and voids the privacy guarantee. Under replacement neighbours this is
    (2 gamma, 0)-DP per query. `rng` is a `numpy.random.Generator` (the global one when None).
    """
    counts = as_count_matrix(counts)
    gamma = check_epsilon(gamma, "gamma")
    noise = numpy_generator(rng).laplace(0.0, 1.0 / gamma, size=counts.shape)
    return np.argmax(counts + noise, axis=1)


def gaussian_noisy_max(counts, sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The GNMax aggregator of PATE (2018): per row, the argmax of `counts + N(0, sigma^2)` noise.

    `counts` has shape `(num_queries, num_classes)`; returns int64 labels of shape `(num_queries,)`.
    Under replacement neighbours it is (order, order / sigma^2)-RDP per query for every order > 1.
    `rng` is a `numpy.random.Generator` (the global one when None).
    """
    counts = as_count_matrix(counts)
    sigma = check_epsilon(sigma, "sigma")
    noise = numpy_generator(rng).normal(0.0, sigma, size=counts.shape)
    return np.argmax(counts + noise, axis=1)


def laplace_noisy_max_probabilities(counts, gamma: float) -> np.ndarray:
    """Exact output distribution of `laplace_noisy_max` on one vote histogram.

    `counts` has shape `(num_classes,)`; returns P(label = j) for every class j, shape `(num_classes,)`,
    computed as the integral over x of pdf(x - n_j) * prod over k != j of cdf(x - n_k).
    """
    counts = as_count_matrix(np.atleast_2d(counts))[0]
    gamma = check_epsilon(gamma, "gamma")

    def pdf(z):
        return 0.5 * gamma * math.exp(-gamma * abs(z))

    def cdf(z):
        return 0.5 * math.exp(gamma * z) if z < 0 else 1 - 0.5 * math.exp(-gamma * z)

    # Beyond 50 / gamma from every count the density is below e^-50: nothing measurable is cut off.
    return _noisy_max_probabilities(counts, pdf, cdf, tail=50 / gamma)


def gaussian_noisy_max_probabilities(counts, sigma: float) -> np.ndarray:
    """Exact output distribution of `gaussian_noisy_max` on one vote histogram.

    `counts` has shape `(num_classes,)`; returns P(label = j) for every class j, shape `(num_classes,)`.
    """
    counts = as_count_matrix(np.atleast_2d(counts))[0]
    sigma = check_epsilon(sigma, "sigma")

    def pdf(z):
        return math.exp(-0.5 * (z / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    def cdf(z):
        return 0.5 * math.erfc(-z / (sigma * math.sqrt(2)))

    return _noisy_max_probabilities(counts, pdf, cdf, tail=12 * sigma)


def _noisy_max_probabilities(counts: np.ndarray, pdf, cdf, tail: float) -> np.ndarray:
    """P(argmax of counts + i.i.d. noise = j) for each j, by numerical integration; shape `counts.shape`."""
    low, high = counts.min() - tail, counts.max() + tail
    breakpoints = np.unique(counts)  # the noise density has its kink or peak at every count
    probabilities = np.empty(len(counts))
    for j, count in enumerate(counts):
        others = np.delete(counts, j)

        def integrand(x, count=count, others=others):
            return pdf(x - count) * math.prod(cdf(x - other) for other in others)

        probabilities[j] = integrate.quad(
            integrand, low, high, points=breakpoints, epsabs=0.0, epsrel=1e-10, limit=500
        )[0]
    return probabilities
