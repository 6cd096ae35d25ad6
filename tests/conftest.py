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
