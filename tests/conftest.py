import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Notebooks read their data from DP_COURSE_DATA; default to the project's git-ignored copy of ../shared/data.
os.environ.setdefault("DP_COURSE_DATA", str(REPO / "data"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
