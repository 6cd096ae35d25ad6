"""`python -m autograder report OUT`: class statistics from OUT/grades.csv (and OUT/late.csv), as text, a figure
and one HTML page.

Interface: `report(out, config=None) -> str` writes OUT/report.txt, OUT/report.png (pass rate per cell) and
OUT/report.html, and returns the text. `config`: the course configuration (autograder.term.late), for the
penalties. The page answers what an instructor asks when deciding what to teach again: a histogram of the scores
of each assignment, the hardest cells first with their most common reasons for lost points, the per-cell table,
late work and penalties, grading errors and answers awaiting a grade, and the grading time per notebook when OUT
records it (a `grading_seconds` column in inputs.csv or grades.csv). Its PNGs are embedded, so the page is one
file; it reads at any width: tables and figures sit side by side only where both fit, tables become one card per
row on a phone, and reasons wrap between words, with long ones cut and the whole text a click away.

A grading error (an empty score whose reason starts "grading error:") is the grader's failure, not the
student's: it is listed, and left out of every mean, pass rate and distribution, never counted as a zero. An
empty manual score is a written answer not graded yet: counted, and left out of the scores as well.
"""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from autograder.batch.submission import is_grading_error  # noqa: E402
from autograder.commands import export as exporting  # noqa: E402
from autograder.layout import OutFolder
from autograder.sinks.safe_text import for_terminal, read_rows  # noqa: E402
from autograder.term import late as late_policy  # noqa: E402

TOP_REASONS = 3
HARDEST = 8  # cells listed first, beside the pass-rate figure
SHORT_REASON = 140  # characters of a reason shown before "more"


@dataclass(frozen=True)
class Section:
    """One part of the page: its heading, HTML beside its figure (when there is room), the figure, HTML below."""

    title: str
    beside: str
    png: bytes | None = None
    below: str = ""


def load(out: Path) -> list[dict]:
    return read_rows(OutFolder(out).grades)


def totals(rows: list[dict]) -> dict[tuple[str, str], tuple[float, float]]:
    """(student, assignment) -> (automatic score, automatic maximum); assignments with a grading error in an
    automatic cell are left out (see `errors`)."""
    result: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    broken = {(r["student"], r["assignment"]) for r in rows if r["kind"] == "auto" and is_grading_error(r)}
    for row in rows:
        key = (row["student"], row["assignment"])
        if row["kind"] == "auto" and key not in broken:
            entry = result[key]
            entry[0] += float(row["score"] or 0)
            entry[1] += float(row["max_score"])
    return {key: (score, maximum) for key, (score, maximum) in result.items()}


def errors(rows: list[dict]) -> list[dict]:
    return [row for row in rows if is_grading_error(row)]


def grade_table(rows: list[dict]) -> str:
    """Students down, assignments across: automatic score / maximum ("grading error" where the grader failed);
    student ids escaped for the terminal."""
    scores = totals(rows)
    broken = {(r["student"], r["assignment"]) for r in errors(rows)}
    students = sorted({r["student"] for r in rows})
    assignments = sorted({r["assignment"] for r in rows})
    width = max([len(for_terminal(s)) for s in students] + [7])
    lines = ["student".ljust(width) + "".join(f"  {a:>16}" for a in assignments)]
    for student in students:
        cells = []
        for assignment in assignments:
            if (student, assignment) in scores and (student, assignment) not in broken:
                score, maximum = scores[(student, assignment)]
                cells.append(f"  {f'{score:g} / {maximum:g}':>16}")
            else:
                cells.append(f"  {'grading error' if (student, assignment) in broken else '-':>16}")
        lines.append(for_terminal(student).ljust(width) + "".join(cells))
    return "\n".join(lines)


