"""nbgrader's feedback pages, extended: a summary of where the student stands, local MathJax, one policy.

`FeedbackExporter` is the exporter of nbgrader's GenerateFeedback (autograder/pipeline/nbgrader_config.py). It
renders nbgrader's own feedback template through a child template (feedback_templates/dp_feedback) that adds, at
the top of the page: the automatic points earned of possible, each written answer "awaiting grading" (or its score
once graded), the late penalty and its reason, and the failed cells with their reasons, each linking to the cell.
A written answer that nobody graded yet is never shown as 0: nbgrader's template prints `grade.score`, which is 0
for it.

Scores come from the gradebook (the grader's own record, which GetGrades reads), never from the notebook. Reasons
and the late penalty come from the grader's records as well: OUT/grades.csv and OUT/late.csv when the page is made
again from an OUT folder (`regenerate`), the grader's verdict file while a submission is graded, and otherwise the
cell's error message. Every string is escaped; comments from the gradebook go through autograder.sinks.sanitise.

Math is typeset by a copy of MathJax 2 (the jupyter-server-mathjax package) that `ship_mathjax` puts once in each
output folder, at OUT/static/mathjax; pages load it by a relative path, so they read the same with and without a
network, from a file or from a server. Their Content-Security-Policy allows scripts, styles and fonts from the
page's own origin only, and images from data: URLs.

The exporter also keeps its compiled templates for the whole process: nbgrader makes a new HTMLExporter, and so
a new Jinja environment, for every submission, and Jinja would compile the templates again each time (about 0.3 s
of the 0.7 s a page costs). Jinja's bytecode cache keys each compiled template by its name and a checksum of its
source, so a template that changes on disk is compiled again.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import nbformat
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from traitlets import Unicode

from autograder.layout import OutFolder

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("feedback_templates")
TEMPLATE_NAME = "dp_feedback"
# OUT/static/mathjax, seen from OUT/feedback/<student>/<assignment>/<notebook>.html
MATHJAX_IN_OUT = Path("static") / "mathjax"
MATHJAX_FROM_FEEDBACK = "../../../static/mathjax"
MATHJAX_CONFIG = "dp-course-config.js"
# Loaded before MathJax.js: its settings as a script file, so that the policy needs no inline script. The
# settings are nbconvert's (its mathjax.html.j2), with the HTML-CSS output on the shipped STIX-Web fonts; the
# Safe extension (in the config= of the page's script URL) keeps \href and \style in a student's TeX inert.
MATHJAX_SETTINGS = """window.MathJax = {
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  displayAlign: "center",
  messageStyle: "none",
  showMathMenu: false,
  "HTML-CSS": {availableFonts: ["STIX-Web"], preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}}
};
"""
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


class _ProcessBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates in memory, shared by every exporter of this process."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = _ProcessBytecodeCache()


@dataclass
class CellStanding:
    """One graded (or answer) cell as the summary and its heading show it."""

    grade_id: str
    label: str  # "Test cell", "Written response", "Coding free-response", "Task", "Answer"
    manual: bool
    points: float
    score: float | None  # None: a written answer awaiting grading
    reason: str = ""
    comment_html: str = ""  # sanitised

    @property
    def anchor(self) -> str:
        return f"cell-{self.grade_id}"

    @property
    def awaiting(self) -> bool:
        return self.score is None

    @property
    def failed(self) -> bool:
        return not self.manual and self.score is not None and self.score < self.points

    @property
    def score_text(self) -> str:
        if self.awaiting:
            return f"awaiting grading ({_points(self.points)})"
        return f"Score: {self.score:g} / {self.points:g}"

    @property
    def css(self) -> str:
        return "awaiting" if self.awaiting else "lost" if (self.score or 0.0) < self.points else "score"


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTMLExporter on the course's feedback template, with the process's compiled templates."""

    mathjax_folder = Unicode(
        MATHJAX_FROM_FEEDBACK, help="MathJax's folder, relative to the page (see ship_mathjax)"
    ).tag(config=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A heading's anchor is its text: a student's heading "cell-<grade_id>" would take the summary's link to
        # that graded cell. Headings get none; the graded cells keep theirs.
        self.exclude_anchor_links = True
        # GenerateFeedback names nbgrader's template ('feedback'); the course's extends it.
        nbgrader_templates = _nbgrader_templates()
        self.extra_template_basedirs = [
            str(TEMPLATES_DIR),
            *(d for d in self.extra_template_basedirs if d not in (str(TEMPLATES_DIR), nbgrader_templates)),
            nbgrader_templates,
        ]
        self.template_name = TEMPLATE_NAME
        # ... by its path, 'feedback/index.html.j2' (its own name, index.html.j2, is the child's too).
        if nbgrader_templates not in self.extra_template_paths:
            self.extra_template_paths = [*self.extra_template_paths, nbgrader_templates]
        self.template_paths = self._template_paths()  # a default computed once, for the name set at first

    def _create_environment(self) -> jinja2.Environment:
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATES
        return environment

    def _preprocess(self, nb, resources):
        nb, resources = super()._preprocess(nb, resources)  # GetGrades among them: the scores are in the cells
        resources["feedback"] = standing(nb, resources, self._verdict_reasons(), self.mathjax_folder)
        return nb, resources

    def _verdict_reasons(self) -> dict[str, str]:
        """The grader's reason for each failed test cell, while a submission is graded (TrustedExecute's file)."""
        path = self.config.get("TrustedExecute", {}).get("verdict_file") if "TrustedExecute" in self.config else ""
        if not path:
            return {}
        try:
            with open(path, "rb") as file:  # the grader's own record: one bounded verdict per test cell
                record = json.load(file)
            return {str(k): str(v[1]) for k, v in record.get("cells", {}).items() if not v[0]}
        except (OSError, ValueError, TypeError, IndexError, AttributeError, KeyError) as error:
            log.debug("no verdicts for the feedback summary: %s", error)
            return {}


def _nbgrader_templates() -> str:
    import nbgrader

    return str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates")


def standing(
    nb: nbformat.NotebookNode, resources: dict, verdict_reasons: dict[str, str] | None = None, mathjax_folder: str = ""
) -> dict:
    """What the template needs beside the notebook: every graded cell's standing, the totals and the summary HTML.

    `resources["nbgrader"]` is GetGrades's (student, assignment, notebook, db_url, late_penalty), and
    `resources["grader_record"]`, when given, holds the grader's reasons per cell and its late assessment
    (see `regenerate`)."""
    info = resources.get("nbgrader") or {}
    record = resources.get("grader_record") or {}
    reasons = {**(verdict_reasons or {}), **record.get("reasons", {})}
    grades = _gradebook_grades(info)
    cells: dict[str, CellStanding] = {}
    for cell in nb.cells:
        flags = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = flags.get("grade_id")
        if not grade_id or not (flags.get("grade") or flags.get("solution") or flags.get("task")):
            continue
        manual = bool(flags.get("solution") or flags.get("task"))
        label = _label(cell, flags)
        auto_score, manual_score, points, _ = grades.get(
            grade_id, (None, None, float(flags.get("points") or 0), manual)
        )
        if not flags.get("grade") and not flags.get("task"):
            score = None  # an answer checked by the test cells, not scored itself
        elif manual:
            # Only a grader's score counts, as in grades.csv: nbgrader gives an answer left as its stub an
            # automatic 0, which would read as a grade nobody gave.
            score = manual_score
        else:
            score = manual_score if manual_score is not None else auto_score or 0.0
        entry = CellStanding(grade_id, label, manual, points, score, comment_html=_comment(flags.get("comment")))
        if entry.failed:
            entry.reason = _reason(reasons.get(grade_id) or _error_message(cell) or "the hidden tests did not pass")
        cells[grade_id] = entry
    late = record.get("late") or {}
    penalty = _number(late.get("penalty")) or _number(info.get("late_penalty"))
    result = {
        "cells": cells,
        "late_penalty": penalty,
        "late_note": _reason(late.get("note", "")) if penalty else "",
        "mathjax_folder": mathjax_folder or MATHJAX_FROM_FEEDBACK,
        "mathjax_config": MATHJAX_CONFIG,
        "content_security_policy": CONTENT_SECURITY_POLICY,
    }
    result["summary_html"] = summary_html(str(info.get("notebook", "")), cells, penalty, str(result["late_note"]))
    return result


def summary_html(notebook: str, cells: dict[str, CellStanding], penalty: float, late_note: str) -> str:
    """The standing at the top of the page, escaped: points of possible, written answers, penalty, failures."""
    graded = [c for c in cells.values() if c.label != "Answer"]
    automatic = [c for c in graded if not c.manual]
    written = [c for c in graded if c.manual]
    auto_score = sum(c.score or 0 for c in automatic)
    auto_points = sum(c.points for c in automatic)
    rows = [("Automatic tests", f"{auto_score:g} of {auto_points:g} points", "")]
    if written:
        done = [c for c in written if not c.awaiting]
        waiting = len(written) - len(done)
        text = f"{sum(c.score or 0.0 for c in done):g} of {sum(c.points for c in done):g} points" if done else ""
        if waiting:
            text = (text + "; " if text else "") + f"{waiting} of {len(written)} awaiting grading"
        rows.append(("Written answers", text, "awaiting" if waiting else ""))
    if penalty:
        rows.append(("Late penalty", f"-{penalty:g} points" + (f" ({late_note})" if late_note else ""), "lost"))
    earned = auto_score + sum(c.score or 0.0 for c in written if not c.awaiting) - penalty
    possible = sum(c.points for c in graded)
    pending = sum(c.points for c in written if c.awaiting)
    total = f"{max(earned, 0):g} of {possible:g} points"
    if pending:
        total += f" so far ({_points(pending)} awaiting grading)"
    parts = [
        '<section id="standing">',
        f"<h1>{html.escape(notebook)}: where you stand</h1>",
        "<table><tbody>",
        *(
            f'<tr><th scope="row">{html.escape(name)}</th><td class="{css}">{html.escape(value)}</td></tr>'
            for name, value, css in rows
        ),
        f'<tr class="total"><th scope="row">Total</th><td>{html.escape(total)}</td></tr>',
        "</tbody></table>",
    ]
    failed = [c for c in automatic if c.failed]
    if failed:
        parts.append(f'<h2 class="h4">Failed cells ({len(failed)})</h2><ul class="failed">')
        parts += [
            f'<li>{_link(c)} ({c.score:g} of {c.points:g}): <span class="reason">{html.escape(c.reason)}</span></li>'
            for c in failed
        ]
        parts.append("</ul>")
    elif automatic:
        parts.append("<p>Every automatic test passed.</p>")
    awaiting = [c for c in written if c.awaiting]
    if awaiting:
        parts.append('<p class="awaiting">Awaiting grading: ' + ", ".join(_link(c) for c in awaiting))
        parts.append(". Their points are not counted yet, neither for nor against you.</p>")
    parts.append("</section>")
    return "".join(parts)


def _link(cell: CellStanding) -> str:
    return f'<a href="#{html.escape(cell.anchor, quote=True)}">{html.escape(cell.grade_id)}</a>'


def _label(cell, flags: dict) -> str:
    if flags.get("task"):
        return "Task"
    if flags.get("grade") and not flags.get("solution"):
        return "Test cell"
    if not flags.get("grade"):
        return "Answer"
    return "Written response" if cell.get("cell_type") == "markdown" else "Coding free-response"


def _number(value) -> float:
    """A non-negative finite number from a record, 0 for anything else."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 and number != float("inf") else 0.0


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def _gradebook_grades(info: dict) -> dict[str, tuple[float | None, float | None, float, bool]]:
    """grade id -> (auto score, manual score, points, needs a manual grade), from the gradebook GetGrades read."""
    if not (info.get("db_url") and info.get("notebook") and info.get("assignment") and info.get("student")):
        return {}
    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    try:
        with warnings.catch_warnings(), Gradebook(info["db_url"]) as gradebook:
            warnings.simplefilter("ignore", SAWarning)
            notebook = gradebook.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            return {
                g.name: (g.auto_score, g.manual_score, float(g.max_score or 0), bool(g.needs_manual_grade))
                for g in notebook.grades
            }
    except MissingEntry:
        return {}


def _comment(comment) -> str:
    if not comment:
        return ""
    from autograder.sinks import sanitise

    return sanitise.clean_html(markdown2html_mistune(sanitise.clean_markdown(str(comment))))


def _error_message(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    return ""


def _reason(text: str) -> str:
    # One line, every character that could hide or reorder text shown as its escape (autograder.sinks), cut
    # as grades.csv cuts it (Grading.reason_limit).
    from autograder.settings import course_settings
    from autograder.sinks import safe_text

    limit = course_settings().reason_limit
    line = safe_text.for_terminal(" ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def ship_mathjax(out: Path) -> Path:
    """Copy MathJax into OUT/static/mathjax once (a folder already there is kept); return that folder.

    The copy goes to a new folder beside it first and is renamed into place, so a page never meets half a copy.
    """
    import jupyter_server_mathjax

    target = Path(out) / MATHJAX_IN_OUT
    if (target / "MathJax.js").is_file() and (target / MATHJAX_CONFIG).is_file() and not target.is_symlink():
        return target
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mathjax-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        (staging / MATHJAX_CONFIG).write_text(MATHJAX_SETTINGS, encoding="utf-8")
        staging.chmod(0o755)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def regenerate(out: Path, pages: Iterable[tuple[str, str, str]], gradebook: str | Path | None = None) -> list[Path]:
    """Make the feedback pages of (student, assignment, notebook) again from OUT: its autograded notebooks, the
    class gradebook (default OUT/gradebook.db), the reasons in OUT/grades.csv and the late penalties in
    OUT/late.csv; ship MathJax into OUT. Returns the pages written; a page whose notebook OUT lacks is skipped.

    `manual` calls it for the pages whose written answers got a new score; after a grading run, the pages with
    a late penalty or a manual score (`pages_to_refresh`) need it too, as the grading worker knows neither."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from autograder.pipeline.config import gradebook_url, nbgrader_config
    from autograder.sinks import safe_text
    from autograder.term import late as late_policy

    out = Path(out)
    pages = sorted(set(pages))
    if not pages:
        return []
    url = gradebook_url(gradebook or OutFolder(out).gradebook)
    grades = safe_text.read_rows(OutFolder(out).grades) if OutFolder(out).grades.is_file() else []
    late_rows = late_policy.read_late(OutFolder(out).late)
    ship_mathjax(out)
    written = []
    with tempfile.TemporaryDirectory(prefix="dpc-feedback-") as root:
        config = nbgrader_config(Path(root), url)
        converter = GenerateFeedback(coursedir=CourseDirectory(config=config, root=root), config=config)
        exporter = converter.exporter_class(parent=converter, config=converter.config)
        for preprocessor in converter.preprocessors:
            exporter.register_preprocessor(preprocessor)
        for student, assignment, notebook in pages:
            source = OutFolder(out).autograded(student, assignment, notebook)
            if source.is_symlink() or not source.is_file():
                continue
            name = notebook.removesuffix(".ipynb")
            key = (student, assignment, notebook)
            record = {
                "reasons": {
                    r["cell"]: r["reason"]
                    for r in grades
                    if (r["student"], r["assignment"], r["notebook"]) == key and r["reason"]
                },
                "late": next((r for r in late_rows if (r["student"], r["assignment"], r["notebook"]) == key), None),
            }
            resources = {
                "unique_key": name,
                "output_files_dir": f"{name}_files",
                "nbgrader": {"student": student, "assignment": assignment, "notebook": name, "db_url": url},
                "grader_record": record,
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nb = nbformat.read(source, as_version=4)
            body, _ = exporter.from_notebook_node(nb, resources=resources)
            target = OutFolder(out).feedback(student, assignment, notebook)
            _write_whole(target, body.encode("utf-8"))
            written.append(target)
    return written


def finish_pages(out: Path, gradebook: str | Path | None = None) -> list[Path]:
    """After a grading run has written OUT (grades.csv, late.csv, the feedback pages): ship MathJax into OUT and
    make again the pages that need what only OUT knows (`pages_to_refresh`). Returns the pages written."""
    ship_mathjax(out)
    return regenerate(out, pages_to_refresh(out), gradebook)


def pages_to_refresh(out: Path) -> list[tuple[str, str, str]]:
    """The pages a grading run leaves without what only OUT knows: a late penalty (late.csv) or a written
    answer's score (grades.csv)."""
    from autograder.sinks import safe_text
    from autograder.term import late as late_policy

    out = Path(out)
    grades = safe_text.read_rows(OutFolder(out).grades) if OutFolder(out).grades.is_file() else []
    pages = {(r["student"], r["assignment"], r["notebook"]) for r in grades if r["kind"] == "manual" and r["score"]}
    for row in late_policy.read_late(OutFolder(out).late):
        try:
            penalised = float(row.get("penalty") or 0) > 0
        except ValueError:
            penalised = False
        if penalised:
            pages.add((row["student"], row["assignment"], row["notebook"]))
    return sorted(pages)


def _write_whole(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if partial.is_symlink() or partial.exists():
        partial.unlink()
    partial.write_bytes(content)
    os.replace(partial, path)  # a link planted at `path` is replaced, never followed


def warm_up() -> None:
    """Render one small feedback page, so that the first real one finds this process's caches filled.

    A process's first page costs about 0.8 s more than the next (templates compiled, the regular expressions
    of the Markdown and CSS-selector parsers, the Python lexer). A submission graded alone waits for that at
    its end, unless this ran while its kernel worked. The exporter is the one nbgrader's GenerateFeedback
    makes, with its templates; a failure here costs only the time it saves.
    """
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from autograder.pipeline.config import nbgrader_config

    try:
        with tempfile.TemporaryDirectory(prefix="dpc-warm-") as root:
            config = nbgrader_config(Path(root))
            converter = GenerateFeedback(coursedir=CourseDirectory(config=config, root=root), config=config)
            exporter = converter.exporter_class(parent=converter, config=converter.config)
            page = nbformat.v4.new_notebook(
                cells=[
                    nbformat.v4.new_markdown_cell("A *formula* $\\varepsilon = \\ln 3$ and `code`"),
                    nbformat.v4.new_code_cell(
                        "print(sum(range(3)))", outputs=[nbformat.v4.new_output("stream", text="3\n")]
                    ),
                ]
            )
            # What GetGrades puts in the resources of a real page.
            grades = {"notebook": "warm-up", "score": 0.0, "max_score": 0.0, "late_penalty": 0.0}
            exporter.from_notebook_node(page, resources={"nbgrader": grades})
    except Exception as error:
        log.debug("the feedback warm-up failed: %s: %s", type(error).__name__, error)
