# nbgrader configuration of the course: loaded by `python -m autograder` and, through the repository's
# root nbgrader_config.py, by the `nbgrader` command line and formgrader.
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

# Explicit limits: one cell may run for CELL_TIMEOUT seconds; the whole notebook is bounded by the grader
# (autograder.grade.NOTEBOOK_TIMEOUT) because nbgrader only limits single cells.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 50

# Autograding first repairs what a submission did to graded cells (duplicated, retyped or deleted ones),
# then runs nbgrader's own sanitising steps.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "autograder.preprocessors.RestoreGradedCells",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.OverwriteCells.add_missing_cells = True

# Hidden tests run in the grader's process, not in the student's kernel (see autograder.check_server).
c.Autograde.autograde_preprocessors = [
    "autograder.preprocessors.TrustedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback shows what failed, never how it was tested: hidden tests are removed from the test cells and
# error outputs are cut to the exception's name and message.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "autograder.preprocessors.HideHiddenTests",
    "autograder.preprocessors.ErrorMessageOnly",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
