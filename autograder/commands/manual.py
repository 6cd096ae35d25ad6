"""Manual grading without a server: `python -m autograder manual OUT [--assignment ID] [--scores FILE ...]`.

Without `--scores`, for every written answer (a manually graded nbgrader cell) of the class graded in OUT, it
writes `OUT/manual/<assignment>/<cell>.csv`, one row per student with the current score (empty while
ungraded) and the answer's text, and `<cell>.html` beside it: every student's answer rendered from its
Markdown and sanitised (autograder.sinks.sanitise), for reading. The grader fills in the `score` column, in a
spreadsheet or an editor, and reads the file back with `--scores`.

Every row read back is checked before anything is written: a known student and cell (as OUT/grades.csv lists
them), and a score that is empty (left ungraded) or a number from 0 to the cell's points. Any fault stops the
whole command with the file, line and reason, and nothing is written. Valid scores go into the class
gradebook in one transaction, and OUT/grades.csv shows them at once; the next `grade` run keeps them, as it
keeps scores given in nbgrader's formgrader. The feedback page of every notebook whose score changed is made
again (autograder.pipeline.feedback.regenerate), so the student sees the grade in place of "awaiting grading".
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbgrader.api import Gradebook
from sqlalchemy.exc import SAWarning

from autograder.layout import OutFolder
from autograder.pipeline import feedback
from autograder.pipeline.config import gradebook_url
from autograder.sinks import safe_text, sanitise

COLUMNS = ["student", "assignment", "notebook", "cell", "max_score", "score", "answer"]


@dataclass(frozen=True)
class WrittenAnswer:
    """One student's answer to one manually graded cell, as OUT holds it."""

    student: str
    assignment: str
    notebook: str
    cell: str
    max_score: float
    score: float | None
    answer: str  # the cell's Markdown source, from the sanitised autograded notebook


@dataclass(frozen=True)
class ManualScore:
    student: str
    assignment: str
    notebook: str
    cell: str
    score: float


class ManualGradingError(ValueError):
    """A scores file that cannot be read back; the message names the file, the line and what is wrong."""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "manual",
        help="grade the written answers of a graded OUT folder: write one CSV "
        "and one HTML page per question, or read filled-in CSVs back",
    )
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--assignment", action="append", dest="assignments", metavar="ID", help="only this assignment (repeatable)"
    )
    parser.add_argument(
        "--scores",
        action="append",
        type=Path,
        metavar="FILE",
        help="a filled-in CSV written by this command: its scores go into the gradebook "
        "(repeatable; every file is checked before anything is written)",
    )
    parser.add_argument("--gradebook", metavar="URL", help="class gradebook (default OUT/gradebook.db)")
    return parser


def run(args: argparse.Namespace) -> None:
    url = gradebook_url(args.gradebook or OutFolder(args.out).gradebook)
    if args.scores:
        scores = [score for path in args.scores for score in read_scores(path, args.out, args.assignments)]
        changed = record_scores(args.out, url, scores)
        print(
            f"read {len(scores)} score(s) from {len(args.scores)} file(s); {changed} changed in the gradebook "
            f"and in {safe_text.for_terminal(args.out / 'grades.csv')}"
        )
        return
    written = write_sheets(args.out, url, args.assignments)
    for path, count in written:
        print(f"{safe_text.for_terminal(path)}: {count} answer(s)")
    if not written:
        print("no written answers in this OUT folder")


def written_answers(out: Path, url: str, assignments: list[str] | None = None) -> list[WrittenAnswer]:
    """Every manually graded cell of every graded student in OUT, with its current score and answer."""
    rows = [r for r in _grades(out) if r["kind"] == "manual" and (not assignments or r["assignment"] in assignments)]
    scores = _gradebook_scores(url, rows)
    answers = []
    for row in rows:
        key = (row["student"], row["assignment"], row["notebook"], row["cell"])
        answers.append(WrittenAnswer(*key, float(row["max_score"]), scores.get(key), _answer_text(out, *key)))
    return answers


