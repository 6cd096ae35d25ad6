"""The course's instructor tools: release, grade and report (spec section 6), built on nbgrader."""
import os
import sys
from pathlib import Path

# nbgrader runs the `alembic` script by name to manage the gradebook; when this environment's Python is
# started by its path (without activating the venv) its scripts folder is not on PATH, so put it there.
_scripts = str(Path(sys.executable).parent)
if _scripts not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _scripts + os.pathsep + os.environ.get("PATH", "")
