"""Where the tests find the repository and their hand-written fixtures, wherever in tests/ they live."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
