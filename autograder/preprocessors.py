"""nbgrader preprocessors the course adds to nbgrader's own pipelines (see nbgrader_config.py)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from unittest import mock

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor

from .check_client import CHECKER_VARIABLE
from .check_server import CHECK_NAME, CheckServer
from .sandbox import SOCKET_LINK_VARIABLE


class HideHiddenTests(ClearHiddenTests):
    """Feedback: drop hidden-test regions from test cells, as the release does, so no test code is shown."""

    enforce_metadata = False


class ErrorMessageOnly(NbGraderPreprocessor):
    """Feedback: shorten every error output to `ExceptionName: message`.

    A traceback would show the lines of the hidden test and of the grading helpers it called.
    """

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources


class RestoreGradedCells(NbGraderPreprocessor):
    """Autograding: undo what a submission did to the cells nbgrader grades, before nbgrader checks them.

    nbgrader refuses a notebook in which a graded cell appears twice or changed its type (a test cell turned
    into markdown, say), which would cost the student every point. Instead: later copies of a graded cell
    are dropped, and a graded cell whose type or nbgrader flags were changed gets them back from the
    gradebook (nbgrader's OverwriteCells then restores a locked cell's source). Deleted cells are put back by
    `OverwriteCells.add_missing_cells`.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            source = {cell.name: cell for cell in gradebook.find_notebook(info["notebook"], info["assignment"]).source_cells}
            kept, seen = [], set()
            for cell in nb.cells:
                if cell.metadata.get("nbgrader") == {}:
                    del cell.metadata["nbgrader"]  # emptied metadata makes nbgrader's later steps fail
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id in seen:
                    self.log.warning("dropping a second copy of graded cell %s", grade_id)
                    continue
                if grade_id in source:
                    seen.add(grade_id)
                    self._restore(cell, source[grade_id], gradebook, info)
                kept.append(cell)
            nb.cells = kept
        return nb, resources

    @staticmethod
    def _restore(cell, original, gradebook, info) -> None:
        if cell.cell_type != original.cell_type:
            cell.cell_type = original.cell_type
            cell.source = original.source
            if original.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        flags = dict(grade_id=original.name, locked=original.locked, schema_version=3, cell_type=original.cell_type,
                     checksum=original.checksum, task=False)
        try:
            points = gradebook.find_grade_cell(original.name, info["notebook"], info["assignment"]).max_score
            flags.update(grade=True, points=points)
        except MissingEntry:
            flags.update(grade=False)
        try:
            gradebook.find_solution_cell(original.name, info["notebook"], info["assignment"])
            flags.update(solution=True)
        except MissingEntry:
            flags.update(solution=False)
        cell.metadata["nbgrader"] = flags


class TrustedExecute(Execute):
    """Autograding: nbgrader's Execute, with every hidden test run by the grader rather than the kernel.

    While the notebook runs, an autograder.check_server.CheckServer serves the hidden test cells. Before a
    test cell runs, the checks its source (as the gradebook has it, not as submitted) names are allowed to
    run once; when it ends, any check that did not pass adds its failure to the cell's outputs, so nbgrader
    scores the cell zero and the feedback says why, whatever the kernel printed.

    A kernel that dies (crash, exit, memory) costs the cell it died in and every later cell, each with the
    reason; the cells that ran before keep their grades.
    """

    def preprocess(self, nb, resources=None, km=None):
        self._pending_checks = _hidden_checks(resources)
        self._kernel_died = False
        with _socket_folder() as folder, CheckServer(os.path.join(folder, "checker")) as server, \
                mock.patch.dict(os.environ, {CHECKER_VARIABLE: server.address}):  # kernels inherit it
            self._server = server
            return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if self._kernel_died:
            if cell.cell_type == "code":
                cell.outputs = [_error("DeadKernelError", "not run: the kernel died in an earlier cell")]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._kernel_died = True
            self._server.close_window()
            cell.outputs.append(_error("DeadKernelError", "the kernel died while this cell ran (it crashed, "
                                                          "exited or ran out of memory)"))
            return cell, resources

    def on_cell_execute(self, cell, cell_index, **kwargs):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        self._server.open_window(self._pending_checks.pop(grade_id, ()))

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        cell = kwargs["cell"]
        failures = [v.message for v in self._server.close_window().values() if not v.passed]
        if failures and not any(output.output_type == "error" for output in cell.outputs):
            cell.outputs.append(_error("GradingFailure", failures[0]))


def _error(name: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


def _hidden_checks(resources) -> dict[str, list[str]]:
    """grade_id -> names of the checks that the test cell calls, read from the gradebook's copy of the source."""
    info = (resources or {}).get("nbgrader", {})
    with Gradebook(info["db_url"]) as gradebook:
        notebook = gradebook.find_notebook(info["notebook"], info["assignment"])
        found = {cell.name: CHECK_NAME.findall(cell.source or "") for cell in notebook.source_cells}
    return {name: checks for name, checks in found.items() if checks}


def _socket_folder():
    """A folder for the checker's socket that the kernel reaches by a short path (sockets allow ~100 chars).

    A sandboxed kernel sees the worker's short link to its runtime folder (autograder.worker); otherwise a
    fresh private folder in /tmp does.
    """
    if SOCKET_LINK_VARIABLE in os.environ:
        return contextlib.nullcontext(os.environ[SOCKET_LINK_VARIABLE].split(":", 1)[0])
    return tempfile.TemporaryDirectory(prefix="dpc-")
