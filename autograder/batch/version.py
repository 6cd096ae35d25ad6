"""What a grading process runs: the course's code, the lock file and Python, hashed once at import.

The Dask client compares its workers' versions with its own, and a regrade's input digest includes them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from autograder.layout import LOCK_FILE

PACKAGES = ("autograder", "course")  # the course's own code


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def code_digest() -> str:
    """SHA-256 of every .py file of the course's packages (path and content), as installed in this process."""
    hasher = hashlib.sha256()
    for name in PACKAGES:
        folder = _package_folder(name)
        if folder is None:
            hasher.update(f"{name}: missing\0".encode())
            continue
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                hasher.update(f"{name}/{path.relative_to(folder).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def lock_digest() -> str:
    """SHA-256 of requirements.lock beside the installed project ('missing' when it has none)."""
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest() if LOCK_FILE.is_file() else "missing"


# Hashed once, at import: what this process runs, even if the files change on disk later.
VERSION = {"code": code_digest(), "lock": lock_digest(), "python": sys.version.split()[0]}
VERSION_NAMES = {"code": "course code (autograder/, course/)", "lock": "requirements.lock", "python": "Python version"}
