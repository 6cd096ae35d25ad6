# Lets the `nbgrader` command line and formgrader, started from the repository root, use the course's
# configuration; the configuration itself lives in autograder/pipeline/nbgrader_config.py.
c = get_config()  # noqa: F821
load_subconfig("autograder/pipeline/nbgrader_config.py")  # noqa: F821
