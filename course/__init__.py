"""Differential privacy course: the reference library (`course.lib`), the helpers the notebooks show
(`course.shown`, copied into the release's generated cells) and the hidden-test checks (`course.grading`).

Students never need this package; hidden tests import it at autograde time only.
"""
