"""Cross-check the reference mechanisms against IBM's diffprivlib at matching parameters.

- Laplace: `diffprivlib.mechanisms.Laplace(epsilon, sensitivity)` adds Laplace noise of scale
  sensitivity/epsilon (with delta = 0), like `course.lib.laplace.laplace_mechanism`; two-sample KS test.
- Randomized response: `diffprivlib.mechanisms.Binary(epsilon, value0, value1)` keeps its input with
  probability e^eps / (1 + e^eps) and flips it otherwise. Our mechanism reports a row truthfully with
  probability 1 - p_noise/2 (kept with probability 1 - p_noise, else a fair coin that lands on the truth half
  of the time), so the two agree exactly when e^eps / (1 + e^eps) = 1 - p_noise/2, i.e.
  eps = ln((1 - p_noise/2) / (p_noise/2)) = `rr_epsilon(p_noise)`. Binary then reports "1" for input "1" with
  probability 1 - p_noise/2 and for input "0" with probability p_noise/2; chi-square tests on 2x2 tables.

All draws are seeded, so these tests are deterministic; each p-value threshold (1e-4) sits far in the tail,
and a deliberately mismatched parameter shows that the tests can fail.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types

import numpy as np
import pytest
import torch
from scipy import stats

from course.lib.laplace import laplace_mechanism
from course.lib.randomized_response import randomized_response, rr_epsilon

SAMPLES = 4000
P_VALUE_THRESHOLD = 1e-4


def _import_mechanisms():
    """Import `diffprivlib.mechanisms`, working around diffprivlib 0.6.6's package __init__.

    That __init__ also imports `diffprivlib.models`, which needs scikit-learn internals
    (`sklearn.tree._tree.DOUBLE`) removed in newer scikit-learn; the mechanisms themselves do not. When the
    normal import fails, the subpackage is loaded under a bare parent module that skips that __init__, and the
    stand-in parent is removed from `sys.modules` afterwards.
    """
    try:
        return importlib.import_module("diffprivlib.mechanisms")
    except ImportError:
        pass
    spec = importlib.util.find_spec("diffprivlib")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("diffprivlib is not installed")
    for name in [name for name in sys.modules if name == "diffprivlib" or name.startswith("diffprivlib.")]:
        del sys.modules[name]
    parent = types.ModuleType("diffprivlib")
    parent.__path__ = list(spec.submodule_search_locations)
    sys.modules["diffprivlib"] = parent
    try:
        return importlib.import_module("diffprivlib.mechanisms")
    finally:
        del sys.modules["diffprivlib"]


@pytest.fixture(scope="module")
def mechanisms():
    return _import_mechanisms()


def _diffprivlib_laplace(mechanisms, value, sensitivity, epsilon, seed):
    mechanism = mechanisms.Laplace(epsilon=epsilon, sensitivity=sensitivity, random_state=seed)
    return np.array([mechanism.randomise(value) for _ in range(SAMPLES)])


def _course_laplace(value, sensitivity, epsilon, seed):
    values = torch.full((SAMPLES,), value, dtype=torch.float64)
    return laplace_mechanism(values, sensitivity, epsilon, torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize(
    "value, sensitivity, epsilon, seed", [(0.0, 1.0, 1.0, 10), (5.0, 2.0, 0.5, 20), (-3.0, 0.1, 4.0, 30)]
)
def test_laplace_matches_diffprivlib(mechanisms, value, sensitivity, epsilon, seed):
    ours = _course_laplace(value, sensitivity, epsilon, seed=seed)
    theirs = _diffprivlib_laplace(mechanisms, value, sensitivity, epsilon, seed=seed + 1)
    assert stats.ks_2samp(ours, theirs).pvalue > P_VALUE_THRESHOLD


def test_laplace_crosscheck_detects_a_wrong_scale(mechanisms):
    ours = _course_laplace(0.0, 1.0, 1.0, seed=1)
    theirs = _diffprivlib_laplace(mechanisms, 0.0, 1.0, 0.5, seed=2)  # twice the noise
    assert stats.ks_2samp(ours, theirs).pvalue < P_VALUE_THRESHOLD


def _binary_ones(mechanisms, epsilon, true_value: int, seed: int) -> int:
    """How many of SAMPLES reports of Binary are "1" when the input is `true_value`."""
    mechanism = mechanisms.Binary(epsilon=epsilon, value0="0", value1="1", random_state=seed)
    return sum(mechanism.randomise(str(true_value)) == "1" for _ in range(SAMPLES))


def _rr_ones(p_noise, true_value: int, seed: int) -> int:
    db = torch.full((SAMPLES,), bool(true_value))
    return int(randomized_response(db, p_noise, torch.Generator().manual_seed(seed)).sum())


def _same_rate_p_value(ones_a: int, ones_b: int) -> float:
    table = [[ones_a, SAMPLES - ones_a], [ones_b, SAMPLES - ones_b]]
    return stats.chi2_contingency(table).pvalue


def test_binary_parameter_mapping_is_exact():
    for p_noise in (0.1, 0.5, 0.9):
        epsilon = rr_epsilon(p_noise)
        keep = math.exp(epsilon) / (1 + math.exp(epsilon))
        assert keep == pytest.approx(1 - p_noise / 2)


@pytest.mark.parametrize("p_noise", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("true_value", [0, 1])
def test_randomized_response_matches_diffprivlib_binary(mechanisms, p_noise, true_value):
    epsilon = rr_epsilon(p_noise)
    seed = int(100 * p_noise) + true_value
    theirs = _binary_ones(mechanisms, epsilon, true_value, seed=seed)
    ours = _rr_ones(p_noise, true_value, seed=seed + 1000)
    expected_rate = 1 - p_noise / 2 if true_value else p_noise / 2
    assert stats.binomtest(theirs, SAMPLES, expected_rate).pvalue > P_VALUE_THRESHOLD
    assert stats.binomtest(ours, SAMPLES, expected_rate).pvalue > P_VALUE_THRESHOLD
    assert _same_rate_p_value(ours, theirs) > P_VALUE_THRESHOLD


def test_binary_crosscheck_detects_a_wrong_mapping(mechanisms):
    """Mapping p_noise to Binary's flip probability directly (eps = ln((1 - p) / p)) is a different mechanism."""
    p_noise = 0.2
    wrong_epsilon = math.log((1 - p_noise) / p_noise)
    theirs = _binary_ones(mechanisms, wrong_epsilon, 1, seed=3)
    ours = _rr_ones(p_noise, 1, seed=4)
    assert _same_rate_p_value(ours, theirs) < P_VALUE_THRESHOLD
