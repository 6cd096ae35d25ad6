"""The same sandbox without root, as on an instructor's laptop: tests/autograder/sandbox/test_sandbox.py run
again by an ordinary user who already runs more processes than one sandbox may (a desktop session, a
browser's threads).

Root starts that user's run in a private mount namespace where root's home, which hides this Python from
every other user, is replaced by a folder holding only the Python installation."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.layout import REPO
from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import load_grading

USER = 54321  # an ordinary uid that nothing else on the machine uses
HOME = Path(os.path.expanduser("~root"))
BUSY = load_grading().process_limit + 50  # the user's other processes: more than a sandbox may start

pytestmark = [
    pytest.mark.slow,  # it runs the sandbox suite again
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start another user's run"),
    pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=sandbox.unavailable_reason() or "ok"),
    pytest.mark.skipif(not (shutil.which("setpriv") and shutil.which("unshare")), reason="needs util-linux"),
    pytest.mark.skipif(HOME in REPO.parents, reason="the repository lies in root's home"),
]


def _as_user(command: list[str], home: Path) -> list[str]:
    """`command` as USER, with this Python's folders under root's home visible again (and nothing else there)."""
    hidden = [p for p in sandbox.python_paths() if HOME in Path(p).parents]
    script = ["set -e", "stage=$(mktemp -d)"]
    for index, path in enumerate(hidden):
        script += [f'mkdir "$stage/{index}"', f'mount --bind "{path}" "$stage/{index}"']
    script += [f'mount -t tmpfs -o mode=755 tmpfs "{HOME}"']
    for index, path in enumerate(hidden):
        script += [f'mkdir -p "{path}"', f'mount --move "$stage/{index}" "{path}"']
    script += [
        f"for i in $(seq {BUSY}); do setpriv --reuid {USER} --regid {USER} --clear-groups sleep 900 </dev/null >/dev/null 2>&1 & done",  # noqa: E501
        f'exec setpriv --reuid {USER} --regid {USER} --clear-groups env HOME="{home}" "$@"',
    ]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), "sh", *command]


def test_the_sandbox_suite_passes_for_a_busy_ordinary_user():
    base = Path(tempfile.mkdtemp(prefix="dp-unprivileged-"))
    try:
        os.chown(base, USER, USER)
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests" / "autograder" / "sandbox" / "test_sandbox.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={base / 'pytest'}",
        ]
        result = subprocess.run(
            _as_user(command, base),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    finally:
        subprocess.run(["pkill", "-KILL", "-u", str(USER)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0 and " passed" in summary and "skipped" not in summary, result.stdout[-4000:]
