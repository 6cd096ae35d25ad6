"""An assignment as the grader ships it (`Bundle`), made once per assignment version and cached.

A bundle holds the assignment's source files and a gradebook template that knows its cells, made by
nbgrader's generate_assignment. That template depends only on the source files, the course's code and
the lock file, so it is kept in `Grading.bundle_cache` under a digest of those: a later run of the same
version (one late submission, a regrade) reuses it instead of running nbgrader again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograder.batch.submission import Bundle
from autograder.batch.version import VERSION
from autograder.pipeline.generate import generate


def make_bundle(
    source: Path, assignment: str, class_gradebook: str, scratch: Path, cache: Path | None = None
) -> Bundle:
    """The assignment's bundle; the class gradebook learns the assignment's cells too, so that results can
    be merged into it. `cache` (a folder; None: no cache) keeps templates between runs."""
    folder = source / assignment
    files = {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }
    cached = Path(cache) / f"{assignment}-{_version_key(assignment, files)}.db" if cache else None
    course = scratch / f"template-{assignment}"
    if cached is not None and cached.is_file():
        template = cached.read_bytes()
    else:
        _write_course(course, assignment, files)
        generate(course, [assignment], gradebook=course / "gradebook.db")
        template = (course / "gradebook.db").read_bytes()
        if cached is not None:
            _store(cached, template)
    _register(class_gradebook, assignment, template, course, files)
    return Bundle(assignment, files, template)


def _version_key(assignment: str, files: dict[str, bytes]) -> str:
    parts = [
        assignment,
        VERSION["code"],
        VERSION["lock"],
        *(f"{name}:{hashlib.sha256(content).hexdigest()}" for name, content in sorted(files.items())),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _write_course(course: Path, assignment: str, files: dict[str, bytes]) -> None:
    if (course / "source" / assignment).is_dir():
        return
    for name, content in files.items():
        (course / "source" / assignment / name).parent.mkdir(parents=True, exist_ok=True)
        (course / "source" / assignment / name).write_bytes(content)


def _store(path: Path, content: bytes) -> None:
    """Write atomically, so that a concurrent run never reads half a template."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".template-")
    with os.fdopen(handle, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def _register(class_gradebook: str, assignment: str, template: bytes, course: Path, files: dict[str, bytes]) -> None:
    """Make the class gradebook know the assignment's cells exactly as the template does.

    A new SQLite class gradebook starts as a copy of the template (the same generate_assignment output); one
    that already knows these cells is left alone; otherwise generate_assignment records them.
    """
    new_file = _sqlite_path(class_gradebook)
    if new_file is not None and not new_file.exists():
        new_file.parent.mkdir(parents=True, exist_ok=True)
        new_file.write_bytes(template)
        return
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "template.db").write_bytes(template)
        wanted = _cells(f"sqlite:///{Path(scratch) / 'template.db'}", assignment)
    if _cells(class_gradebook, assignment) != wanted:
        _write_course(course, assignment, files)
        generate(course, [assignment], gradebook=class_gradebook)


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _cells(url: str, assignment: str) -> frozenset:
    """What the gradebook records of an assignment's notebooks and cells (empty when it has none)."""
    with Gradebook(url) as gradebook:
        try:
            notebooks = gradebook.find_assignment(assignment).notebooks
        except MissingEntry:
            return frozenset()
        return frozenset(
            (
                notebook.name,
                kind,
                cell.name,
                getattr(cell, "checksum", None),
                getattr(cell, "max_score", None),
                getattr(cell, "cell_type", None),
                getattr(cell, "source", None),
            )
            for notebook in notebooks
            for kind, cells in (
                ("grade", notebook.grade_cells),
                ("solution", notebook.solution_cells),
                ("source", notebook.source_cells),
                ("task", notebook.task_cells),
            )
            for cell in cells
        )
