"""A small sample class, built from source/ and release/, that shows the whole grading loop.

Students: `perfect` (the reference solutions typed into the release notebook), `untouched` (the release as
handed out), `one_wrong` (perfect but for one typical mistake per assignment) and `broken` (a file that is
not a notebook).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import shutil
import types
from pathlib import Path

import nbformat
from nbgrader.utils import is_solution

from autograder.layout import RELEASE, SOURCE, assignments, notebooks
from course.notebooks import NOTEBOOKS


# One typical mistake per assignment: the graded function whose solution cell is replaced, and the wrong answer
# typed in its place, a function of course.grading.wrong_answers (whose tests show the hidden checks catch it).
@functools.cache
def wrong_answers() -> dict[str, tuple[str, str]]:
    """{assignment: (graded function, the cell source of its typical mistake)}, from course.notebooks."""
    answers = {}
    for assignment, notebook in NOTEBOOKS.items():
        name, wrong = notebook.typical_mistake
        module, function = wrong.split(".")
        function = getattr(importlib.import_module(f"course.grading.wrong_answers.{module}"), function)
        answers[assignment] = (name, cell_source(function, name))
    return answers


def __getattr__(name: str):
    """`WRONG_ANSWERS` (= wrong_answers()) is built on first use: the wrong answers import torch, which the
    command line need not load."""
    if name == "WRONG_ANSWERS":
        return wrong_answers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _names_used(code: types.CodeType) -> set[str]:
    """The global names a function's code (and the comprehensions and lambdas inside it) refers to."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names_used(constant)
    return names


def cell_source(function: types.FunctionType, name: str) -> str:
    """`function` as a student would type it into the cell of graded function `name`: the imports and the
    module's private helpers it uses, then the function itself, renamed to `name`."""
    module = inspect.getmodule(function)
    assert module is not None, f"{function.__qualname__} is defined in no module"
    imports: list[str] = []
    helpers: list[types.FunctionType] = []
    pending = [function]
    seen: set[str] = set()
    while pending:
        current = pending.pop()
        for used in sorted(_names_used(current.__code__) - seen):
            seen.add(used)
            value = getattr(module, used, None)
            if isinstance(value, types.ModuleType):
                imports.append(f"import {value.__name__}" + ("" if value.__name__ == used else f" as {used}"))
            elif inspect.isfunction(value) and value.__module__ == module.__name__ and used.startswith("_"):
                helpers.append(value)
                pending.append(value)
            elif value is not None and hasattr(value, "__module__") and not inspect.isbuiltin(value):
                imports.append(
                    f"from {value.__module__} import {value.__name__}"
                    + ("" if value.__name__ == used else f" as {used}")
                )
    code = inspect.getsource(function).replace(f"def {function.__name__}(", f"def {name}(", 1)
    parts = ["\n".join(sorted(imports))] + [inspect.getsource(helper) for helper in helpers] + [code]
    return "\n\n\n".join(part.strip() for part in parts if part) + "\n"


SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def solution_text(source_cell: nbformat.NotebookNode) -> str:
    """A solution cell's code as a student would type it: the source without nbgrader's markers."""
    return "\n".join(line for line in source_cell.source.splitlines() if line.strip() not in SOLUTION_MARKERS)


def solved(
    assignment: str,
    notebook: str,
    source: Path = SOURCE,
    release: Path = RELEASE,
    replace: dict[str, str] | None = None,
) -> nbformat.NotebookNode:
    """The release notebook with every solution cell filled in from the source (or from `replace`)."""
    replace = replace or {}
    source_cells = {c.get("id"): c for c in nbformat.read(source / assignment / notebook, as_version=4).cells}
    nb = nbformat.read(release / assignment / notebook, as_version=4)
    for cell in nb.cells:
        if is_solution(cell) and cell.cell_type == "code":
            cell.source = replace.get(cell.metadata.nbgrader["grade_id"]) or solution_text(source_cells[cell.get("id")])
    return nb


def build(target: Path, source: Path = SOURCE, release: Path = RELEASE) -> list[str]:
    """Write the sample class under `target` (<student>/<assignment>/<notebook>); return the student names."""
    if target.exists():
        shutil.rmtree(target)
    for assignment in assignments(source):
        for notebook in notebooks(assignment, source):
            wrong = wrong_answers().get(assignment)
            versions = {
                "perfect": solved(assignment, notebook, source, release),
                "untouched": nbformat.read(release / assignment / notebook, as_version=4),
                "one_wrong": solved(assignment, notebook, source, release, dict([wrong]) if wrong else None),
            }
            for student, nb in versions.items():
                path = target / student / assignment / notebook
                path.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, path)
            broken = target / "broken" / assignment / notebook
            broken.parent.mkdir(parents=True, exist_ok=True)
            broken.write_text('{"cells": [ this is not JSON')
    return ["perfect", "untouched", "one_wrong", "broken"]
