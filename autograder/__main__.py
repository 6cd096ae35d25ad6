import gc

from autograder.commands.cli import main

status = main()
# Every output is written and closed by now. The grader holds about 350,000 objects from torch, scipy and
# nbgrader, and the collector's passes over them while the interpreter shuts down took 1.5 of the 2 seconds
# that a `grade` run spent exiting (benchmarks/grade_submission.py measures the whole run); frozen objects are
# left to the operating system.
gc.freeze()
raise SystemExit(status)
