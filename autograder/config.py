"""The course's nbgrader configuration, pointed at one course directory."""
from __future__ import annotations

from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from .paths import CONFIG_FILE


def nbgrader_config(course_root: Path, gradebook: Path | None = None) -> Config:
    """Load autograder/nbgrader_config.py and aim it at `course_root` with a SQLite gradebook file."""
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.CourseDirectory.root = str(course_root)
    gradebook = gradebook or Path(course_root) / "gradebook.db"
    config.CourseDirectory.db_url = f"sqlite:///{gradebook}"
    return config
