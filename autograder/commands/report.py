"""`python -m autograder report OUT`: class statistics from OUT/grades.csv (and OUT/late.csv), as text, a figure
and one HTML page.

Interface: `report(out, config=None) -> str` writes OUT/report.txt, OUT/report.png (pass rate per cell) and
OUT/report.html (the text beside its figures: score distribution per assignment, pass rate per cell with its
most common failure reasons, late counts and penalties, grading errors; PNGs embedded, so the page is one
file), and returns the text. `config`: the course configuration (autograder.term.late), for the penalties.

A grading error (an empty score whose reason starts "grading error:") is the grader's failure, not the
student's: it is listed, and left out of every mean, pass rate and distribution, never counted as a zero. An
empty manual score is a written answer not graded yet: counted, and left out of the scores as well.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from autograder.batch.submission import is_grading_error  # noqa: E402
from autograder.commands import export as exporting  # noqa: E402
from autograder.sinks.safe_text import for_terminal, read_rows  # noqa: E402
from autograder.term import late as late_policy  # noqa: E402

TOP_REASONS = 3


def load(out: Path) -> list[dict]:
    return read_rows(out / "grades.csv")


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
    late_rows = late_policy.read_late(out / "late.csv")
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
    text = "\n\n".join("\n".join(part) for part in (summary, per_cell, lateness, error_lines))
    (out / "report.txt").write_text(text + "\n")

    pass_png = _pass_rate_figure(stats)
    (out / "report.png").write_bytes(pass_png)
    # (title, HTML beside the figure, figure, HTML below both, CSS class)
    sections = [
        ("Scores", *_html_scores(rows, scores, means), _distribution_figure(scores, assignments), ""),
        ("Pass rate per cell", _html_cells(stats), "", pass_png, "cells"),
        (
            "Late submissions",
            _html_late(late_rows, counts, penalised, unknown),
            "",
            _late_figure(counts) if counts else None,
            "",
        ),
        ("Grading errors and pending grades", _html_errors(failed, manual), "", None, ""),
    ]
    (out / "report.html").write_text(_page(out, sections, len({r["student"] for r in rows}), len(failed)))
    return text


def _e(value) -> str:
    return html.escape(str(value))


def _table(header: list[str], body: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table; cells are already escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    lines = []
    for i, row in enumerate(body):
        css = f" class='{classes[i]}'" if classes and classes[i] else ""
        lines.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


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
    return means_html, "<h3>Automatic score per student</h3>" + _table(header, body)


def _html_cells(stats) -> str:
    body = []
    for item in stats:
        reasons = "".join(f"<li>{count} &times; {_e(reason)}</li>" for reason, count in item["reasons"])
        body.append(
            [
                f"{_e(item['assignment'])}/<b>{_e(item['cell'])}</b>",
                f"{item['mean']:.2f}&thinsp;/&thinsp;{item['max_score']:g}",
                f"{_percent(item['pass_rate'])} of {item['count']}",
                f"<span class='error'>{item['errors']}</span>" if item["errors"] else "",
                f"<ul>{reasons}</ul>" if reasons else "",
            ]
        )
    return _table(["cell", "mean", "passed", "grading errors (left out)", "most common reasons for lost points"], body)


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
                [[_e(r["student"]), _e(f"{r['assignment']}/{r['notebook']}"), _e(r["note"])] for r in unknown],
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
                [[_e(r["student"]), _e(f"{r['assignment']}/{r['cell']}"), _e(r["reason"])] for r in failed],
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


def _distribution_figure(scores, assignments: list[str]) -> bytes:
    data = [[100 * s / m for (_, a), (s, m) in scores.items() if a == assignment and m] for assignment in assignments]
    fig, axis = plt.subplots(figsize=(max(5.5, 0.9 * len(assignments) + 2), 3.8))
    positions = range(1, len(assignments) + 1)
    shown = [values or [float("nan")] for values in data]
    axis.boxplot(shown, positions=list(positions), widths=0.5, showfliers=False)
    for position, values in zip(positions, data):
        # Points spread sideways in a fixed pattern (no randomness), so every student is visible.
        offsets = [((i % 7) - 3) * 0.05 for i in range(len(values))]
        axis.scatter([position + o for o in offsets], values, s=14, alpha=0.6, color="tab:blue", zorder=3)
    axis.set_xticks(list(positions), [a.replace("_", " ", 1) for a in assignments], rotation=30, ha="right")
    axis.set_ylim(-5, 105)
    axis.set_ylabel("automatic score (% of points)")
    axis.set_xlabel("assignment")
    axis.set_title("Score distribution per assignment (grading errors left out)")
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
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 1.5em auto; max-width: 1500px;
       color: #1d1d1d; padding: 0 1em; font-size: 14px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #ccc; margin-top: 1.6em; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
.meta { color: #555; margin-top: 0; }
section { display: grid; grid-template-columns: minmax(0, 1.25fr) minmax(0, 1fr); gap: 2em; align-items: start; }
section > div { overflow-x: auto; }
section.wide { grid-template-columns: minmax(0, 1fr); }
section.cells { grid-template-columns: minmax(0, 1.7fr) minmax(0, 1fr); }
.below { overflow-x: auto; }
figure { margin: 0; position: sticky; top: 1em; }
img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.5em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: left; vertical-align: top;
         white-space: nowrap; }
td li { white-space: normal; }
th { background: #f2f2f2; }
td ul { margin: 0; padding-left: 1.1em; }
.error { color: #b00; font-weight: bold; }
"""


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _page(out: Path, sections, students: int, failed: int) -> str:
    # Every string from OUT's files is escaped (_e); the policy is a second wall: the page has no script, loads
    # nothing and sends nothing (its figures are data: URLs), so nothing a student id or reason holds can.
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">",
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
    for title, beside, below, png, css in sections:
        parts.append(f"<h2>{_e(title)}</h2><section class='{css if png else 'wide'}'><div>{beside}</div>")
        if png:
            parts.append(
                f"<figure><img alt='{_e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'></figure>"
            )
        parts.append("</section>" + (f"<div class='below'>{below}</div>" if below else ""))
    parts.append("</body></html>")
    return "\n".join(parts)
