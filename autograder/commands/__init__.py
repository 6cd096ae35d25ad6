"""The instructor's commands, one module each: release, grade, report, export, manual and demo.

`cli` parses the command line and hands each command its arguments; a command module composes the folders
below it (batch, pipeline, intake, lms, term) and holds no grading logic of its own.
"""
