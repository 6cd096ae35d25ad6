"""Colab parity without a browser: every release notebook is self-contained and its generated setup cell
behaves on Colab (installs exactly the pinned packages Colab lacks) and elsewhere (changes nothing).

The setup cell of each notebook runs in a fresh interpreter (`python -I`) with `subprocess`, `os.system` and
`pip` replaced by recorders, so nothing is ever installed; on "Colab" a fake `google.colab` module is
importable, elsewhere importing it fails as it does off Colab.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from locations import REPO  # noqa: E402

from autograder.pipeline.generated_cells import (
    BADGE_ID,
    METADATA_KEY,
    pinned_versions,
    public_repository,
    render_setup,
    sync_notebook,
)

# Globbed, not listed: new assignments are covered as soon as they are released.
RELEASED = sorted((REPO / "release").glob("*/*.ipynb"))
IDS = [f"{p.parent.name}/{p.name}" for p in RELEASED]

# What a Colab runtime already has (distribution names); the setup cell must never reinstall these.
COLAB_PREINSTALLED = {"torch", "torchvision", "numpy", "scipy", "matplotlib", "tqdm", "scikit-learn", "pandas"}
# Top-level modules a student notebook may import (spec, section 1, rule 1), with the distribution that
# provides each; None marks modules that come with the runtime itself (the Jupyter kernel, Colab).
ALLOWED_IMPORTS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "opacus": "opacus",
    "medmnist": "medmnist",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "scipy": "scipy",
    "tqdm": "tqdm",
    "IPython": None,
    "google": None,
}
# Names the setup cell is documented to define (plus the modules it imports).
SETUP_NAMES = {"IN_COLAB", "DATA_ROOT", "FAST"}

# Runs one setup cell and prints what it did as JSON. argv: setup-cell file, "colab" or "local".
DRIVER = r"""
import json, os, subprocess, sys, types

setup_file, where = sys.argv[1], sys.argv[2]
calls = []

def record(kind):
    def recorder(*args, **kwargs):
        argv = args[0] if args else kwargs.get("args")
        calls.append({"kind": kind, "argv": [str(a) for a in argv] if isinstance(argv, (list, tuple)) else str(argv),
                      "check": kwargs.get("check")})
        return subprocess.CompletedProcess(argv, 0, "", "")
    return recorder

subprocess.run = record("subprocess.run")
for name in ("call", "check_call", "check_output", "Popen", "getoutput", "getstatusoutput"):
    setattr(subprocess, name, record("subprocess." + name))
os.system = record("os.system")
fake_pip = types.ModuleType("pip")
fake_pip.main = record("pip.main")
sys.modules["pip"] = fake_pip

if where == "colab":
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    sys.modules["google"], sys.modules["google.colab"] = google, google.colab
else:
    sys.modules["google.colab"] = None  # makes `import google.colab` raise ImportError, as off Colab

def files():
    return sorted(os.path.relpath(os.path.join(d, n)) for d, ds, fs in os.walk(".") for n in ds + fs)