def cell_statistics(rows: list[dict]) -> list[dict]:
    """Per assignment and automatic cell: mean score, pass rate and the most common failure reasons, over the
    rows the grader scored (grading errors are counted apart, in 'errors')."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "auto":
            groups[(row["assignment"], row["cell"])].append(row)
    stats = []
    for (assignment, cell), members in groups.items():
        scored = [r for r in members if not is_grading_error(r)]
        scores = [float(r["score"] or 0) for r in scored]
        passed = sum(float(r["score"] or 0) >= float(r["max_score"]) for r in scored)
        reasons = Counter(r["reason"] for r in scored if r["reason"])
        stats.append(
            {
                "assignment": assignment,
                "cell": cell,
                "mean": sum(scores) / max(len(scores), 1),
                "max_score": float(members[0]["max_score"]),
                "pass_rate": passed / len(scored) if scored else float("nan"),
                "count": len(scored),
                "errors": len(members) - len(scored),
                "reasons": reasons.most_common(TOP_REASONS),
            }
        )
    return stats


def hardest_cells(stats: list[dict], limit: int = HARDEST) -> list[dict]:
    """The cells fewest students passed (cells no one was scored on left out), lowest pass rate first."""
    scored = [item for item in stats if item["count"]]
    return sorted(scored, key=lambda item: (item["pass_rate"], item["mean"] / max(item["max_score"], 1e-9)))[:limit]


def grading_times(out: Path) -> dict[str, dict]:
    """assignment -> {median, max, slowest, count} of the seconds each notebook took to grade, when OUT records
    them (a `grading_seconds` column in inputs.csv, else in grades.csv); {} when it does not."""
    seconds: dict[tuple[str, str, str], float] = {}
    for name in ("inputs.csv", "grades.csv"):
        path = out / name
        rows = read_rows(path) if path.is_file() else []
        for row in rows:
            value = row.get("grading_seconds") or ""
            key = (row.get("student", ""), row.get("assignment", ""), row.get("notebook", ""))
            try:
                number = float(value)
            except ValueError:
                continue
            if number == number and number >= 0:  # not NaN
                seconds.setdefault(key, number)
        if seconds:
            break
    by_assignment: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (student, assignment, _), value in seconds.items():
        by_assignment[assignment].append((value, student))
    return {
        assignment: {
            "median": statistics.median(v for v, _ in values),
            "max": max(values)[0],
            "slowest": max(values)[1],
            "count": len(values),
        }
        for assignment, values in by_assignment.items()
    }


LATE_KINDS = ["on time", "late", "late, time unknown", "time unknown", "no due date"]


def late_counts(late_rows: list[dict], config: late_policy.CourseConfig) -> dict[str, dict[str, int]]:
    """assignment -> notebook counts per LATE_KINDS, from late.csv's submission times and today's due dates
    and extensions (the same reckoning as the export's penalties)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in late_rows:
        if row["note"] == "not submitted":
            continue
        student, assignment = row["student"], row["assignment"]
        submitted = datetime.fromisoformat(row["submitted"]) if row["submitted"] else None
        seconds = late_policy.lateness(config, student, assignment, submitted)
        if config.due_for(student, assignment) is None:
            kind = "no due date"
        elif seconds is None:
            kind = "late, time unknown" if row["late_marker"] == "1" else "time unknown"
        else:
            kind = "late" if seconds > 0 else "on time"
        counts[assignment][kind] += 1
    return {a: dict(c) for a, c in counts.items()}


def report(out: Path, config: late_policy.CourseConfig | None = None) -> str:
    """Write OUT/report.txt, OUT/report.png and OUT/report.html; return the text."""
    out = Path(out)
    rows = load(out)
    late_rows = late_policy.read_late(OutFolder(out).late)
    config = config or late_policy.load_config()
    scores = totals(rows)
    stats = cell_statistics(rows)
    failed = errors(rows)
    assignments = sorted({r["assignment"] for r in rows})
    counts = late_counts(late_rows, config)
    # Penalties on the points graded so far (a written answer not graded yet counts 0 until it is).
    grades = exporting.assignment_grades(rows, late_rows, config, partial=True)
    penalised = [(s, a, g.penalty, g.max_score) for (s, a), g in sorted(grades.items()) if g.penalty]
    unknown = [
        r
        for r in late_rows
        if not r["submitted"]
        and r["late_marker"] == "1"
        and r["note"] != "not submitted"
        and config.due_for(r["student"], r["assignment"]) is not None
    ]
    manual = sum(1 for row in rows if row["kind"] == "manual" and row["score"] == "" and not is_grading_error(row))

    means = []
    for assignment in assignments:
        marks = [s / m for (_, a), (s, m) in scores.items() if a == assignment and m]
        broken = len({r["student"] for r in failed if r["assignment"] == assignment})
        means.append((assignment, len(marks), 100 * sum(marks) / max(len(marks), 1), broken))
    summary = ["Automatic scores per student and assignment", grade_table(rows), ""]
    summary += [
        f"{a}: {n} submissions, mean {mean:.1f}% of the automatic points"
        + (f" ({broken} with a grading error, left out)" if broken else "")
        for a, n, mean, broken in means
    ]
    per_cell = ["Per cell: mean score, pass rate, most common reasons for lost points"]
    for item in stats:
        per_cell.append(
            f"  {item['assignment']}/{item['cell']}: mean {item['mean']:.2f}/{item['max_score']:g}, "
            f"passed {_percent(item['pass_rate'])} of {item['count']}"
            + (f" ({item['errors']} grading error(s) left out)" if item["errors"] else "")
        )
        per_cell += [f"      {count} x {for_terminal(reason)}" for reason, count in item["reasons"]]
    lateness = ["Late submissions (notebooks): late.csv's times against today's due dates and extensions"]
    if not late_rows:
        lateness.append("  no late.csv: submission times were not assessed")
    lateness += [f"  {a}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts[a].items())) for a in sorted(counts)]
    lateness += [f"  penalty {p:g} of {m:g} points: {for_terminal(s)}/{a}" for s, a, p, m in penalised]
    lateness += [
        f"  check by hand: {for_terminal(r['student'])}/{r['assignment']}/{for_terminal(r['notebook'])}: "
        f"{for_terminal(r['note'])}"
        for r in unknown
    ]
    error_lines = [f"Grading errors: {len(failed)} cell(s), never counted as zeros (regrade them)"]
    error_lines += [
        f"  {for_terminal(r['student'])}/{r['assignment']}/{r['cell']}: {for_terminal(r['reason'])}" for r in failed
    ]
    error_lines.append(f"\nManually graded answers awaiting a grade: {manual}")
    hardest = hardest_cells(stats)
    hard_lines = ["Hardest cells (lowest pass rate first)"]
    hard_lines += [
        f"  {item['assignment']}/{item['cell']}: passed {_percent(item['pass_rate'])} of {item['count']}"
        + (f"; most often: {for_terminal(item['reasons'][0][0])}" if item["reasons"] else "")
        for item in hardest
    ]
    times = grading_times(out)
    time_lines = ["Grading time per notebook (seconds)"] if times else []
    time_lines += [
        f"  {a}: median {t['median']:.1f}, slowest {t['max']:.1f} ({for_terminal(t['slowest'])}), "
        f"{t['count']} notebooks"
        for a, t in sorted(times.items())
    ]
    parts = (summary, hard_lines, per_cell, lateness, error_lines, time_lines)
    text = "\n\n".join("\n".join(part) for part in parts if part)
    OutFolder(out).report("txt").write_text(text + "\n")

    pass_png = _pass_rate_figure(stats)
    OutFolder(out).report("png").write_bytes(pass_png)
    means_html, matrix_html = _html_scores(rows, scores, means)
    sections = [
        Section("Scores", means_html, _histogram_figure(scores, assignments), matrix_html),
        Section("Pass rate per cell", _html_hardest(hardest), pass_png, _html_cells(stats)),
        Section(
            "Late submissions",
            _html_late(late_rows, counts, penalised, unknown),
            _late_figure(counts) if counts else None,
        ),
        Section("Grading errors and pending grades", _html_errors(failed, manual)),
    ]
    if times:
        sections.append(Section("Grading time", _html_times(times)))
    OutFolder(out).report("html").write_text(_page(out, sections, len({r["student"] for r in rows}), len(failed)))
    return text


def _e(value) -> str:
    return html.escape(str(value))


def _table(header: list[str], body: list[list[str]], classes: list[str] | None = None, css: str = "cards") -> str:
    """An HTML table; cells are already escaped HTML. Each cell carries its column's name (data-label), which a
    phone shows beside it when the rows become cards."""
    head = "".join(f"<th scope='col'>{h}</th>" for h in header)
    labels = [html.escape(html.unescape(_without_tags(h)), quote=True) for h in header]
    lines = []
    for i, row in enumerate(body):
        row_css = f" class='{classes[i]}'" if classes and classes[i] else ""
        cells = "".join(f"<td data-label='{labels[j]}'>{c}</td>" for j, c in enumerate(row))
        lines.append(f"<tr{row_css}>{cells}</tr>")
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _without_tags(text: str) -> str:
    out, inside = [], False
    for ch in text:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out)


def _reason_html(reason: str, count: int | None = None) -> str:
    """A reason that wraps between words; a long one cut, with the whole text in a details element."""
    prefix = f"{count}&nbsp;&times; " if count is not None else ""
    if len(reason) <= SHORT_REASON:
        return f"<span class='reason'>{prefix}{_e(reason)}</span>"
    cut = reason[:SHORT_REASON].rsplit(" ", 1)[0] if " " in reason[:SHORT_REASON] else reason[:SHORT_REASON]
    return (
        f"<details class='reason'><summary>{prefix}{_e(cut)}&hellip; <span class='more'>(more)</span></summary>"
        f"{_e(reason)}</details>"
    )


def _html_scores(rows, scores, means) -> tuple[str, str]:
    """(the per-assignment means, to stand beside the figure; the per-student table, below it)"""
    broken = {(r["student"], r["assignment"]) for r in errors(rows)}
    assignments = [a for a, *_ in means]
    means_html = _table(
        ["assignment", "graded", "mean (automatic points)", "grading errors"],
        [[_e(a), str(n), f"{mean:.1f}%", str(b) if b else ""] for a, n, mean, b in means],
    )
    body = []
    for student in sorted({r["student"] for r in rows}):
        cells = [_e(student)]
        for assignment in assignments:
            if (student, assignment) in broken:
                cells.append("<span class='error'>grading error</span>")
            elif (student, assignment) in scores:
                score, maximum = scores[(student, assignment)]
                cells.append(f"{score:g}&thinsp;/&thinsp;{maximum:g}")
            else:
                cells.append("&ndash;")
        body.append(cells)
    header = ["student", *(_e(a.replace("_", " ", 1)) for a in assignments)]
    # A matrix stays a matrix: on a narrow screen it scrolls inside its own box, the page does not.
    return means_html, (
        "<h3>Automatic score per student</h3><div class='scroll' tabindex='0'>"
        + _table(header, body, css="matrix")
        + "</div>"
    )


def _html_cell_rows(items) -> list[list[str]]:
    body = []
    for item in items:
        reasons = "".join(f"<li>{_reason_html(reason, count)}</li>" for reason, count in item["reasons"])
        body.append(
            [
                f"<span class='cell'>{_e(item['assignment'])}/<b>{_e(item['cell'])}</b></span>",
                f"{item['mean']:.2f}&thinsp;/&thinsp;{item['max_score']:g}",
                f"{_percent(item['pass_rate'])} of {item['count']}",
                f"<span class='error'>{item['errors']}</span>" if item["errors"] else "",
                f"<ul class='reasons'>{reasons}</ul>" if reasons else "",
            ]
        )
    return body


CELL_HEADER = ["cell", "mean", "passed", "grading errors (left out)", "most common reasons for lost points"]


def _html_hardest(hardest) -> str:
    if not hardest:
        return "<p>No automatically graded cell was scored.</p>"
    body = [[cell, passed, reasons] for cell, _, passed, _, reasons in _html_cell_rows(hardest)]
    header = ["cell", "passed", "most common reasons for lost points"]
    return "<h3>Hardest cells first</h3>" + _table(header, body, css="cards cells")


def _html_cells(stats) -> str:
    return "<h3>Every cell, in notebook order</h3>" + _table(CELL_HEADER, _html_cell_rows(stats), css="cards cells")


def _html_times(times: dict[str, dict]) -> str:
    return _table(
        ["assignment", "notebooks", "median (s)", "slowest (s)", "slowest student"],
        [
            [_e(a), str(t["count"]), f"{t['median']:.1f}", f"{t['max']:.1f}", _e(t["slowest"])]
            for a, t in sorted(times.items())
        ],
    )


def _html_late(late_rows, counts, penalised, unknown) -> str:
    if not late_rows:
        return "<p>No late.csv: submission times were not assessed.</p>"
    kinds = [k for k in LATE_KINDS if any(k in c for c in counts.values())]
    parts = [
        _table(["assignment", *kinds], [[_e(a), *(str(counts[a].get(k, 0)) for k in kinds)] for a in sorted(counts)])
    ]
    if penalised:
        parts.append(
            "<h3>Penalties (course policy)</h3>"
            + _table(
                ["student", "assignment", "penalty"],
                [[_e(s), _e(a), f"{p:g} of {m:g} points"] for s, a, p, m in penalised],
            )
        )
    if unknown:
        parts.append(
            "<h3>Marked late by the LMS, time unknown: check by hand (no penalty applied)</h3>"
            + _table(
                ["student", "notebook", "note"],
                [
                    [_e(r["student"]), _e(f"{r['assignment']}/{r['notebook']}"), _reason_html(r["note"])]
                    for r in unknown
                ],
            )
        )
    return "".join(parts)


def _html_errors(failed, manual) -> str:
    parts = [
        f"<p><b>{len(failed)}</b> cell(s) could not be graded. They are left out of every statistic above, "
        "never counted as zeros: regrade them.</p>"
    ]
    if failed:
        parts.append(
            _table(
                ["student", "cell", "reason"],
                [[_e(r["student"]), _e(f"{r['assignment']}/{r['cell']}"), _reason_html(r["reason"])] for r in failed],
            )
        )
    parts.append(f"<p>Written answers awaiting a manual grade: <b>{manual}</b></p>")
    return "".join(parts)


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{value:.0%}"  # NaN: no scored row


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _histogram_figure(scores, assignments: list[str]) -> bytes:
    """One histogram per assignment: how many students reached each tenth of the automatic points."""
    columns = min(4, max(len(assignments), 1))
    lines = max(1, math.ceil(len(assignments) / columns))
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns + 0.6, 2.2 * lines + 0.8), squeeze=False)
    edges = [10 * i for i in range(11)]
    for index, axis in enumerate(axes.flat):
        if index >= len(assignments):
            axis.set_visible(False)
            continue
        assignment = assignments[index]
        values = [100 * s / m for (_, a), (s, m) in scores.items() if a == assignment and m]
        axis.hist(values, bins=edges, color="tab:blue", edgecolor="white")
        axis.set_title(f"{assignment.replace('_', ' ', 1)} ({len(values)})", fontsize=9)
        axis.set_xlim(0, 100)
        axis.set_xticks([0, 50, 100])
        axis.tick_params(labelsize=8)
        axis.yaxis.get_major_locator().set_params(integer=True)
        if index % columns == 0:
            axis.set_ylabel("students", fontsize=8)
        if index >= len(assignments) - columns:
            axis.set_xlabel("% of automatic points", fontsize=8)
    fig.suptitle("Score distribution per assignment (grading errors left out)", fontsize=10)
    return _png(fig)


