"""The rule of docs/ARCHITECTURE.md: autograder/'s folders in layers, each importing only from the layers below
it, and course/ importing nothing of autograder/."""

from __future__ import annotations

import ast
from pathlib import Path

from locations import REPO

# Highest first. The top-level modules settings, layout and imports are the base every folder may use;
# kernel_side, copied alone into every sandbox, imports nothing of the grader at all.
LAYERS = ["commands", "batch", "pipeline", "sandbox", "intake", "term", "lms", "sinks", "(base)", "kernel_side"]
TOP_LEVEL = {"__main__": "commands", "settings": "(base)", "layout": "(base)", "imports": "(base)"}


def _folder(module: str) -> str | None:
    """The layer of an autograder module ("autograder.batch.cluster" -> "batch"), None outside autograder."""
    parts = module.split(".")
    if parts[0] != "autograder" or len(parts) == 1:
        return None if parts[0] != "autograder" else "(base)"
    return TOP_LEVEL.get(parts[1], parts[1])


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def arrows() -> set[tuple[str, str, str, str]]:
    """(importing folder, imported folder, importing module, imported module) between two folders."""
    found = set()
    for path in (REPO / "autograder").rglob("*.py"):
        source = _module(path)
        for target in _imports(path):
            low = _folder(target)
            high = _folder(source)
            if low is not None and low != high and target != "autograder":
                found.add((high, low, source, target))
    return found


def test_every_folder_is_a_layer():
    folders = {p.name for p in (REPO / "autograder").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(LAYERS) - {"(base)"}
    modules = {p.stem for p in (REPO / "autograder").glob("*.py")} - {"__init__"}
    assert modules == set(TOP_LEVEL)


def test_folders_import_only_from_the_layers_below():
    upward = sorted(
        f"{source} -> {target}" for high, low, source, target in arrows() if LAYERS.index(high) >= LAYERS.index(low)
    )
    assert upward == [], "imports against docs/ARCHITECTURE.md's layers"


def test_the_drawing_stays_readable():
    """Under 40 arrows between folders, as docs/ARCHITECTURE.md draws them."""
    assert len({(high, low) for high, low, _, _ in arrows()}) < 40


def test_the_kernel_side_and_the_course_import_nothing_of_the_grader():
    for folder, allowed in (("autograder/kernel_side", "autograder.kernel_side"), ("course", None)):
        for path in (REPO / folder).rglob("*.py"):
            grader = {m for m in _imports(path) if m == "autograder" or m.startswith("autograder.")}
            assert all(allowed and m.startswith(allowed) for m in grader), (path, grader)