env_before, path_before, files_before = dict(os.environ), list(sys.path), files()
namespace = {"__name__": "__main__"}
exec(compile(open(setup_file).read(), "<setup cell>", "exec"), namespace)
print(json.dumps({
    "calls": calls,
    "executable": sys.executable,
    "names": sorted(n for n in namespace if not n.startswith("__")),
    "values": {n: namespace.get(n) for n in ("IN_COLAB", "DATA_ROOT", "FAST")},
    "env_changes": sorted(k for k in set(env_before) | set(os.environ) if env_before.get(k) != os.environ.get(k)),
    "sys_path_changed": sys.path != path_before,
    "new_files": sorted(set(files()) - set(files_before)),
}))
"""


def _setup_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def _packages(nb) -> list[str]:
    return _setup_cell(nb).metadata.get(METADATA_KEY, {}).get("packages", [])


def _pinned_requirements(packages) -> list[str]:
    pins = pinned_versions()
    return [f"{name}=={pins[name.lower()]}" for name in packages]


def _run_setup(code: str, where: str, tmp_path: Path, **env) -> dict:
    """Execute setup-cell `code` in a fresh interpreter whose cwd is an empty folder; env holds only
    PATH, HOME and `env` (so DP_COURSE_* and NBGRADER_EXECUTION are unset unless given)."""
    (tmp_path / "setup.py").write_text(code)
    (tmp_path / "driver.py").write_text(DRIVER)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "driver.py"), str(tmp_path / "setup.py"), where],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _pip_installs(report: dict) -> list[list[str]]:
    """The requirement lists of the pip installs the setup cell asked for; fails on any other process."""
    installs = []
    for call in report["calls"]:
        argv = call["argv"]
        assert call["kind"] == "subprocess.run" and isinstance(argv, list), f"unexpected process: {call}"
        assert argv[:4] == [report["executable"], "-m", "pip", "install"], (
            f"pip must install into the kernel's own interpreter: {argv}"
        )
        assert call["check"] is True, "a failed install must stop the notebook (check=True)"
        installs.append([a for a in argv[4:] if not a.startswith("-")])
    return installs


def _assert_changes_nothing(report: dict):
    assert report["env_changes"] == [], "the setup cell must not change the environment"
    assert not report["sys_path_changed"], "the setup cell must not change sys.path"
    assert report["new_files"] == [], "the setup cell must not create files"
    assert set(report["names"]) <= SETUP_NAMES | {"os", "subprocess", "sys", "google"}, report["names"]


def test_release_notebooks_are_found():
    assert RELEASED, "no release/<id>/<id>.ipynb found"


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_setup_on_colab_installs_exactly_the_pinned_missing_packages(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    packages = _packages(nb)
    assert not {p.lower() for p in packages} & COLAB_PREINSTALLED, "Colab already has these"
    report = _run_setup(
        _setup_cell(nb).source, "colab", tmp_path, DP_COURSE_DATA="/content/dp-data", DP_COURSE_FAST="1"
    )
    expected = [_pinned_requirements(packages)] if packages else []
    assert _pip_installs(report) == expected
    assert report["values"] == {"IN_COLAB": True, "DATA_ROOT": "/content/dp-data", "FAST": True}
    _assert_changes_nothing(report)


def test_setup_generator_pins_what_colab_lacks(tmp_path):
    """The Colab branch itself, for a notebook that needs packages (whether or not a released one does)."""
    report = _run_setup(render_setup(["opacus", "medmnist"]), "colab", tmp_path)
    assert _pip_installs(report) == [_pinned_requirements(["opacus", "medmnist"])]
    assert all(re.fullmatch(r"[a-z]+==\d[\w.+]*", r) for r in _pip_installs(report)[0])
    assert report["values"] == {"IN_COLAB": True, "DATA_ROOT": "./data", "FAST": False}


@pytest.mark.parametrize(
    "env, data_root, fast",
    [
        ({}, "./data", False),
        ({"DP_COURSE_DATA": "/tmp/elsewhere", "DP_COURSE_FAST": "1"}, "/tmp/elsewhere", True),
        ({"DP_COURSE_FAST": "0"}, "./data", False),
        ({"NBGRADER_EXECUTION": "autograde"}, "./data", True),
    ],
    ids=["defaults", "env-set", "fast-off", "nbgrader"],
)
@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_setup_elsewhere_installs_nothing_and_changes_nothing(path, env, data_root, fast, tmp_path):
    report = _run_setup(_setup_cell(nbformat.read(path, as_version=4)).source, "local", tmp_path, **env)
    assert report["calls"] == [], "off Colab nothing may be installed or run"
    assert report["values"] == {"IN_COLAB": False, "DATA_ROOT": data_root, "FAST": fast}
    _assert_changes_nothing(report)


def _imported_modules(nb) -> set[str]:
    """Top-level names of every module a code cell imports (relative imports come back as '.')."""
    modules = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        # IPython magics and shell escapes are not Python; the magics that load local files are checked apart.
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                modules.add("." if node.level else node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_notebook_needs_only_public_packages(path):
    nb = nbformat.read(path, as_version=4)
    modules = _imported_modules(nb)
    local = sorted(m for m in modules if m not in ALLOWED_IMPORTS and m not in sys.stdlib_module_names)
    assert not local, f"imports that are neither allowed packages nor the standard library: {local}"
    loaders = [
        line
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if re.match(r"\s*%+(run|load|writefile)\b", line)
    ]
    assert not loaders, f"magics that need local files: {loaders}"


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_setup_installs_what_the_notebook_imports_and_colab_lacks(path):
    nb = nbformat.read(path, as_version=4)
    needed = {ALLOWED_IMPORTS[m] for m in _imported_modules(nb) if ALLOWED_IMPORTS.get(m)} - COLAB_PREINSTALLED
    assert {p.lower() for p in _packages(nb)} == needed


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_kernelspec_is_generic_python3(path):
    kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python", kernelspec


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_badge_opens_this_notebook_on_colab(path):
    """With course.toml's public repository, the first cell opens this very notebook there on Colab; without
    one, no cell links to Colab at all (a badge to a placeholder would open someone else's repository)."""
    nb = nbformat.read(path, as_version=4)
    public = public_repository()
    if public is None:
        assert not [c for c in nb.cells if "colab.research.google.com" in c.source]
        return
    badge = nb.cells[0]
    assert badge.cell_type == "markdown"
    links = re.findall(r"\]\((https://[^)\s]+)\)", badge.source)
    assert links[0] == "https://colab.research.google.com/assets/colab-badge.svg"
    relative = path.relative_to(REPO).as_posix()
    assert links[1] == f"https://colab.research.google.com/github/{public[0]}/blob/{public[1]}/{relative}"
    assert relative == f"release/{path.parent.name}/{path.parent.name}.ipynb"


def test_the_badge_follows_the_public_repository_setting(tmp_path):
    """Setting [course] public_repository adds a locked badge cell first; removing it removes the badge; a value
    that is no GitHub repository is refused."""
    source = REPO / "source" / "01_databases" / "01_databases.ipynb"
    notebook = tmp_path / "01_databases" / "01_databases.ipynb"
    notebook.parent.mkdir()
    notebook.write_bytes(source.read_bytes())
    config = tmp_path / "course.toml"
    config.write_text('[course]\npublic_repository = "example-org/dp-course"\npublic_branch = "spring-2027"\n')
    sync_notebook(notebook, config=config)
    nb = nbformat.read(notebook, as_version=4)
    badge = nb.cells[0]
    assert badge.id == BADGE_ID and badge.metadata.nbgrader.locked and badge.metadata.nbgrader.grade_id == BADGE_ID
    assert (
        "https://colab.research.google.com/github/example-org/dp-course/blob/spring-2027/release/01_databases/"
        "01_databases.ipynb"
    ) in badge.source
    assert sync_notebook(notebook, config=config) == []  # in sync: nothing added twice
    config.write_text("[course]\n")
    assert sync_notebook(notebook, config=config) == [BADGE_ID]
    assert not [c for c in nbformat.read(notebook, as_version=4).cells if "colab.research.google.com" in c.source]
    for bad in ('"../../evil"', '"javascript:alert(1)//x"', "42", '"owner/name) [x](https://evil.example"'):
        config.write_text(f"[course]\npublic_repository = {bad}\n")
        with pytest.raises(ValueError, match="public_repository"):
            sync_notebook(notebook, config=config)


@pytest.mark.parametrize("path", RELEASED, ids=IDS)
def test_setup_is_the_first_code_cell(path):
    """DATA_ROOT and FAST exist before any other code runs, and on Colab packages arrive before imports."""
    cell = _setup_cell(nbformat.read(path, as_version=4))
    assert cell.metadata.get(METADATA_KEY, {}).get("generated") == "setup"
