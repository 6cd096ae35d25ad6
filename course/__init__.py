"""Differential privacy course: the reference library (`course.lib`) and grading helpers (`course.grading`).

Students never need this package; hidden tests import it at autograde time only.
"""