def _pass_rate_figure(stats: list[dict]) -> bytes:
    labels = [f"{s['assignment'][:2]}/{s['cell'].removeprefix('test_')}" for s in stats]
    fig, axis = plt.subplots(figsize=(6.5, max(3.0, 0.22 * len(stats) + 1.2)))
    rates = [100 * s["pass_rate"] if s["count"] else 0 for s in stats]
    axis.barh(range(len(stats)), rates, color="tab:blue")
    axis.set_yticks(range(len(stats)), labels, fontsize=8)
    axis.invert_yaxis()  # the table's order, top to bottom
    axis.set_xlabel("students passing (%)")
    axis.set_ylabel("assignment / graded cell")
    axis.set_xlim(0, 100)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("Pass rate per autograded cell")
    return _png(fig)


def _late_figure(counts: dict[str, dict[str, int]]) -> bytes:
    assignments = sorted(counts)
    kinds = [
        ("on time", "tab:green"),
        ("late", "tab:red"),
        ("late, time unknown", "tab:orange"),
        ("time unknown", "tab:gray"),
        ("no due date", "tab:olive"),
    ]
    fig, axis = plt.subplots(figsize=(max(5.5, 0.9 * len(assignments) + 2), 3.4))
    bottom = [0] * len(assignments)
    for kind, color in kinds:
        values = [counts[a].get(kind, 0) for a in assignments]
        if any(values):
            axis.bar(range(len(assignments)), values, bottom=bottom, color=color, label=kind)
            bottom = [b + v for b, v in zip(bottom, values)]
    axis.set_xticks(range(len(assignments)), [a.replace("_", " ", 1) for a in assignments], rotation=30, ha="right")
    axis.set_ylabel("notebooks")
    axis.set_xlabel("assignment")
    axis.set_title("Submission times against the due dates")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 1.5em auto; max-width: 1500px;
       color: #1d1d1d; padding: 0 1em; font-size: 14px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #ccc; margin-top: 1.6em; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
