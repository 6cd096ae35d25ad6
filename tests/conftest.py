import os
import shutil
from pathlib import Path

import pytest
from locations import REPO

# Notebooks read their data from DP_COURSE_DATA; default to the project's git-ignored copy of ../shared/data.
os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def out(tmp_path) -> Path:
    """An OUT folder as `grade` leaves it, from the hand-written files in tests/fixtures/lms (export, report)."""
    folder = tmp_path / "graded"
    folder.mkdir()
    for name in ("grades.csv", "students.csv", "late.csv"):
        shutil.copy(REPO / "tests" / "fixtures" / "lms" / name, folder / name)
    return folder


# The fast lane's promise (`make test-fast`, under 5 minutes on 2 cores): a test not marked slow takes at
# most this many seconds, set-up included, or it fails and says so. Slow tests (kernels, training runs,
# browsers) are marked `slow` and run in the whole suite only.
FAST_TEST_BUDGET = float(os.environ.get("DP_COURSE_FAST_TEST_BUDGET", "30"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.passed and report.when in ("setup", "call") and item.get_closest_marker("slow") is None:
        if call.duration > FAST_TEST_BUDGET:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} took {call.duration:.1f} s in its {report.when}, over the fast lane's budget of "
                f"{FAST_TEST_BUDGET:g} s per test (tests/conftest.py): make it faster, or mark it slow"
            )
