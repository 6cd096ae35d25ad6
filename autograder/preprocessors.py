"""nbgrader preprocessors the course adds to nbgrader's own pipelines (see nbgrader_config.py)."""
from __future__ import annotations

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