.meta { color: #555; margin-top: 0; overflow-wrap: anywhere; }
/* Side by side only where both halves get 34em; otherwise one above the other. */
section { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 34em), 1fr)); gap: 1.5em 2em;
          align-items: start; }
section > div, .below { min-width: 0; }
figure { margin: 0; min-width: 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.5em; max-width: 100%; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td { white-space: nowrap; }
table.cells { width: 100%; }
table.cells td:last-child { white-space: normal; width: 100%; min-width: 14em; }
td ul { margin: 0; padding-left: 1.1em; }
.reason { white-space: normal; overflow-wrap: break-word; word-break: normal; hyphens: manual; }
details.reason summary { cursor: pointer; }
details.reason .more { color: #0645ad; }
.scroll { overflow-x: auto; max-width: 100%; }
.matrix th { white-space: normal; }
.error { color: #b00; font-weight: bold; }
/* A phone: each table row becomes a card, each cell a line with its column's name. */
@media (max-width: 700px) {
  body { padding: 0 0.6em; }
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; width: 100%; }
  table.cards thead { display: none; }
  table.cards tr { border: 1px solid #ddd; border-radius: 4px; margin-bottom: 0.6em; padding: 0.3em 0.5em; }
  table.cards td { border: none; padding: 1px 0; white-space: normal; min-width: 0; }
  table.cards td:empty { display: none; }
  table.cards td::before { content: attr(data-label) ": "; color: #555; }
  table.cards td:last-child { min-width: 0; }
}
"""


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _page(out: Path, sections: list[Section], students: int, failed: int) -> str:
    # Every string from OUT's files is escaped (_e); the policy is a second wall: the page has no script, loads
    # nothing and sends nothing (its figures are data: URLs), so nothing a student id or reason holds can.
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Class report: {_e(out.name)}</title><style>{STYLE}</style></head><body>",
        "<h1>Class report</h1>",
        f"<p class='meta'>{students} student(s), from {_e(out / 'grades.csv')}"
        + (
            f" &middot; <span class='error'>{failed} grading error(s), left out of every statistic</span>"
            if failed
            else ""
        )
        + "</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{_e(section.title)}</h2><section><div>{section.beside}</div>")
        if section.png:
            data = base64.b64encode(section.png).decode()
            parts.append(f"<figure><img alt='{_e(section.title)}' src='data:image/png;base64,{data}'></figure>")
        parts.append("</section>" + (f"<div class='below'>{section.below}</div>" if section.below else ""))
    parts.append("</body></html>")
    return "\n".join(parts)
