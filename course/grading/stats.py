"""Statistical tests for hidden tests of randomised functions.

Calibration. A check (one `check_<function>` call) may run several statistical tests. Each test rejects only
when its p-value is below `alpha`, and a valid p-value satisfies `P(p <= alpha) <= alpha` when the student's
function is correct. A check that runs k tests gives each `alpha_per_test(k) = FALSE_FAILURE_PER_CHECK / k`;
by the union bound (Bonferroni) a correct answer then fails the whole check with probability below
`FALSE_FAILURE_PER_CHECK = 1e-6`, whatever the dependence between the tests. The p-values used are:

- binomial: `scipy.stats.binomtest`, exact two-sided p-value of a count of successes (valid for any n);
- Kolmogorov-Smirnov: `scipy.stats.kstest(..., method="exact")`, exact one-sample p-value for continuous
  noise (sample sizes are kept at or below 10,000 so the exact method is used and fast);
- Gaussian noise of a known standard deviation sigma: the spread about the sample mean, sum((x - mean)^2) /
  sigma^2, is chi-square with n - 1 degrees of freedom (two-sided test on `scipy.stats.chi2`), and the mean
  times sqrt(n) / sigma is standard normal (two-sided z-test on `scipy.stats.norm`); both are exact for
  independent N(0, sigma^2) draws, and the spread test does not depend on the mean;
- independence: for two independent draws the probability that they agree (same sign for noise symmetric
  about 0, same value for a 0/1 row) is known exactly, so the number of agreeing pairs is binomial.

Deterministic sanity checks (all noise identical, noise truncated to whole numbers, two calls returning the same
output) fail a correct answer with probability 0 for continuous noise, or below 1e-100 for the 0/1 outputs the
callers use (they say so where they use them), so they do not need a share of the budget.

Every failure raises `course.grading.GradingFailure` with a message that says what was observed, what was
expected and why, in the student's terms.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from course.grading import fail, require

FALSE_FAILURE_PER_CHECK = 1e-6
"""Upper bound on the probability that a correct answer fails one check."""

_KS_EXACT_MAX_SAMPLES = 10_000


def alpha_per_test(num_tests: int) -> float:
    """Significance level of each of `num_tests` tests in one check (Bonferroni split of the check's budget)."""
    if num_tests < 1:
        raise ValueError(f"num_tests must be >= 1, got {num_tests}")
    return FALSE_FAILURE_PER_CHECK / num_tests


def _chance(p_value: float) -> str:
    """A phrase telling the student how unlikely the observation is for a correct answer."""
    if p_value < 1e-300:
        return "a correct answer practically never is this far off"
    return f"a correct answer is this far off with probability about {p_value:.1g}"


def require_binomial(successes: int, trials: int, rate: float, alpha: float, what: str, why: str) -> None:
    """Fail unless `successes` out of `trials` is consistent with success probability `rate`.

    Exact two-sided binomial test (`scipy.stats.binomtest`); rejects when the p-value is below `alpha`.
    `what` names the observed fraction ("randomized_response reported True for the rows of an all-True
    database"), `why` explains `rate`.
    """
    p_value = stats.binomtest(int(successes), int(trials), rate).pvalue
    require(
        p_value >= alpha,
        f"{what}: {successes / trials:.1%} of {trials}; expected about {rate:.1%} ({why}); {_chance(p_value)}.",
    )


def require_independent_pairs(first, second, agree_probability: float, alpha: float, what: str, advice: str) -> None:
    """Fail unless the pairs `(first[i], second[i])` agree about as often as independent draws would.

    `first` and `second` are equally long 1-D arrays of outcomes (signs of noise, or reported 0/1 rows); under
    independence each pair agrees with probability `agree_probability`, so the number of agreeing pairs is
    binomial. Shared randomness (one draw reused by several elements) makes pairs agree far too often.
    """
    first = np.asarray(first)
    second = np.asarray(second)
    agreements = int(np.count_nonzero(first == second))
    pairs = first.size
    p_value = stats.binomtest(agreements, pairs, agree_probability).pvalue
    require(
        p_value >= alpha,
        f"{what}: {agreements / pairs:.1%} of {pairs} pairs of elements agree, but independent draws "
        f"agree in about {agree_probability:.1%}; {advice} ({_chance(p_value)}).",
    )


def require_noise_independent_per_element(noise, alpha: float, what: str) -> None:
    """Fail if the elements of one noise tensor were not drawn independently of each other.

    `noise` holds the noise of one call, flattened, with an even number (>= 4) of elements, drawn from a
    continuous distribution symmetric about 0. Uses 2 tests at level `alpha` each: the sign of element 2i
    against element 2i+1 (catches noise shared along the last dimension) and element i against element
    i + n/2 (catches noise shared along the first dimension). A tensor whose noise is identical up to float
    rounding (spread below 1e-6 of its largest magnitude; `released - value` is not exactly the shared draw)
    fails before any test: continuous independent noise practically never is that concentrated.
    """
    noise = np.asarray(noise, dtype=np.float64).ravel()
    advice = (
        "draw a separate noise value for every element (noise of the same shape as the value), not one "
        "draw shared by several elements"
    )
    require(np.abs(noise).max() > 0, f"{what}: no noise was added to any element.")
    require(
        np.ptp(noise) > 1e-6 * np.abs(noise).max(), f"{what}: every element received exactly the same noise; {advice}."
    )
    signs = np.sign(noise)
    require_independent_pairs(signs[0::2], signs[1::2], 0.5, alpha, f"{what} (neighbouring elements)", advice)
    half = noise.size // 2
    require_independent_pairs(signs[:half], signs[half : 2 * half], 0.5, alpha, f"{what} (distant elements)", advice)


def require_gaussian_std(noise, std: float, alpha: float, message) -> None:
    """Fail unless independent N(0, std^2) draws could have the spread of `noise` about its mean.

    Two-sided chi-square test: sum((x - mean)^2) / std^2 has n - 1 degrees of freedom for Gaussian noise.
    `message(measured_std)` is the failure message; it is given the standard deviation the test measured.
    """
    noise = np.asarray(noise, dtype=np.float64).ravel()
    degrees = noise.size - 1
    chi_square = float(((noise - noise.mean()) ** 2).sum() / std**2)
    p_value = min(1.0, 2 * min(stats.chi2.cdf(chi_square, degrees), stats.chi2.sf(chi_square, degrees)))
    if p_value < alpha:
        fail(message(float(np.sqrt(chi_square / degrees)) * std))


def require_zero_mean(noise, std: float, alpha: float, message: str) -> None:
    """Fail unless the mean of `noise`, independent draws of standard deviation `std`, is consistent with 0.

    Two-sided z-test: the sum divided by std * sqrt(n) is standard normal for Gaussian noise.
    """
    noise = np.asarray(noise, dtype=np.float64).ravel()
    z = float(noise.sum() / (std * np.sqrt(noise.size)))
    require(2 * stats.norm.sf(abs(z)) >= alpha, message)


_FAMILIES = {
    "laplace": (stats.laplace, np.sqrt(2.0), "Laplace"),
    "gaussian": (stats.norm, 1.0, "Gaussian"),
}


def require_noise_distribution(
    noise, family: str, scale: float, alpha: float, what: str, context: str, why: str, advice: str = ""
) -> None:
    """Fail unless `noise` looks like independent draws of `family` noise centred at 0 with `scale`.

    `family` is "laplace" (scale b, density exp(-|x|/b)/(2b), standard deviation b*sqrt(2)) or "gaussian"
    (scale sigma). One Kolmogorov-Smirnov test at level `alpha` on at most 10,000 samples. Before it, noise
    that is non-finite, all zero, identical up to float rounding, or entirely whole numbers (truncated into
    an integer tensor or array) fails with its own message; continuous noise is none of these. `context`
    states the parameters ("for n=1000, epsilon=1"), `why` the expected law ("Laplace with scale
    1/(n*epsilon)"). `advice`, if given, ends the message when the values have the right spread but the wrong
    shape.
    """
    distribution, std_per_scale, name = _FAMILIES[family]
    noise = np.asarray(noise, dtype=np.float64).ravel()
    if noise.size > _KS_EXACT_MAX_SAMPLES:
        raise ValueError(f"at most {_KS_EXACT_MAX_SAMPLES} samples per test, got {noise.size}")
    require(np.isfinite(noise).all(), f"{what} contains infinite or NaN values {context}.")
    require(np.abs(noise).max() > 0, f"{what} is zero {context}: no noise was added to the exact value.")
    require(
        np.ptp(noise) > 1e-6 * np.abs(noise).max(),
        f"{what} is the same in every sample {context}: each call or element must draw fresh noise (do not "
        "reseed inside the function or reuse one draw).",
    )
    require(
        not np.array_equal(noise, np.round(noise)),
        f"{what} is always a whole number {context}: the noise was truncated, probably by adding it into "
        "an integer tensor or array. Keep the result in floating point.",
    )
    p_value = stats.kstest(noise, distribution.cdf, args=(0.0, scale), method="exact").pvalue
    if p_value >= alpha:
        return
    observed_std = float(noise.std())
    expected_std = float(scale * std_per_scale)
    observed_mean = float(noise.mean())
    if not 0.8 <= observed_std / expected_std <= 1.25:
        fail(f"{what} has standard deviation {observed_std:.3g} {context}; expected about {expected_std:.2g} ({why}).")
    fail(
        f"{what} does not look like {name} noise {context}: its mean is {observed_mean:.3g} and standard "
        f"deviation {observed_std:.3g}, but the distribution of values does not match {why} (mean 0, "
        f"standard deviation {expected_std:.2g}); {_chance(p_value)}." + (f" {advice}" if advice else "")
    )
