"""The data-independent bound of Confident-GNMax, recomputed from first principles.

Rényi DP arithmetic written out here, order by order, without the library's accountant: step 1 is a Gaussian
mechanism of sensitivity 1 (the maximum count, replacement neighbours) with noise sigma1, so
(order, order / (2 sigma1^2))-RDP per query; step 2 is GNMax, the Gaussian mechanism on the histogram (L2
sensitivity sqrt 2) with noise sigma2, so (order, order / sigma2^2)-RDP per answer. With a cap of M answers fixed
in advance, k queries cost at most k * order / (2 sigma1^2) + M * order / sigma2^2 on every run (Feldman and
Zrnic, NeurIPS 2021, the Renyi filter), converted to (epsilon, delta) by Mironov's Proposition 3 or Balle et al.'s
Theorem 21. The same worst case must come out of `course.shown.pate_accounting`, of the committed results table
and of notebook 05's text.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from course.shown.pate_accounting import confident_gnmax, confident_gnmax_epsilon, rdp_to_epsilon_balle

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "pate2018_mnist.md"
NOTEBOOK = REPO / "source" / "05_pate" / "05_pate.ipynb"
# The orders, as numbers: 1 + 250 points geometrically spaced from 1e-3 to 1e4 (the course's grid).
ORDERS = [1.0 + 1e-3 * (1e7 ** (i / 249)) for i in range(250)]


def worst_case_epsilon(queries: int, cap: int, sigma1: float, sigma2: float, delta: float, conversion: str) -> float:
    best = math.inf
    for order in ORDERS:
        rdp = queries * order / (2 * sigma1**2) + cap * order / sigma2**2
        if conversion == "mironov":
            epsilon = rdp + math.log(1 / delta) / (order - 1)
        else:  # Balle et al. 2020, Theorem 21
            epsilon = rdp + math.log((order - 1) / order) - (math.log(delta) + math.log(order)) / (order - 1)
        best = min(best, epsilon)
    return best


@pytest.mark.parametrize("delta", [1e-5, 1e-6])
@pytest.mark.parametrize("queries, cap", [(1000, 600), (1000, 1000), (640, 400), (640, 640), (50, 0)])
def test_the_library_bound_is_the_worst_case(queries, cap, delta):
    mironov = confident_gnmax_epsilon(queries, cap, 150.0, 40.0, delta)
    balle = confident_gnmax_epsilon(queries, cap, 150.0, 40.0, delta, conversion=rdp_to_epsilon_balle)
    assert mironov == pytest.approx(worst_case_epsilon(queries, cap, 150.0, 40.0, delta, "mironov"), rel=1e-12)
    assert balle == pytest.approx(worst_case_epsilon(queries, cap, 150.0, 40.0, delta, "balle"), rel=1e-12)


def test_the_uncapped_worst_case_quoted_in_the_review():
    """Every query charged both steps, 1,000 queries at delta 1e-5: 5.49 (Balle et al.) and 6.11 (Mironov)."""
    assert round(worst_case_epsilon(1000, 1000, 150.0, 40.0, 1e-5, "balle"), 2) == 5.49
    assert round(worst_case_epsilon(1000, 1000, 150.0, 40.0, 1e-5, "mironov"), 2) == 6.11


def test_the_cap_is_a_filter_whatever_the_votes():
    """Unanimous votes pass step 1 almost always: the aggregator stops at the cap, answers exactly what the uncapped
    one answers up to there, and the cost actually spent never exceeds the bound."""
    counts = np.tile([250] + [0] * 9, (1000, 1))
    uncapped = confident_gnmax(counts, 200.0, 150.0, 40.0, np.random.default_rng(3))
    capped = confident_gnmax(counts, 200.0, 150.0, 40.0, np.random.default_rng(3), max_answers=600)
    assert (capped >= 0).sum() == 600 < (uncapped >= 0).sum()
    last = np.flatnonzero(capped >= 0)[-1]
    assert np.array_equal(capped[: last + 1], uncapped[: last + 1]) and np.all(capped[last + 1 :] == -1)
    for order in (2.0, 10.0, 40.0):
        spent = 1000 * order / (2 * 150.0**2) + (capped >= 0).sum() * order / 40.0**2
        assert spent <= 1000 * order / (2 * 150.0**2) + 600 * order / 40.0**2
    # a cap that is never reached changes nothing
    never = confident_gnmax(counts[:100], 200.0, 150.0, 40.0, np.random.default_rng(3), max_answers=100)
    assert np.array_equal(never, uncapped[:100])
    with pytest.raises(ValueError):
        confident_gnmax(counts, 200.0, 150.0, 40.0, max_answers=-1)
    with pytest.raises(ValueError):
        confident_gnmax_epsilon(10, 11, 150.0, 40.0, 1e-5)


def _release_tables(text: str) -> dict[tuple[float, str], list[list[str]]]:
    """(delta, 'Balle' or 'Mironov') -> the rows of that release table, as lists of cell texts."""
    tables = {}
    for section in text.split("## Release: ")[1:]:
        delta = float(re.match(r"δ = ([0-9e.+-]+)", section).group(1))
        conversion = "Balle" if "Balle" in section.splitlines()[0] else "Mironov"
        rows = [line.split("|")[1:-1] for line in section.split("##")[0].splitlines() if line.startswith("| Confident")]
        tables[delta, conversion] = [[cell.strip() for cell in row] for row in rows]
    return tables


def test_the_committed_table_reports_the_worst_case():
    if not RESULTS.exists() or "## Release: " not in RESULTS.read_text():
        pytest.skip("results/pate2018_mnist.md not generated with the cap yet")
    tables = _release_tables(RESULTS.read_text())
    assert set(tables) == {(d, c) for d in (1e-5, 1e-6) for c in ("Balle", "Mironov")}
    for (delta, conversion), rows in tables.items():
        assert len(rows) == 2
        for row in rows:
            cap = int(re.search(r"cap M=(\d+)", row[1]).group(1))
            asked = int(row[2].split("/")[1])
            expected = worst_case_epsilon(asked, cap, 150.0, 40.0, delta, conversion.lower())
            assert float(row[5]) == pytest.approx(expected, abs=6e-4), (delta, conversion, asked)


def test_notebook_05_quotes_the_worst_case():
    """Section 7's reading of the table quotes the headline guarantee, 1,000 queries and a cap of 600 at the
    course's delta 1e-6, with both conversions."""
    import nbformat

    notebook = nbformat.read(NOTEBOOK, 4)
    text = next(c.source for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "md-pate18-read")
    for conversion in ("balle", "mironov"):
        assert f"{worst_case_epsilon(1000, 600, 150.0, 40.0, 1e-6, conversion):.2f}" in text, conversion
