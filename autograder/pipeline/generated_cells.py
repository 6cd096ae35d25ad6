"""Cells that are generated, never hand-written: the Colab badge, the setup cell and library helper cells.

A source notebook marks such a cell with metadata `{"dp_course": {"generated": KIND, ...}}`:

- `badge`: an Open-in-Colab badge pointing at the notebook's release path in the course's public GitHub
  repository (course.toml: [course] public_repository, and public_branch, default main). Without a public
  repository there is no badge: the cell is removed, and it comes back, first, once one is set.
- `setup`: the first code cell; on Colab it pip-installs `packages` (pinned from requirements.lock), and
  everywhere it defines DATA_ROOT (from DP_COURSE_DATA) and FAST (DP_COURSE_FAST or nbgrader's autograding).
- `helpers`: read-only code shown to students, taken verbatim from the course's modules: `names` lists what is
  shown, each `name` from `module`, or `other:name` from module `other` (a validator a helper calls, say).
  Modules are looked up in `course.shown` (helpers shown to students), then in `course.lib` (graded
  references); a module name exists in only one of them. Only public names may be shown. The cell's import
  lines are derived from the modules' own imports: exactly those the shown code uses. Names the shown code
  takes from the `course` package itself, or from its own module, must be shown in this cell or an earlier
  one, so an import of `course` never reaches a notebook and a cell never uses a name it does not define.

`sync_notebook` rewrites these cells from the library; `python -m autograder release` runs it before
releasing, and a test checks that the committed source notebooks are in sync.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
import tomllib
import types
from collections.abc import Set
from pathlib import Path

import nbformat

from autograder.layout import LOCK_FILE, REPO

METADATA_KEY = "dp_course"
HELPERS_PACKAGES = ("course.shown", "course.lib")


def helper_module(name: str) -> types.ModuleType:
    """The module `name` of the shown helpers (`course.shown`) or of the graded references (`course.lib`)."""
    found = [f"{package}.{name}" for package in HELPERS_PACKAGES if importlib.util.find_spec(f"{package}.{name}")]
    if len(found) != 1:
        raise ValueError(f"module {name!r} must exist in exactly one of {HELPERS_PACKAGES}, found {found}")
    return importlib.import_module(found[0])


COURSE_CONFIG = REPO / "course.toml"
_GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,100}")
BADGE_ID = "generated-badge"


def public_repository(config: Path = COURSE_CONFIG) -> tuple[str, str] | None:
    """(GitHub `owner/name`, branch) of the course's public copy, which Colab badges open, from course.toml's
    [course] public_repository and public_branch (default main); None when no public repository is set."""
    if not config.exists():
        return None
    with open(config, "rb") as file:
        course = tomllib.load(file).get("course", {})
    repository, branch = course.get("public_repository"), course.get("public_branch", "main")
    if repository is None:
        return None
    if not isinstance(repository, str) or not _GITHUB_REPOSITORY.fullmatch(repository):
        raise ValueError(f"{config}: [course] public_repository must be a GitHub 'owner/name', not {repository!r}")
    if not isinstance(branch, str) or not _BRANCH.fullmatch(branch) or ".." in branch:
        raise ValueError(f"{config}: [course] public_branch must be a branch name, not {branch!r}")
    return repository, branch


def pinned_versions(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """Package name (lower case) -> exact version, from the `name==version` lines of the lock file."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def render_badge(assignment: str, notebook: str, public: tuple[str, str]) -> str:
    repository, branch = public
    url = f"https://colab.research.google.com/github/{repository}/blob/{branch}/release/{assignment}/{notebook}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def badge_cell(assignment: str, notebook: str, public: tuple[str, str]) -> nbformat.NotebookNode:
    """The badge as the first cell of a source notebook: locked, so students cannot edit it."""
    cell = nbformat.v4.new_markdown_cell(render_badge(assignment, notebook, public), id=BADGE_ID)
    cell.metadata = {
        METADATA_KEY: {"generated": "badge"},
        "nbgrader": {
            "grade": False,
            "grade_id": BADGE_ID,
            "locked": True,
            "schema_version": 3,
            "solution": False,
            "task": False,
        },
    }
    return cell


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
        lines += [
            "if IN_COLAB:",
            f'    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", {requirements}], check=True)',
        ]
    else:
        lines += ["# Colab already has every package this notebook needs, so nothing is installed."]
    lines += [
        'DATA_ROOT = os.environ.get("DP_COURSE_DATA", "./data")',
        'FAST = os.environ.get("DP_COURSE_FAST") == "1" or "NBGRADER_EXECUTION" in os.environ',
    ]
    return "\n".join(lines)


class ShownCode:
    """One name shown in a helper cell: its module, its source text and the module-level names it uses."""

    def __init__(self, module, name: str):
        self.module, self.name = module, name
        self.source = _definition_source(module, name)
        tree = ast.parse(self.source)
        self.uses = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _definition_source(module, name: str) -> str:
    """The source of `name` in `module`: a function or class via inspect, a constant as its assignment (with
    the `#:` comment lines above it)."""
    value = getattr(module, name, None)
    if inspect.isfunction(value) or inspect.isclass(value):
        return inspect.getsource(value).rstrip()
    source = inspect.getsource(module)
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            start = node.lineno - 1
            while start > 0 and lines[start - 1].startswith("#:"):
                start -= 1
            return "\n".join(lines[start : node.end_lineno])
    raise ValueError(f"{module.__name__} has no function, class or constant {name!r} to show")


