"""The one way tests run the command line: `python -m autograder ...` in the repository, output captured."""

from __future__ import annotations

import subprocess
import sys

from locations import REPO


def run_cli(*arguments, timeout: float = 900, env: dict | None = None, check: bool = False):
    """`python -m autograder <arguments>`; with `check`, a non-zero exit fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "autograder", *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_grade(submissions, out, *options, **keywords):
    """`python -m autograder grade SUBMISSIONS --out OUT <options>` (keywords as run_cli's)."""
    return run_cli("grade", submissions, "--out", out, *options, **keywords)
