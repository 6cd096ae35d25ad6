"""What runs inside a student's kernel: the check client that hidden test cells call, and the wire format.

The sandbox shows the kernel this folder only (copied beside an empty `autograder/__init__.py`), so nothing
here may import anything else from autograder or course.
"""
