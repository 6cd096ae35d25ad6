"""Typical wrong answers to the graded functions, one module per notebook (`nb01_02`, ..., `nb07`).

Each function has the student's signature and exactly one deliberate mistake, named in its docstring; none of
them is course material. The tests of the hidden checks (`tests/test_grading_*.py`) show that every one is
caught, and the sample class (`autograder.commands.demo`) types one per assignment into a notebook. They live
in the package, not in `tests/`, so that both can use them. Hidden test cells cannot reach them: the grader
runs only checks named `nbNN.check_<function>` (autograder.pipeline.check_server).
"""
