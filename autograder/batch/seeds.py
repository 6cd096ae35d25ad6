"""Per-student seeds for the hidden checks, so that failure messages (which quote expected values) differ
from one student to the next and cannot be shared.

A submission's seed is an HMAC of its student and assignment under the course secret: a random key kept in a
file outside the repository (`Grading.secret_file`, mode 600, made on first use). The seed is derived in the
grader's client process and recorded in grades.csv, so a regrade reproduces the grade exactly; the secret
itself never reaches a sandbox or a Dask worker. The checks' thresholds do not depend on the seed: it only
chooses which inputs are drawn, so each check's false-failure bound holds for every seed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SEED_RANGE = 2**31


def course_secret(path: Path | str) -> bytes:
    """The course secret in `path`, created (readable by its owner only) when the file does not exist yet."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another grader
            return path.read_bytes().strip()
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"the course secret in {path} is too short (at least 16 characters)")
    return secret


def derive_seed(secret: bytes, student: str, assignment: str) -> int:
    """The hidden checks' seed for one student's assignment, in [0, 2**31)."""
    digest = hmac.new(secret, f"{assignment}\0{student}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE
