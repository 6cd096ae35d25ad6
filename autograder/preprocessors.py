"""nbgrader preprocessors the course adds to nbgrader's own pipelines (see nbgrader_config.py)."""
from __future__ import annotations

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor


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