def _module_imports(module) -> dict[str, tuple[str, str | None, str | None]]:
    """Each name a module's top-level imports bind -> (imported module, imported name or None, alias or None)."""
    bound: dict[str, tuple[str, str | None, str | None]] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = (alias.name, None, alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            source = ("." * node.level) + (node.module or "")
            for alias in node.names:
                bound[alias.asname or alias.name] = (source, alias.name, alias.asname)
    return bound


def _module_globals(module) -> set[str]:
    """The names a module defines at top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_course(source: str) -> bool:
    return source.startswith(".") or source == "course" or source.startswith("course.")


def _import_lines(imports: set[tuple[str, str | None, str | None]]) -> list[str]:
    """Import statements for `imports`, standard library first, then the rest, each group sorted."""
    groups: dict[bool, list[str]] = {True: [], False: []}
    plain = sorted(item for item in imports if item[1] is None)
    for source, _, alias in plain:
        groups[source.split(".")[0] in sys.stdlib_module_names].append(
            f"import {source}" + (f" as {alias}" if alias else "")
        )
    by_module: dict[str, list[str]] = {}
    for source, name, alias in imports:
        if name is not None:
            by_module.setdefault(source, []).append(name + (f" as {alias}" if alias else ""))
    for source in sorted(by_module):
        groups[source.split(".")[0] in sys.stdlib_module_names].append(
            f"from {source} import {', '.join(sorted(by_module[source]))}"
        )
    lines = groups[True]
    if groups[True] and groups[False]:
        lines = lines + [""]
    return lines + groups[False]


def render_helpers(module: str, names: list[str], shown_before: Set[str] = frozenset()) -> str:
    """The import lines the shown code needs, then the source of each of `names` (`name` from `module`, or
    `other:name` from module `other`). `shown_before`: names earlier helper cells of the notebook define."""
    shown = []
    for entry in names:
        owner, _, name = entry.rpartition(":")
        if name.startswith("_"):
            raise ValueError(f"{entry!r}: only public names are shown in a notebook; give it a public name")
        shown.append(ShownCode(helper_module(owner or module), name))
    defined = set(shown_before) | {code.name for code in shown}
    imports = set()
    for code in shown:
        bound, own = _module_imports(code.module), _module_globals(code.module)
        for used in sorted(code.uses):
            if used in bound:
                source, imported, alias = bound[used]
                if not _is_course(source):
                    imports.add((source, imported, alias))
                elif used not in defined:
                    raise ValueError(f"{code.name} uses {used!r} from {source}: show it in this cell or an earlier one")
            elif used in own and used not in defined:
                raise ValueError(
                    f"{code.name} uses {used!r} of {code.module.__name__}: show it in this cell or an earlier one"
                )
    parts = ["# Helpers (generated from the course library; read-only).", *_import_lines(imports)]
    parts += ["\n\n" + code.source for code in shown]
    return "\n".join(parts)


def render(
    spec: dict,
    assignment: str,
    notebook: str,
    shown_before: Set[str] = frozenset(),
    public: tuple[str, str] | None = None,
) -> str:
    kind = spec.get("generated")
    if kind == "badge":
        if public is None:
            raise ValueError(f"{assignment}/{notebook}: a badge cell needs [course] public_repository")
        return render_badge(assignment, notebook, public)
    if kind == "setup":
        return render_setup(spec.get("packages", []))
    if kind == "helpers":
        if "imports" in spec:
            raise ValueError(
                f"{assignment}/{notebook}: a helper cell's imports are derived from its modules; "
                "remove the 'imports' metadata"
            )
        return render_helpers(spec["module"], spec["names"], shown_before)
    raise ValueError(f"unknown generated cell kind {kind!r} in {assignment}/{notebook}")


def sync_notebook(path: Path, write: bool = True, config: Path = COURSE_CONFIG) -> list[str]:
    """Regenerate the generated cells of one source notebook; return the ids of cells that were out of date
    (or added, or removed: the badge follows course.toml's public repository)."""
    nb = nbformat.read(path, as_version=4)
    public = public_repository(config)
    stale = []
    badges = [c for c in nb.cells if c.metadata.get(METADATA_KEY, {}).get("generated") == "badge"]
    if public is None and badges:
        nb.cells = [c for c in nb.cells if c not in badges]
        stale += [c.get("id", "?") for c in badges]
    elif public is not None and not badges:
        nb.cells.insert(0, badge_cell(path.parent.name, path.name, public))
        stale.append(BADGE_ID)
    shown: set[str] = set()  # names that earlier helper cells define
    for cell in nb.cells:
        spec = cell.metadata.get(METADATA_KEY)
        if not spec or "generated" not in spec:
            continue
        text = render(spec, path.parent.name, path.name, shown, public)
        if spec["generated"] == "helpers":
            shown |= {entry.rpartition(":")[2] for entry in spec["names"]}
        if cell.source != text:
            stale.append(cell.get("id", "?"))
            cell.source = text
    if stale and write:
        nbformat.write(nb, path)
    return stale
