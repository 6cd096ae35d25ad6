"""Grades for learning management systems: one module per format, each an `LmsFormat` registered with
`@register`, as nbgrader's exporters are plugins. `python -m autograder export --to <name>` and course.toml's
`[lms.<name>.columns]` accept every registered name; a new LMS is one new module in this folder.
"""

from __future__ import annotations

import importlib
import pkgutil

from autograder.lms.base import LmsFormat

_REGISTERED: dict[str, LmsFormat] = {}


def register(cls: type[LmsFormat]) -> type[LmsFormat]:
    """Class decorator: make the format available under its `name`."""
    _REGISTERED[cls.name] = cls()
    return cls


def formats() -> dict[str, LmsFormat]:
    """Every format of this folder, by name (its modules are imported on first use)."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(_REGISTERED.items()))
