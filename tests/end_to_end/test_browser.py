"""Real tools: the course in JupyterLab, driven through headless Chromium with Playwright.

One JupyterLab (loopback only, random token, fast mode) serves a throw-away folder laid out like a course
(the repository's nbgrader configuration and source/) plus a student's copies of the release notebooks.
Every release notebook, with the reference solutions typed in, is opened and run with Run > Run All Cells;
no cell may end in an error, and a screenshot goes to build/screenshots/<id>.png. nbgrader's JupyterLab
extensions are checked where a user meets them: the Nbgrader menu, the student's Assignment List, the
notebook's Validate button and the instructor's formgrader.

Error outputs are read from the notebook model that JupyterLab renders (`window.jupyterapp`, exposed with
`--LabApp.expose_app_in_browser`), not from the DOM: JupyterLab 4.6 renders an error output with
`data-mime-type="application/vnd.jupyter.stderr"`, exactly like a warning or a tqdm bar written to stderr,
and no element carries `application/vnd.jupyter.error`. The deliberate-error test shows the difference is
seen. The saved notebook file is checked as well.

Needs the Python package `playwright` and Debian's /usr/bin/chromium (`scripts/install_browser.sh`);
without them the browser tests are skipped. Never run `playwright install`: the system browser is used.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.utils import is_grade, is_solution

from autograder.commands.demo import solved
from autograder.layout import CONFIG_FILE, SOURCE, assignments

pytestmark = pytest.mark.slow

from browser import browser_missing, free_port, open_chromium  # noqa: E402
from locations import REPO  # noqa: E402

# Globbed, not listed: new assignments are covered as soon as they are released.
RELEASED = sorted((REPO / "release").glob("*/*.ipynb"))
IDS = [p.parent.name for p in RELEASED]
SCREENSHOTS = REPO / "build" / "screenshots"
# Generous but bounded waits (seconds): other jobs may share the two cores.
SERVER_START = 180
PAGE_LOAD = 180
NOTEBOOK_RUN = 600
VALIDATE = 600
POLL = 1.0

# The notebook panel open on `path`, found among JupyterLab's main-area widgets.
FIND_PANEL = """
    let panel = null;
    for (const widget of jupyterapp.shell.widgets('main')) {
        if (widget.context && widget.context.path === path) { panel = widget; }
    }
"""
# What the kernel and the cells of the open notebook are doing, from the notebook model.
NOTEBOOK_STATE = (
    """async (path) => {"""
    + FIND_PANEL
    + """
    if (!panel) { return null; }
    await panel.context.ready;
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = panel.content.model.cells;
    const state = {kernel: kernel ? kernel.status : 'none', running: 0, unexecuted: 0, errors: []};
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') { continue; }
        if (cell.executionState === 'running') { state.running++; }
        if (cell.executionCount === null && cell.sharedModel.getSource().trim()) { state.unexecuted++; }
        for (const output of cell.outputs.toJSON()) {
            if (output.output_type === 'error') {
                state.errors.push({cell: i, ename: output.ename, evalue: output.evalue});
            }
        }
    }
    return state;
}"""
)
# Make cell `index` active and bring its last figure (else its last output) into view.
SHOW_CELL = (
    """([path, index]) => {"""
    + FIND_PANEL
    + """
    panel.content.activeCellIndex = index;
    const node = panel.content.widgets[index].node;
    const outputs = node.querySelectorAll('.jp-OutputArea-output');
    const figures = node.querySelectorAll('.jp-OutputArea-output img');
    const target = figures.length ? figures[figures.length - 1] : outputs.length ? outputs[outputs.length - 1] : node;
    target.scrollIntoView({block: 'center'});
    return node.innerText;
}"""
)
# The cell a screenshot should show: the last one with a figure, else the last one with any output.
SHOWCASE_CELL = (
    """(path) => {"""
    + FIND_PANEL
    + """
    const cells = panel.content.model.cells;
    let last = 0, figure = -1;
    for (let i = 0; i < cells.length; i++) {
        const outputs = cells.get(i).type === 'code' ? cells.get(i).outputs.toJSON() : [];
        if (outputs.length) { last = i; }
        if (outputs.some(output => output.data && output.data['image/png'])) { figure = i; }
    }
    return figure >= 0 ? figure : last;
}"""
)
SAVE_AND_SHUT_DOWN = (
    """async (path) => {"""
    + FIND_PANEL
    + """
    await panel.context.save();
    await panel.sessionContext.shutdown();
}"""
)


def _student_copy(nb):
    """A student's finished notebook: solutions typed in (solved) and every written answer filled."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and is_solution(cell):
            cell.source = "The answer, in the student's own words."
    return nb