def write_sheets(out: Path, url: str, assignments: list[str] | None = None) -> list[tuple[Path, int]]:
    """One CSV and one HTML page per question under OUT/manual/<assignment>/; returns (csv path, answers)."""
    by_question: dict[tuple[str, str], list[WrittenAnswer]] = {}
    for answer in written_answers(out, url, assignments):
        by_question.setdefault((answer.assignment, answer.cell), []).append(answer)
    written = []
    for (assignment, cell), answers in sorted(by_question.items()):
        folder = OutFolder(out).manual / assignment
        folder.mkdir(parents=True, exist_ok=True)
        sheet = folder / f"{cell}.csv"
        with open(sheet, "w", newline="", encoding="utf-8") as file:
            writer = safe_text.writer(file, reversible=True)
            writer.writerow(COLUMNS)
            for a in answers:
                writer.writerow(
                    [a.student, a.assignment, a.notebook, a.cell, _number(a.max_score), _number(a.score), a.answer]
                )
        (folder / f"{cell}.html").write_text(_page(assignment, cell, answers), encoding="utf-8")
        written.append((sheet, len(answers)))
    return written


def read_scores(path: Path, out: Path, assignments: list[str] | None = None) -> list[ManualScore]:
    """The scores a filled-in sheet gives, each checked against OUT/grades.csv; empty scores are skipped."""
    known = {
        (r["student"], r["assignment"], r["notebook"], r["cell"]): float(r["max_score"])
        for r in _grades(out)
        if r["kind"] == "manual"
    }
    try:
        rows = safe_text.read_rows(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ManualGradingError(f"{path}: cannot be read ({error})") from error
    if rows and not {"student", "assignment", "notebook", "cell", "score"} <= set(rows[0]):
        raise ManualGradingError(
            f"{path}: needs the columns student, assignment, notebook, cell and score, as `manual` writes them"
        )
    scores = []
    for line, row in enumerate(rows, start=2):
        key = tuple(row.get(name) or "" for name in ("student", "assignment", "notebook", "cell"))
        where = f"{path}, line {line}"
        if None in row:
            raise ManualGradingError(f"{where}: more cells than columns")
        if key not in known:
            raise ManualGradingError(
                f"{where}: no written answer {safe_text.for_terminal(' / '.join(key))} in "
                f"{out / 'grades.csv'} (unknown student, assignment, notebook or cell)"
            )
        if assignments and key[1] not in assignments:
            continue
        text = (row.get("score") or "").strip()
        if not text:
            continue
        try:
            score = float(text)
        except ValueError:
            raise ManualGradingError(f"{where}: score {safe_text.for_terminal(text)!r} is not a number") from None
        if not math.isfinite(score) or not 0 <= score <= known[key]:
            raise ManualGradingError(f"{where}: score {score:g} is outside 0 to {known[key]:g}, the cell's points")
        scores.append(ManualScore(*key, score))
    keys = [(s.student, s.assignment, s.notebook, s.cell) for s in scores]
    if len(set(keys)) != len(keys):
        raise ManualGradingError(f"{path}: a student's answer is scored twice")
    return scores


def record_scores(out: Path, url: str, scores: list[ManualScore]) -> int:
    """Write `scores` into the gradebook in one transaction, then into OUT/grades.csv, then make the feedback pages
    of the notebooks whose scores changed again; returns how many scores changed."""
    seen: dict[tuple, float] = {}
    for s in scores:
        key = (s.student, s.assignment, s.notebook, s.cell)
        if key in seen and seen[key] != s.score:
            raise ManualGradingError(f"two files give {safe_text.for_terminal(' / '.join(key))} different scores")
        seen[key] = s.score
    changed_pages = set()
    with warnings.catch_warnings(), Gradebook(url) as gradebook:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's session handling, as in autograder.commands.grade
        try:
            for (student, assignment, notebook, cell), score in seen.items():
                grade = gradebook.find_grade(cell, notebook.removesuffix(".ipynb"), assignment, student)
                if grade.manual_score != score:
                    changed_pages.add((student, assignment, notebook, cell))
                grade.manual_score = score
                grade.needs_manual_grade = False
            gradebook.db.commit()
        except Exception:
            gradebook.db.rollback()
            raise
    _show_in_grades_csv(out, seen)
    refresh_feedback(out, url, {key[:3] for key in changed_pages})
    return len(changed_pages)


def refresh_feedback(out: Path, url: str, pages: set[tuple[str, str, str]]) -> int:
    """Make these (student, assignment, notebook) feedback pages again; returns how many were written. The scores
    are already recorded: a page that cannot be made is named on stderr and the rest go on."""
    written = 0
    for page in sorted(pages):
        try:
            written += len(feedback.regenerate(out, [page], url))
        except Exception as error:  # noqa: BLE001 (one page's failure must not hide the others or the scores)
            where = safe_text.for_terminal("/".join(page))
            why = safe_text.for_terminal(f"{type(error).__name__}: {error}")
            print(f"feedback for {where} not made again: {why}", file=sys.stderr)
    if written:
        print(f"{written} feedback page(s) made again with the new scores")
    return written


def _show_in_grades_csv(out: Path, scores: dict[tuple, float]) -> None:
    path = OutFolder(out).grades
    rows = safe_text.read_rows(path)
    for row in rows:
        key = (row["student"], row["assignment"], row["notebook"], row["cell"])
        if row["kind"] == "manual" and key in scores:
            row["score"], row["reason"] = _number(scores[key]), ""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as file:
        writer = safe_text.DictWriter(file, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)  # readers see the old file or the new one, never half of one


def _grades(out: Path) -> list[dict]:
    path = OutFolder(out).grades
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: grade the class first")
    return safe_text.read_rows(path)


def _gradebook_scores(url: str, rows: list[dict]) -> dict[tuple, float]:
    scores = {}
    with warnings.catch_warnings(), Gradebook(url) as gradebook:
        warnings.simplefilter("ignore", SAWarning)
        for assignment in {r["assignment"] for r in rows}:
            for notebook in {r["notebook"] for r in rows if r["assignment"] == assignment}:
                name = notebook.removesuffix(".ipynb")
                for submission in gradebook.notebook_submissions(name, assignment):
                    for grade in submission.grades:
                        if grade.manual_score is not None:
                            key = (submission.student.id, assignment, notebook, grade.name)
                            scores[key] = grade.manual_score
    return scores


def _answer_text(out: Path, student: str, assignment: str, notebook: str, cell: str) -> str:
    """The answer cell's source in the autograded notebook OUT holds (written by the grader, sanitised)."""
    path = OutFolder(out).autograded(student, assignment, notebook)
    if path.is_symlink() or not path.is_file():
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == cell:
            return c.source
    return ""


def answer_html(source: str) -> str:
    """A written answer's Markdown as HTML, rendered as nbconvert renders feedback pages, after
    autograder.sinks.sanitise has made its raw HTML, links and images inert (the page also forbids every script).

    The rendered answer is parsed and written out again as one closed tree (nh3, through `clean_html`): raw
    HTML in Markdown may leave elements open (a `<table><tr><td><details>` that would swallow every later
    student's section), and no answer may reach past its own box."""
    return sanitise.clean_html(markdown2html_mistune(sanitise.clean_markdown(source)))


def _page(assignment: str, cell: str, answers: list[WrittenAnswer]) -> str:
    """Every answer to one question, rendered and sanitised, with the score each has now."""
    title = html.escape(f"{assignment}: {cell}")
    items = []
    for a in answers:
        score = "awaiting grading" if a.score is None else f"{a.score:g} / {a.max_score:g}"
        items.append(
            f"<section><h2>{html.escape(a.student)}</h2><p class=score>{html.escape(score)}</p>"
            f"<div class=answer>{answer_html(a.answer) or '<em>(empty)</em>'}</div></section>"
        )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{title}</title><style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<p>{len(answers)} answer(s). Scores go in the <code>score</code> column of {html.escape(cell)}.csv "
        "beside this page, read back with <code>python -m autograder manual OUT --scores FILE</code>.</p>"
        + "".join(items)
        + "</body></html>"
    )


# Each answer sits in a box of its own, its headings no bigger than its text, so that an answer which
# imitates a student's heading and score still reads as what it is: inside someone's box.
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;line-height:1.5}"
    "section{border-top:1px solid #ccc;padding:.5rem 0}h2{font-size:1.1rem;margin:.2rem 0;"
    "overflow-wrap:anywhere}.score{color:#555;margin:0 0 .3rem}.answer{overflow-wrap:anywhere;"
    "border:1px solid #bbb;border-left:4px solid #777;background:#f8f8f8;padding:.3rem .8rem;"
    "overflow-x:auto}.answer h1,.answer h2,.answer h3,.answer h4,.answer h5,.answer h6{font-size:1em}"
    ".answer img{max-width:100%}"
)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
