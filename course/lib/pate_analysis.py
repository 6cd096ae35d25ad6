"""Privacy accounting for the PATE aggregators of `course.lib.pate` (notebook 05).

Neighbour notion: *replacement*. One private example sits in one teacher's partition, so changing it changes
at most one vote: one count of a query's histogram drops by one and another rises by one. Hence
- Laplace noisy max with noise Laplace(0, 1/gamma) is (2 gamma, 0)-DP per query, and
- GNMax with noise N(0, sigma^2) (L2 sensitivity sqrt(2)) is (order, order / sigma^2)-RDP per query.

The bounds here are *data-independent*: they hold for any votes and may be published as they are (these are
graded). The *data-dependent* bounds notebook 05 shows, much smaller when the teachers agree but not private
themselves, are in `course.shown.pate_accounting`, built on the public helpers at the end of this module.

Papers:
- [PATE17] Papernot, Abadi, Erlingsson, Goodfellow, Talwar, "Semi-supervised knowledge transfer for deep
  learning from private training data", ICLR 2017 (moments accountant: Theorems 1-3 and the q bound).
- [PATE18] Papernot, Song, Mironov, Raghunathan, Talwar, Erlingsson, "Scalable private learning with PATE",
  ICLR 2018 (Theorem 6, Proposition 7, and Proposition 10's choice of the higher orders).
- [Mironov17] Mironov, "Renyi differential privacy", CSF 2017 (composition and conversion to (eps, delta)).

All bounds are evaluated in log space, so any number of moments/orders and any vote margin give a finite
answer.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from course.lib.validators import check_delta, check_epsilon, check_positive_int

#: Default Renyi orders for the GNMax accountants: order - 1 log-spaced from 0.001 to 10,000 (250 orders).
#: Neighbouring orders differ by a factor of about 1.07, which costs well under 0.1% of epsilon.
DEFAULT_RDP_ORDERS = 1.0 + np.geomspace(1e-3, 1e4, 250)


def pate_epsilon_data_independent(num_queries: int, gamma: float, delta: float, moments: int = 8) -> float:
    """Data-independent (epsilon, delta) of `num_queries` answers of Laplace noisy max ([PATE17]).

    Per query the log moment at order l is bounded by alpha(l) = min(2 gamma^2 l (l+1), 2 gamma l)
    ([PATE17] Theorem 3 for a (2 gamma, 0)-DP mechanism, and the pure-DP bound); moments add up over
    queries (Theorem 1) and the tail bound gives
    epsilon = min over l = 1..moments of (num_queries * alpha(l) + ln(1/delta)) / l.
    Replacement neighbours. Example: 100 queries, gamma 0.1, delta 1e-5 give 11.756462732485115.
    """
    num_queries = check_num_queries(num_queries)
    gamma = check_epsilon(gamma, "gamma")
    delta = check_delta(delta)
    orders = moment_orders(moments)
    alpha = laplace_log_moment_data_independent(gamma, orders)
    return float(np.min((num_queries * alpha + math.log(1 / delta)) / orders))


def gnmax_epsilon(num_queries: int, sigma: float, delta: float, orders=None) -> float:
    """Data-independent (epsilon, delta) of `num_queries` answers of GNMax with noise N(0, sigma^2).

    Each answer is (order, order / sigma^2)-RDP ([PATE18] Section 3); RDP adds up over queries and converts
    to (epsilon, delta)-DP as rdp + ln(1/delta) / (order - 1) ([Mironov17] Propositions 1 and 3):
    epsilon = min over orders of num_queries * order / sigma^2 + ln(1/delta) / (order - 1).
    `orders` is a 1-D sequence of Renyi orders > 1 (default `DEFAULT_RDP_ORDERS`). Replacement neighbours.
    """
    num_queries = check_num_queries(num_queries)
    sigma = check_epsilon(sigma, "sigma")
    delta = check_delta(delta)
    orders = check_orders(orders)
    rdp = num_queries * gnmax_rdp_data_independent(sigma, orders)
    return rdp_to_epsilon(rdp, orders, delta)


def laplace_log_moment_data_independent(gamma: float, orders: np.ndarray) -> np.ndarray:
    """alpha(l) = min(2 gamma^2 l (l+1), 2 gamma l) for each moment order l; shape `orders.shape`."""
    return np.minimum(2 * gamma * gamma * orders * (orders + 1), 2 * gamma * orders)


def gnmax_rdp_data_independent(sigma: float, orders: np.ndarray) -> np.ndarray:
    """RDP of one GNMax answer at each order: order / sigma^2; shape `orders.shape`."""
    return orders / (sigma * sigma)


def rdp_to_epsilon(rdp: np.ndarray, orders: np.ndarray, delta: float) -> float:
    """epsilon = min over orders of rdp + ln(1/delta) / (order - 1) ([Mironov17] Proposition 3)."""
    return float(np.min(rdp + math.log(1 / delta) / (orders - 1)))


def check_num_queries(num_queries) -> int:
    """Return `num_queries` as an int after checking it is an integer >= 0."""
    if isinstance(num_queries, bool) or not isinstance(num_queries, numbers.Integral) or num_queries < 0:
        raise ValueError(f"num_queries must be a non-negative integer, got {num_queries!r}")
    return int(num_queries)


def moment_orders(moments) -> np.ndarray:
    """The moment orders l = 1..moments as floats, after checking moments >= 1."""
    return np.arange(1, check_positive_int(moments, "moments") + 1, dtype=np.float64)


def check_orders(orders) -> np.ndarray:
    """Return Renyi orders as a non-empty 1-D float64 array of finite values > 1 (the default when None)."""
    if orders is None:
        return DEFAULT_RDP_ORDERS
    orders = np.asarray(orders, dtype=np.float64)
    if orders.ndim != 1 or orders.size == 0:
        raise ValueError(f"orders must be a non-empty 1-D sequence, got shape {orders.shape}")
    if not np.all(np.isfinite(orders)) or np.any(orders <= 1):
        raise ValueError("every order must be a finite number > 1")
    return orders
