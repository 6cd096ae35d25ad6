"""OUT as nbgrader's formgrader sees it: `OUT/nbgrader_config.py`, written by every `grade` run.

Formgrader (a Jupyter server extension) reads `nbgrader_config.py` from the folder the server starts in.
This one loads the course's configuration, makes OUT itself the course root (formgrader then renders the
sanitised notebooks of `OUT/autograded/<student>/<assignment>/`, see autograder/sinks/sanitise.py) and names the
class gradebook. Started from OUT as docs/INSTRUCTOR.md says (`jupyter server --ServerApp.ip=127.0.0.1`, not as
root, with its token), it serves nothing but OUT. A gradebook URL with a password is not written down: the
file says where to put it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from autograder.layout import CONFIG_FILE, OutFolder
from autograder.pipeline.config import gradebook_url as url_of

NAME = "nbgrader_config.py"


def write_config(out: Path, gradebook_url: str) -> Path:
    """Write OUT/nbgrader_config.py for formgrader on OUT; return its path."""
    try:
        secret = urlsplit(gradebook_url).password is not None
    except ValueError:
        secret = True
    if gradebook_url == url_of(OutFolder(Path(out)).gradebook):
        gradebook = ""  # nbgrader's default: gradebook.db in the course root
    elif secret:
        gradebook = "# c.CourseDirectory.db_url = '...'  # the --gradebook URL of `grade`, with its password\n"
    else:
        gradebook = f"c.CourseDirectory.db_url = {gradebook_url!r}\n"
    text = (
        "# Written by `python -m autograder grade`: formgrader (manual grading) on this folder. Start it here,\n"
        "# not as root: jupyter server --ServerApp.ip=127.0.0.1 (see docs/INSTRUCTOR.md, 'Grading by hand').\n"
        "import os\n\n"
        "c = get_config()  # noqa: F821 (provided by traitlets when this file is loaded)\n"
        f"load_subconfig({str(CONFIG_FILE)!r})  # noqa: F821 (the course's nbgrader configuration)\n"
        "c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))\n"
        f"{gradebook}"
        f"c.Exchange.root = {tempfile.gettempdir()!r}  # no exchange: submissions come from folders and LMS zips\n"
    )
    path = Path(out) / NAME
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    return path
