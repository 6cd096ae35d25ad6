"""course.notebooks holds every notebook's facts: a notebook of source/ without an entry, or an entry that names
something missing, fails here."""

from __future__ import annotations

import importlib
import re

import nbformat
import pytest
from locations import REPO

from autograder.layout import SOURCE, assignments, notebooks
from course.notebooks import DATASETS, NOTEBOOKS

CHECK_CALL = re.compile(r"""check\(\s*["'](nb\d\d)\.(check_\w+)["']""")


def test_every_notebook_of_source_has_an_entry_and_no_entry_is_left_over():
    assert sorted(NOTEBOOKS) == assignments()


@pytest.mark.parametrize("assignment", sorted(NOTEBOOKS))
def test_an_entry_names_what_exists(assignment):
    notebook = NOTEBOOKS[assignment]
    checks = importlib.import_module(f"course.grading.{notebook.checks}")
    used = set()
    for name in notebooks(assignment):
        for cell in nbformat.read(SOURCE / assignment / name, as_version=4).cells:
            used |= set(CHECK_CALL.findall(cell.source))
    assert used, f"{assignment}'s hidden tests name no check"
    for module, check in used:
        assert module == notebook.checks, f"{assignment} calls {module}.{check}, not a check of {notebook.checks}"
        assert callable(getattr(checks, check, None)), f"course.grading.{module} has no {check}"
    function, wrong = notebook.typical_mistake
    module, name = wrong.split(".")
    assert callable(getattr(importlib.import_module(f"course.grading.wrong_answers.{module}"), name))
    assert any(
        cell.metadata.get("nbgrader", {}).get("grade_id") == function
        for name in notebooks(assignment)
        for cell in nbformat.read(SOURCE / assignment / name, as_version=4).cells
    )
    assert set(notebook.datasets) <= set(DATASETS)
    for script in notebook.results_scripts:
        assert (REPO / "scripts" / script).is_file(), script
