# nbgrader configuration of the course: loaded by `python -m autograder` and, through the repository's
# root nbgrader_config.py, by the `nbgrader` command line and formgrader.
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # traitlets provides get_config in the namespace it loads this file into
    from traitlets.config import Config

    def get_config() -> Config: ...


c = get_config()  # noqa: F821 (provided by traitlets when this file is loaded)

c.CourseDirectory.course_id = "dp-course"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

c.GenerateAssignment.create_assignment = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Every grading limit (cell and notebook timeouts, memory, processes, disk, output, data root, workers,
# Dask scheduler, sandbox) is a traitlet of autograder.settings.Grading; set them here, for example
#   c.Grading.cell_timeout = 120
# and `python -m autograder grade --help` lists the command-line options that override them. The grader
# passes the cell timeout and kernel start-up limit to nbgrader's Execute.
c.Execute.interrupt_on_timeout = True
# After a cell's reply, how long its last outputs may take to arrive (nbclient's default, 4 s, is too short
# for a kernel that a busy machine or a student's many processes slow down).
c.Execute.iopub_timeout = 20
c.Execute.error_on_timeout = {
    "ename": "CellTimeoutError",
    "evalue": "the cell ran past its time limit and was interrupted (an endless loop, or far too much work)",
    "traceback": ["CellTimeoutError: the cell ran past its time limit and was interrupted"],
}
# After the last cell the kernel is killed, not asked to exit: the grader kills its whole sandbox anyway,
# and waiting for a polite exit cost about 1.5 s per submission on a 2-core machine.
c.Execute.shutdown_kernel = "immediate"
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 50

# Autograding first repairs what a submission did to graded cells (duplicated, retyped or deleted ones),
# then runs nbgrader's own sanitising steps.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "autograder.pipeline.preprocessors.RestoreGradedCells",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.OverwriteCells.add_missing_cells = True

# Hidden tests run in the grader's process, not in the student's kernel (see autograder.pipeline.check_server), and
# test cells are scored from the grader's verdicts, not from what they printed (SaveVerdictGrades).
c.Autograde.autograde_preprocessors = [
    "autograder.pipeline.preprocessors.TrustedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.pipeline.preprocessors.SaveVerdictGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    # What the student wrote and displayed made inert (scripts, handlers, widget state...), once the grades
    # are saved: formgrader renders this notebook in the instructor's Jupyter (autograder/sinks/sanitise.py).
    "autograder.sinks.sanitise.SanitiseNotebook",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback shows what failed, never how it was tested: hidden tests are removed from the test cells and
# error outputs are cut to the exception's name and message.
c.GenerateFeedback.exporter_class = (
    "autograder.pipeline.feedback.FeedbackExporter"  # templates compiled once per process
)
c.GenerateFeedback.preprocessors = [
    "autograder.sinks.sanitise.SanitiseNotebook",  # again, before GetGrades adds the scores and comments
    "nbgrader.preprocessors.GetGrades",
    "autograder.pipeline.preprocessors.HideHiddenTests",
    "autograder.pipeline.preprocessors.ErrorMessageOnly",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
