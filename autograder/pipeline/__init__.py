"""nbgrader as the course runs it: its configuration, the preprocessors the course adds (one per file), the
exporter of feedback pages and the check server that runs hidden tests in the grader's process.

Nothing here knows about a class or a batch: it grades one notebook in one private course folder.
"""