def _deliberate_error_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(code)
        for code in (
            "import sys, warnings\nprint('progress goes to stderr', file=sys.stderr)\nwarnings.warn('only a warning')",
            "print('fine')",
            "raise ValueError('deliberate')",
            "print('never reached')",
        )
    ]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """The folder JupyterLab serves: the course's nbgrader configuration and sources (for formgrader) and
    an empty `student/` folder that tests fill."""
    root = tmp_path_factory.mktemp("lab") / "course"
    (root / "autograder" / "pipeline").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copy(CONFIG_FILE, root / "autograder" / "pipeline" / "nbgrader_config.py")
    shutil.copytree(SOURCE, root / "source")
    (root / "student").mkdir()
    return root


def _write_settings(settings: Path):
    """JupyterLab user settings: keep every cell in the DOM (screenshots, scrolling) and ask for no news."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false", "checkForUpdates": false}',  # noqa: E501
    }
    for name, text in files.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(text)


@pytest.fixture(scope="module")
def lab(course):
    """A JupyterLab server on 127.0.0.1 with a random token; yields its base URL and token."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    state = course.parent
    for name in ("config", "data", "runtime", "ipython", "settings", "workspaces", "exchange"):
        (state / name).mkdir()
    _write_settings(state / "settings")
    # Students do not use nbgrader's exchange; point it at an empty folder so the Assignment List can load.
    (state / "config" / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.Exchange.root = {str(state / 'exchange')!r}\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("MPLBACKEND", "JUPYTER_PATH")}
    env.update(
        DP_COURSE_FAST="1",
        DP_COURSE_DATA=os.environ.get("DP_COURSE_DATA", str(REPO / "data")),
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_DATA_DIR=str(state / "data"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        IPYTHONDIR=str(state / "ipython"),
        # nbgrader runs this environment's scripts (alembic) by name.
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    port, token = free_port(), secrets.token_hex(24)
    log = state / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={course}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(log, "w") as log_file:
        # cwd = the course root, where nbgrader's formgrader looks for nbgrader_config.py.
        server = subprocess.Popen(
            command, cwd=course, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(server, f"{base}/api/status", token, log)
        yield base, token
    finally:
        server.terminate()  # jupyter_server shuts its kernels down on SIGTERM
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)


def _wait_until_answering(server, url: str, token: str, log: Path):
    deadline = time.monotonic() + SERVER_START
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(POLL)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = open_chromium(playwright, profile, 1400, 1000)
        context.set_default_timeout(PAGE_LOAD * 1000)
        yield context
        context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


def _open_lab(page, lab, path: str = ""):
    """Open JupyterLab with a fresh workspace (`reset`), showing `path` when given."""
    base, token = lab
    page.goto(f"{base}/lab{'/tree/' + path if path else ''}?reset&token={token}")
    page.wait_for_selector("#jp-main-dock-panel")


def _wait_for_kernel(page, path: str):
    deadline, state = time.monotonic() + PAGE_LOAD, None
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE, path)
        if state and state["kernel"] == "idle":
            return state
        time.sleep(POLL)
    pytest.fail(f"{path}: no idle kernel after {PAGE_LOAD} s (last state {state})")


def _menu(page, menu: str, command: str):
    """Click main-menu `menu`, then its item for JupyterLab command `command`."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{menu}$")).click()
    page.click(f".lm-Menu-item[data-command='{command}']")


def _run_all_cells(page, path: str) -> dict:
    """Run > Run All Cells, then wait until nothing runs and the kernel is idle; return the final state."""
    before = _wait_for_kernel(page, path)
    _menu(page, "Run", "runmenu:run-all")
    deadline, settled = time.monotonic() + NOTEBOOK_RUN, 0
    state = before
    while time.monotonic() < deadline:
        time.sleep(POLL)
        state = page.evaluate(NOTEBOOK_STATE, path)
        if state["kernel"] == "dead":
            pytest.fail(f"{path}: kernel {state['kernel']} while running ({state})")
        started = state["unexecuted"] < before["unexecuted"] or state["errors"]
        quiet = state["kernel"] == "idle" and state["running"] == 0
        settled = settled + 1 if started and quiet else 0
        if settled >= 2:  # idle twice in a row: not a pause between two cells
            return state
    pytest.fail(f"{path}: still running after {NOTEBOOK_RUN} s ({state})")


def _screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(target))
    return target


def _saved_errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [
        f"cell {i}: {o.ename}: {o.evalue}"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


def test_an_error_output_is_detected(page, lab, course):
    """The check itself: an exception is found, a warning and text on stderr are not, Run All stops there."""
    path = "student/deliberate_error.ipynb"
    nbformat.write(_deliberate_error_notebook(), course / path)
    _open_lab(page, lab, path)
    state = _run_all_cells(page, path)
    assert state["errors"] == [{"cell": 2, "ename": "ValueError", "evalue": "deliberate"}]
    assert state["unexecuted"] == 1, "Run All should stop at the failing cell"
    assert "ValueError: deliberate" in page.evaluate(SHOW_CELL, [path, 2])
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert "progress goes to stderr" in stderr.first.inner_text()
    _screenshot(page, "deliberate-error")
    page.evaluate(SAVE_AND_SHUT_DOWN, path)
    assert _saved_errors(course / path) == ["cell 2: ValueError: deliberate"]


@pytest.mark.parametrize("release", RELEASED, ids=IDS)
def test_solved_notebook_runs_all_cells_in_jupyterlab(page, lab, course, release):
    path = f"student/{release.parent.name}/{release.name}"
    (course / path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(_student_copy(solved(release.parent.name, release.name)), course / path)
    _open_lab(page, lab, path)
    state = _run_all_cells(page, path)
    shown = state["errors"][0]["cell"] if state["errors"] else page.evaluate(SHOWCASE_CELL, path)
    page.evaluate(SHOW_CELL, [path, shown])
    shot = _screenshot(page, release.parent.name)
    assert state["errors"] == [], f"error outputs (screenshot {shot}): {state['errors']}"
    assert state["unexecuted"] == 0, f"{state['unexecuted']} code cells did not run (screenshot {shot})"
    page.evaluate(SAVE_AND_SHUT_DOWN, path)
    assert _saved_errors(course / path) == []


def test_nbgrader_menu_offers_the_student_and_instructor_tools(page, lab):
    _open_lab(page, lab)
    page.locator(".lm-MenuBar-item", has_text=re.compile("^Nbgrader$")).click()
    items = page.locator(".lm-Menu-item[data-command^='nbgrader:']")
    commands = {items.nth(i).get_attribute("data-command") for i in range(items.count())}
    assert {"nbgrader:open-assignment-list", "nbgrader:open-formgrader"} <= commands
    page.keyboard.press("Escape")


def test_assignment_list_loads(page, lab):
    """The student's Assignment List (Nbgrader > Assignment List) gets an answer from its server extension."""
    _open_lab(page, lab)
    _menu(page, "Nbgrader", "nbgrader:open-assignment-list")
    panel = page.locator("#nbgrader-assignment-list")
    panel.locator("#released_assignments_list_placeholder").wait_for(state="visible")
    assert panel.locator("#released_assignments_list_error").is_hidden()
    assert panel.locator("#released_assignments_list_loading").is_hidden()
    _screenshot(page, "nbgrader-assignment-list")


def test_formgrader_lists_the_course_assignments(page, lab, course):
    """The instructor's formgrader (Nbgrader > Formgrader) reads the course configuration and its sources."""
    _open_lab(page, lab)
    _menu(page, "Nbgrader", "nbgrader:open-formgrader")
    formgrader = page.frame_locator("#formgrader-iframe iframe")
    for assignment in assignments(course / "source"):
        formgrader.get_by_text(assignment, exact=True).wait_for(state="visible")
    assert formgrader.get_by_text("Loading, please wait...").count() == 0
    _screenshot(page, "nbgrader-formgrader")


def test_validate_button_passes_a_finished_notebook(page, lab, course):
    """The notebook toolbar's Validate button (nbgrader) runs the notebook and reports success."""
    release = RELEASED[0]
    path = f"student/validate/{release.name}"
    (course / path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(_student_copy(solved(release.parent.name, release.name)), course / path)
    _open_lab(page, lab, path)
    _wait_for_kernel(page, path)
    page.click(".jp-NotebookPanel-toolbar .validate-button")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible", timeout=VALIDATE * 1000)
    _screenshot(page, "nbgrader-validate")
    assert dialog.locator(".validation-success").count() == 1, dialog.inner_text()
    assert "passes all the tests" in dialog.inner_text()


def _assigned_names(code: str) -> set[str]:
    """Names a cell binds (assignments, loops, imports, definitions); IPython magics are skipped."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


@pytest.mark.parametrize("release", RELEASED, ids=IDS)
def test_untouched_release_fails_only_in_missing_student_code(release, tmp_path, monkeypatch):
    """Handed out as is, a notebook fails only because student code is missing: an unimplemented stub is
    called (NotImplementedError, in a solution cell, a visible test or a read-only cell using the student's
    function), or a cell uses a name that an earlier cell, failing for that reason, did not get to define
    (NameError). Any other error is a bug in a read-only cell. No browser needed."""
    monkeypatch.setenv("DP_COURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(release, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    undefined, failed_tests, unexplained = set(), 0, []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        for error in errors:
            missing = re.fullmatch(r"name '(\w+)' is not defined", error.evalue)
            if not (
                error.ename == "NotImplementedError"
                or error.ename == "NameError"
                and missing
                and missing.group(1) in undefined
            ):
                unexplained.append(
                    f"{cell.metadata.get('nbgrader', {}).get('grade_id', cell.get('id'))}: "
                    f"{error.ename}: {error.evalue}"
                )
        if errors:
            undefined |= _assigned_names(cell.source)
            failed_tests += bool(is_grade(cell))
    assert failed_tests, "the untouched release should fail its visible tests"
    assert not unexplained, f"errors not caused by missing student code: {unexplained}"
