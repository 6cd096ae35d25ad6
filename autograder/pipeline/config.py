"""The course's nbgrader configuration, pointed at one course directory."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from autograder.layout import CONFIG_FILE
from autograder.pipeline import gradebook_version

gradebook_version.install()


def nbgrader_config(course_root: Path, gradebook: Path | str | None = None) -> Config:
    """Load autograder/pipeline/nbgrader_config.py and aim it at `course_root` and a gradebook.

    `gradebook` is a database URL (e.g. postgresql://...) or a path to a SQLite file; by default the SQLite
    file `course_root/gradebook.db`.
    """
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.CourseDirectory.root = str(course_root)
    # The course has no exchange (submissions come from a folder or an LMS zip), but nbgrader's API looks
    # for one on every start and logs a CRITICAL line when the default folder is missing: point it at a
    # folder that exists. Nothing is written there.
    config.Exchange.root = tempfile.gettempdir()
    config.CourseDirectory.db_url = gradebook_url(gradebook or Path(course_root) / "gradebook.db")
    return config


def gradebook_url(gradebook: Path | str) -> str:
    """A SQLAlchemy URL for a gradebook given as a URL or as a SQLite file path."""
    text = str(gradebook)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def quiet_logger(name: str) -> logging.Logger:
    """A logger for an NbGraderAPI that writes nowhere by itself: nbgrader's results capture what it logs,
    and the terminal gets the grader's own summary instead."""
    logger = logging.getLogger(f"autograder.nbgrader.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger
