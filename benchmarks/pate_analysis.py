"""Cost of the PATE privacy analyses for 10,000 queries answered by 250 teachers, 10 classes.

Run: `python benchmarks/pate_analysis.py [--repeats N] [--baseline-repeats M] [--seed S]`.

Votes are realistic for MNIST teachers: for each query the teachers agree with its true label at a rate
drawn from Beta(8, 1.5) (mean 0.84) and otherwise vote uniformly at random. Timed, with 100 moments (Laplace,
gamma 0.05 as in PATE 2017's MNIST runs) or 100 Renyi orders (GNMax, sigma 40 as in PATE 2018):

- `pate_epsilon_data_independent` and `gnmax_epsilon` (the data-independent bounds);
- `pate_epsilon_data_dependent` and `gnmax_epsilon_data_dependent` (vectorised, in log space);
- baselines: the same data-dependent analyses written as per-query, per-order Python loops over `math`
  functions (the shape of the papers' original code, made overflow-safe), timed in the same run;
- Confident-GNMax (PATE 2018's MNIST setting T 200, sigma1 150, sigma2 40; which queries are answered is drawn
  once): its data-independent and data-dependent epsilons over the 100 orders, the smooth-sensitivity release
  at order 15 (`sanitised_confident_gnmax_epsilon`: local sensitivities of every query at every distance 0..249,
  smooth sensitivity, noise), and the three together ("whole Confident-GNMax analysis", the 1 s target). Its
  baseline is the local-sensitivity walk of PATE 2018's Algorithms 3-5 written one query and one step at a time
  (the reference code's shape), timed on 300 answered queries, checked against the vectorised values, and
  scaled to all answered queries.

Before timing, each loop baseline is checked against the vectorised result. The table reports the median of
the repeats, the speed-up of each vectorised analysis over its loop, and whether it meets the 1 s target.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from course.lib.pate import vote_counts
from course.lib.pate_analysis import gnmax_epsilon, pate_epsilon_data_independent
from course.shown.pate_accounting import (
    confident_gnmax_epsilon,
    confident_gnmax_epsilon_data_dependent,
    gnmax_epsilon_data_dependent,
    pate_epsilon_data_dependent,
)
from course.shown.pate_smooth_sensitivity import (
    _gnmax_ls_of_log_q,
    _log_bl,
    gnmax_local_sensitivity,
    gnmax_log_q0,
    sanitised_confident_gnmax_epsilon,
)

NUM_QUERIES, NUM_TEACHERS, NUM_CLASSES = 10_000, 250, 10
GAMMA, SIGMA, DELTA = 0.05, 40.0, 1e-5
MOMENTS = 100
ORDERS = 1 + np.geomspace(0.01, 1000, 100)
TARGET_SECONDS = 1.0
THRESHOLD, SIGMA1, SIGMA2, SS_ORDER = 200.0, 150.0, 40.0, 15.0
BASELINE_QUERIES = 300


def realistic_counts(rng: np.random.Generator) -> np.ndarray:
    truth = rng.integers(0, NUM_CLASSES, NUM_QUERIES)
    agree = rng.random((NUM_TEACHERS, NUM_QUERIES)) < rng.beta(8, 1.5, NUM_QUERIES)
    preds = np.where(agree, truth, rng.integers(0, NUM_CLASSES, (NUM_TEACHERS, NUM_QUERIES)))
    return vote_counts(preds, NUM_CLASSES)


def _logaddexp(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    return high if low == -math.inf else high + math.log1p(math.exp(low - high))


def _log1mexp(x: float) -> float:
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def laplace_loop(counts: np.ndarray, gamma: float, delta: float, moments: int) -> float:
    """[PATE17] data-dependent moments accountant, one query and one moment at a time."""
    totals = [0.0] * moments
    threshold = 1 / (1 + math.exp(2 * gamma))
    for row in counts.tolist():
        winner = row.index(max(row))
        q = sum(
            (2 + gamma * (row[winner] - n)) / (4 * math.exp(gamma * (row[winner] - n)))
            for j, n in enumerate(row)
            if j != winner
        )
        for l in range(1, moments + 1):
            alpha = min(2 * gamma * gamma * l * (l + 1), 2 * gamma * l)
            if q == 0:
                alpha = 0.0  # the output is the plurality class with certainty
            elif q < threshold:
                stay = math.log1p(-q) + l * (math.log1p(-q) - math.log1p(-math.exp(2 * gamma) * q))
                alpha = min(alpha, _logaddexp(stay, math.log(q) + 2 * gamma * l))
            totals[l - 1] += alpha
    return min((total + math.log(1 / delta)) / l for l, total in enumerate(totals, start=1))


def gnmax_loop(counts: np.ndarray, sigma: float, delta: float, orders: np.ndarray) -> float:
    """[PATE18] Theorem 6 with Propositions 7 and 10, one query and one order at a time."""
    orders = orders.tolist()
    totals = [0.0] * len(orders)
    for row in counts.tolist():
        winner = row.index(max(row))
        q = sum(0.5 * math.erfc((row[winner] - n) / (2 * sigma)) for j, n in enumerate(row) if j != winner)
        applies = 0 < q < 1
        if applies:
            log_q = math.log(q)
            mu2 = sigma * math.sqrt(-log_q)
            mu1 = mu2 + 1
            eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
            applies = (
                mu2 > 1
                and log_q + eps2 < 0
                and log_q <= (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1)))
            )
        for index, order in enumerate(orders):
            rdp = order / sigma**2
            if q == 0:
                rdp = 0.0  # the output is the plurality class with certainty
            elif applies and order <= mu1:
                log_a = math.log1p(-q) - _log1mexp((mu2 - 1) / mu2 * (log_q + eps2))
                log_b = eps1 - log_q / (mu1 - 1)
                log_sum = _logaddexp(math.log1p(-q) + (order - 1) * log_a, log_q + (order - 1) * log_b)
                rdp = min(rdp, log_sum / (order - 1))
            totals[index] += rdp
    return min(total + math.log(1 / delta) / (order - 1) for total, order in zip(totals, orders))


def local_sensitivity_loop(counts: np.ndarray, sigma: float, order: float) -> np.ndarray:
    """PATE 2018 Algorithms 3-5 one query and one step at a time: (num_queries, num_teachers)."""
    num_teachers, num_classes = int(counts[0].sum()), counts.shape[1]
    log_q0 = gnmax_log_q0(sigma, order)
    log_q1 = float(_log_bl(np.array(log_q0), sigma, num_classes))

    def log_q_of(votes):
        terms = [math.log(0.5 * math.erfc((votes[0] - v) / (2 * sigma))) for v in votes[1:]]
        top = max(terms)
        return min(top + math.log(sum(math.exp(t - top) for t in terms)), math.log(1 - 1 / num_classes))

    def ls(log_q):
        return float(_gnmax_ls_of_log_q(np.array([log_q]), sigma, order, num_classes, log_q0, log_q1)[0])

    plateau = ls(log_q1)
    out = np.full((len(counts), num_teachers), plateau)
    for row, histogram in enumerate(counts.tolist()):
        votes = sorted(histogram, reverse=True)
        log_q = log_q_of(votes)
        if log_q1 <= log_q <= log_q0:
            continue
        go_left, distance = log_q > log_q0, 0
        out[row, 0] = ls(log_q)
        while (go_left and log_q > log_q0 and votes[1] > 0) or (not go_left and log_q < log_q1):
            distance += 1
            if go_left:
                last = max(i for i in range(1, num_classes) if votes[i] == votes[1])
                votes[0] += 1
                votes[last] -= 1
            else:
                votes[0] -= 1
                votes[1] += 1
            log_q = log_q_of(votes)
            out[row, distance] = ls(log_q)
    return np.maximum.accumulate(out, axis=1)


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    counts = realistic_counts(rng)
    answered = counts.max(axis=1) + rng.normal(0.0, SIGMA1, NUM_QUERIES) >= THRESHOLD
    num_answered = int(answered.sum())

    def release():
        return sanitised_confident_gnmax_epsilon(
            counts, answered, THRESHOLD, SIGMA1, SIGMA2, DELTA, SS_ORDER, 0.4 / SS_ORDER, 10.0, np.random.default_rng(0)
        ).epsilon

    def whole():
        return (
            confident_gnmax_epsilon(NUM_QUERIES, NUM_QUERIES, SIGMA1, SIGMA2, DELTA, ORDERS),
            confident_gnmax_epsilon_data_dependent(counts, answered, THRESHOLD, SIGMA1, SIGMA2, DELTA, ORDERS),
            release(),
        )[2]

    analyses = {
        "pate_epsilon_data_independent": lambda: pate_epsilon_data_independent(NUM_QUERIES, GAMMA, DELTA, MOMENTS),
        "gnmax_epsilon": lambda: gnmax_epsilon(NUM_QUERIES, SIGMA, DELTA, ORDERS),
        "pate_epsilon_data_dependent": lambda: pate_epsilon_data_dependent(counts, GAMMA, DELTA, MOMENTS),
        "gnmax_epsilon_data_dependent": lambda: gnmax_epsilon_data_dependent(counts, SIGMA, DELTA, ORDERS),
        "confident_gnmax_epsilon": lambda: confident_gnmax_epsilon(
            NUM_QUERIES, NUM_QUERIES, SIGMA1, SIGMA2, DELTA, ORDERS
        ),
        "confident_gnmax_eps_data_dep.": lambda: confident_gnmax_epsilon_data_dependent(
            counts, answered, THRESHOLD, SIGMA1, SIGMA2, DELTA, ORDERS
        ),
        "sanitised (smooth sensitivity)": release,
        "whole Confident-GNMax analysis": whole,
    }
    baselines = {
        "pate_epsilon_data_dependent": lambda: laplace_loop(counts, GAMMA, DELTA, MOMENTS),
        "gnmax_epsilon_data_dependent": lambda: gnmax_loop(counts, SIGMA, DELTA, ORDERS),
    }
    sample = counts[answered][:BASELINE_QUERIES]
    looped = local_sensitivity_loop(sample, SIGMA2, SS_ORDER)
    if not np.allclose(looped, gnmax_local_sensitivity(sample, SIGMA2, SS_ORDER), rtol=1e-9, atol=1e-15):
        raise SystemExit("local sensitivity: the loop baseline disagrees with the vectorised walk")
    scale = num_answered / len(sample)
    baselines["sanitised (smooth sensitivity)"] = lambda: local_sensitivity_loop(sample, SIGMA2, SS_ORDER)
    epsilons = {name: analysis() for name, analysis in analyses.items()}
    for name, baseline in list(baselines.items())[:2]:
        loop_epsilon = baseline()
        if not math.isclose(loop_epsilon, epsilons[name], rel_tol=1e-9):
            raise SystemExit(f"{name}: loop baseline gives {loop_epsilon!r}, vectorised {epsilons[name]!r}")

    print(
        f"{NUM_QUERIES} queries x {NUM_TEACHERS} teachers, {NUM_CLASSES} classes; gamma={GAMMA}, sigma={SIGMA}, "
        f"delta={DELTA}; {MOMENTS} moments / {ORDERS.size} orders; median of {args.repeats} "
        f"(loops: {args.baseline_repeats}) repeats"
    )
    print(
        f"Confident-GNMax: T={THRESHOLD:g}, sigma1={SIGMA1:g}, sigma2={SIGMA2:g}, {num_answered} answered; smooth "
        f"sensitivity at order {SS_ORDER:g}; its loop baseline ran on {len(sample)} answered queries, scaled by "
        f"{scale:.1f}"
    )
    print(f"{'analysis':32} {'epsilon':>10} {'median s':>10} {'loop s':>9} {'speed-up':>9}  < {TARGET_SECONDS:g} s")
    for name, analysis in analyses.items():
        seconds = median_seconds(analysis, args.repeats)
        if name in baselines:
            loop_seconds = median_seconds(baselines[name], args.baseline_repeats)
            if name == "sanitised (smooth sensitivity)":
                loop_seconds *= scale
            loop_text, ratio_text = f"{loop_seconds:9.3f}", f"{loop_seconds / seconds:8.0f}x"
        else:
            loop_text, ratio_text = f"{'-':>9}", f"{'-':>9}"
        verdict = "yes" if seconds < TARGET_SECONDS else "NO"
        print(f"{name:32} {epsilons[name]:10.4f} {seconds:10.5f} {loop_text} {ratio_text}  {verdict}")


if __name__ == "__main__":
    main()
