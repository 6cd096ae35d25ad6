"""Cells that are generated, never hand-written: the Colab badge, the setup cell and library helper cells.

A source notebook marks such a cell with metadata `{"dp_course": {"generated": KIND, ...}}`:

- `badge`: an Open-in-Colab badge pointing at the notebook's release path on GitHub.
- `setup`: the first code cell; on Colab it pip-installs `packages` (pinned from requirements.lock), and
  everywhere it defines DATA_ROOT (from DP_COURSE_DATA) and FAST (DP_COURSE_FAST or nbgrader's autograding).
- `helpers`: read-only code shown to students, taken verbatim from `course.lib.<module>` (`names`; an entry
  `other:name` comes from `course.lib.<other>`), after the `imports` lines. The shown code is the library's code, so the two cannot drift.

`sync_notebook` rewrites these cells from the library; `python -m autograder release` runs it before
releasing, and a test checks that the committed source notebooks are in sync.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import tomllib
from pathlib import Path

import nbformat

from .paths import LOCK_FILE, REPO

METADATA_KEY = "dp_course"
HELPERS_PACKAGES = ("course.shown", "course.lib")


def helper_module(name: str):
    """The module `name` of the shown helpers (`course.shown`), else of the graded references (`course.lib`)."""
    for package in HELPERS_PACKAGES:
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
    raise ValueError(f"no module {name!r} in {HELPERS_PACKAGES}")


def colab_repository() -> str:
    """The GitHub `owner/name` that Colab badges point at (pyproject: [tool.dp-course] colab-repository)."""
    with open(REPO / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["dp-course"]["colab-repository"]


def pinned_versions(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """Package name (lower case) -> exact version, from the `name==version` lines of the lock file."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def render_badge(assignment: str, notebook: str) -> str:
    url = f"https://colab.research.google.com/github/{colab_repository()}/blob/main/release/{assignment}/{notebook}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def render_setup(packages: list[str]) -> str:
    pins = pinned_versions()
    missing = [name for name in packages if name.lower() not in pins]
    if missing:
        raise ValueError(f"packages {missing} are not pinned in {LOCK_FILE.name}")
    lines = [
        "# Setup (generated; do not edit). On Google Colab this installs what Colab lacks; elsewhere it changes",
        "# nothing. DATA_ROOT is where datasets are read from (and downloaded to when missing); FAST shrinks",
        "# the long computations for quick checks and for grading.",
        "import os",
        *(["import subprocess", "import sys"] if packages else []),
        "",
        "try:",
        "    import google.colab  # noqa: F401  (only Colab has it)",
        "    IN_COLAB = True",
        "except ImportError:",
        "    IN_COLAB = False",
    ]
    if packages:
        requirements = ", ".join(f'"{name}=={pins[name.lower()]}"' for name in packages)
        lines += ["if IN_COLAB:",
                  f'    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", {requirements}], check=True)']
    else:
        lines += ["# Colab already has every package this notebook needs, so nothing is installed."]
    lines += [
        'DATA_ROOT = os.environ.get("DP_COURSE_DATA", "./data")',
        'FAST = os.environ.get("DP_COURSE_FAST") == "1" or "NBGRADER_EXECUTION" in os.environ',
    ]
    return "\n".join(lines)


def render_helpers(module: str, names: list[str], imports: list[str]) -> str:
    """`imports`, then the source of each name: `name` from `course.lib.<module>`, or `other:name` from
    `course.lib.<other>` (for a validator a helper calls, say)."""
    parts = ["# Helpers (generated from the course library; read-only).", *imports]
    for entry in names:
        owner, _, name = entry.rpartition(":")
        library = helper_module(owner or module)
        parts.append("\n\n" + inspect.getsource(getattr(library, name)).rstrip())
    return "\n".join(parts)


def render(spec: dict, assignment: str, notebook: str) -> str:
    kind = spec.get("generated")
    if kind == "badge":
        return render_badge(assignment, notebook)
    if kind == "setup":
        return render_setup(spec.get("packages", []))
    if kind == "helpers":
        return render_helpers(spec["module"], spec["names"], spec.get("imports", []))
    raise ValueError(f"unknown generated cell kind {kind!r} in {assignment}/{notebook}")


def sync_notebook(path: Path, write: bool = True) -> list[str]:
    """Regenerate the generated cells of one source notebook; return the ids of cells that were out of date."""
    nb = nbformat.read(path, as_version=4)
    stale = []
    for cell in nb.cells:
        spec = cell.metadata.get(METADATA_KEY)
        if not spec or "generated" not in spec:
            continue
        text = render(spec, path.parent.name, path.name)
        if cell.source != text:
            stale.append(cell.get("id", "?"))
            cell.source = text
    if stale and write:
        nbformat.write(nb, path)
    return stale
