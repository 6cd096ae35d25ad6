"""The leak scan of spec section 1, rule 4: nothing in release/ may reveal solutions or hidden tests.

It reads every file under a release folder as text (notebooks as their whole JSON: cells, metadata and
outputs) and reports markers, imports of the course package, outputs, and any line of a source solution or
hidden test that appears verbatim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

FORBIDDEN = re.compile(
    r"BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|END HIDDEN TESTS|BEGIN MARK SCHEME|"
    r"END MARK SCHEME|course\.lib|course\.grading|from course\b|import course\b"
)
REGION = re.compile(
    r"(?:BEGIN SOLUTION|BEGIN HIDDEN TESTS)[^\n]*\n(.*?)\n[^\n]*(?:END SOLUTION|END HIDDEN TESTS)", re.DOTALL
)
# Lines this short or this generic are common to solutions and ordinary code (`return db`, `pass`).
MIN_SECRET_LENGTH = 25


@dataclass(frozen=True)
class Leak:
    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def secret_lines(source_dir: Path) -> set[str]:
    """Distinctive lines of every solution and hidden-test region in the source notebooks."""
    secrets: set[str] = set()
    for notebook in source_dir.rglob("*.ipynb"):
        for cell in json.loads(notebook.read_text())["cells"]:
            for region in REGION.findall("".join(cell["source"])):
                secrets.update(
                    line.strip()
                    for line in region.splitlines()
                    if len(line.strip()) >= MIN_SECRET_LENGTH and not line.strip().startswith("#")
                )
    return secrets


def scan_release(release_dir: Path, source_dir: Path) -> list[Leak]:
    """Every leak found under `release_dir`; empty when the release is clean.

    Solution lines are looked for in the release of their own assignment: a later notebook may hand out an
    earlier one's answer as a helper (02 gives 01's get_parallel_db) once that assignment is over.
    """
    leaks = []
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        assignment = path.relative_to(release_dir).parts[0]
        secrets = secret_lines(source_dir / assignment) if (source_dir / assignment).is_dir() else set()
        text = path.read_text(errors="replace")
        leaks += [Leak(path, f"contains {m.group(0)!r}") for m in FORBIDDEN.finditer(text)]
        if path.suffix == ".ipynb":
            leaks += _notebook_leaks(path, text)
        leaks += [
            Leak(path, f"contains a line of a solution or hidden test: {line!r}")
            for line in sorted(secrets)
            if line in text or json.dumps(line)[1:-1] in text
        ]
    return leaks


def _notebook_leaks(path: Path, text: str) -> list[Leak]:
    nb = json.loads(text)
    leaks = []
    for index, cell in enumerate(nb["cells"]):
        if cell.get("outputs") or cell.get("execution_count"):
            leaks.append(Leak(path, f"cell {index} has outputs"))
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if nbgrader.get("solution") is False and nbgrader.get("grade") is True and cell["cell_type"] == "markdown":
            leaks.append(Leak(path, f"cell {index} is a graded markdown cell outside an answer cell"))
    return leaks
