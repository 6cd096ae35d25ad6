"""`python -m autograder report OUT`: class statistics from OUT/grades.csv (and OUT/late.csv), as text, a figure
and one HTML page.

Interface: `report(out, config=None) -> str` writes OUT/report.txt, OUT/report.png (pass rate per cell) and
OUT/report.html (the text beside its figures: score distribution per assignment, pass rate per cell with its
most common failure reasons, late counts and penalties, grading errors; PNGs embedded, so the page is one
file), and returns the text. `config`: the course configuration (autograder.late), for the penalties.

A grading error (an empty score whose reason starts "grading error:") is the grader's failure, not the
student's: it is listed, and left out of every mean, pass rate and distribution, never counted as a zero. An
empty manual score is a written answer not graded yet: counted, and left out of the scores as well.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from . import export as exporting  # noqa: E402
from . import late as late_policy  # noqa: E402

TOP_REASONS = 3
GRADING_ERROR = exporting.GRADING_ERROR


def load(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


def is_grading_error(row: dict) -> bool:
    return row["score"] == "" and row["reason"].startswith(GRADING_ERROR)


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
    """Students down, assignments across: automatic score / maximum ("grading error" where the grader failed)."""
    scores = totals(rows)
    broken = {(r["student"], r["assignment"]) for r in errors(rows)}
    students = sorted({r["student"] for r in rows})
    assignments = sorted({r["assignment"] for r in rows})
    width = max([len(s) for s in students] + [7])
    lines = ["student".ljust(width) + "".join(f"  {a:>16}" for a in assignments)]
    for student in students:
        cells = []
        for assignment in assignments:
            if (student, assignment) in scores and (student, assignment) not in broken:
                score, maximum = scores[(student, assignment)]
                cells.append(f"  {f'{score:g} / {maximum:g}':>16}")
            else:
                cells.append(f"  {'grading error' if (student, assignment) in broken else '-':>16}")
        lines.append(student.ljust(width) + "".join(cells))
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
        stats.append({"assignment": assignment, "cell": cell, "mean": sum(scores) / max(len(scores), 1),
                      "max_score": float(members[0]["max_score"]),
                      "pass_rate": passed / len(scored) if scored else float("nan"),
                      "count": len(scored), "errors": len(members) - len(scored),
                      "reasons": reasons.most_common(TOP_REASONS)})
    return stats


def late_counts(late_rows: list[dict]) -> dict[str, dict[str, int]]:
    """assignment -> {'on time', 'late', 'late, time unknown', 'time unknown'} notebook counts."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in late_rows:
        if row["note"] == "not submitted":
            continue
        seconds = row["seconds_late"]
        if seconds:
            kind = "late" if float(seconds) > 0 else "on time"
        else:
            kind = "late, time unknown" if row["late_marker"] == "1" else "time unknown"
        counts[row["assignment"]][kind] += 1
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

    sections = []  # (title, text, figure PNG bytes or None)
    summary = ["Automatic scores per student and assignment", grade_table(rows), ""]
    for assignment in assignments:
        marks = [s / m for (_, a), (s, m) in scores.items() if a == assignment and m]
        broken = len({r["student"] for r in failed if r["assignment"] == assignment})
        summary.append(f"{assignment}: {len(marks)} submissions, mean "
                       f"{100 * sum(marks) / max(len(marks), 1):.1f}% of the automatic points"
                       + (f" ({broken} with a grading error, left out)" if broken else ""))
    sections.append(("Scores", "\n".join(summary), _distribution_figure(scores, assignments)))

    per_cell = ["Per cell: mean score, pass rate, most common reasons for lost points"]
    for item in stats:
        per_cell.append(f"  {item['assignment']}/{item['cell']}: mean {item['mean']:.2f}/{item['max_score']:g}, "
                        f"passed {_percent(item['pass_rate'])} of {item['count']}"
                        + (f" ({item['errors']} grading error(s) left out)" if item["errors"] else ""))
        per_cell += [f"      {count} x {reason}" for reason, count in item["reasons"]]
    pass_png = _pass_rate_figure(stats)
    (out / "report.png").write_bytes(pass_png)
    sections.append(("Pass rate per cell", "\n".join(per_cell), pass_png))

    counts = late_counts(late_rows)
    grades = exporting.assignment_grades(rows, late_rows, config)
    penalised = [(s, a, g.penalty, g.max_score) for (s, a), g in sorted(grades.items()) if g.penalty]
    lateness = ["Late submissions (notebooks), from late.csv"]
    if not late_rows:
        lateness.append("  no late.csv: submission times were not assessed")
    for assignment in sorted(counts):
        lateness.append(f"  {assignment}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts[assignment].items())))
    lateness += [f"  penalty {p:g} of {m:g} points: {s}/{a}" for s, a, p, m in penalised]
    unknown = [r for r in late_rows if not r["seconds_late"] and r["late_marker"] == "1"]
    lateness += [f"  check by hand: {r['student']}/{r['assignment']}/{r['notebook']}: {r['note']}" for r in unknown]
    sections.append(("Late submissions", "\n".join(lateness), _late_figure(counts) if counts else None))

    error_lines = [f"Grading errors: {len(failed)} cell(s), never counted as zeros (regrade them)"]
    error_lines += [f"  {r['student']}/{r['assignment']}/{r['cell']}: {r['reason']}" for r in failed]
    manual = sum(1 for row in rows if row["kind"] == "manual" and row["score"] == "" and not is_grading_error(row))
    error_lines.append(f"\nManually graded answers awaiting a grade: {manual}")
    sections.append(("Grading errors and pending grades", "\n".join(error_lines), None))

    text = "\n\n".join(body for _, body, _ in sections)
    (out / "report.txt").write_text(text + "\n")
    (out / "report.html").write_text(_page(out, sections, len({r["student"] for r in rows}), len(failed)))
    return text


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
    fig, axis = plt.subplots(figsize=(max(6, 0.45 * len(stats) + 2), 4))
    axis.bar(range(len(stats)), [100 * s["pass_rate"] if s["count"] else 0 for s in stats], color="tab:blue")
    axis.set_xticks(range(len(stats)), labels, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("students passing (%)")
    axis.set_xlabel("assignment / graded cell")
    axis.set_ylim(0, 100)
    axis.set_title("Pass rate per autograded cell")
    return _png(fig)


def _late_figure(counts: dict[str, dict[str, int]]) -> bytes:
    assignments = sorted(counts)
    kinds = [("on time", "tab:green"), ("late", "tab:red"), ("late, time unknown", "tab:orange"),
             ("time unknown", "tab:gray")]
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
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 1.5em auto; max-width: 1400px;
       color: #1d1d1d; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; }
.meta { color: #555; margin-top: 0; }
section { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1.5em; align-items: start;
          margin-bottom: 1.5em; }
section.wide { grid-template-columns: minmax(0, 1fr); }
pre { font-size: 0.82em; background: #f6f6f6; padding: 0.8em; overflow-x: auto; white-space: pre-wrap;
      margin: 0; }
img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
.error { color: #a00; }
"""


def _page(out: Path, sections, students: int, failed: int) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>Class report: {html.escape(out.name)}</title><style>{STYLE}</style></head><body>",
             "<h1>Class report</h1>",
             f"<p class='meta'>{students} student(s), from {html.escape(str(out / 'grades.csv'))}"
             + (f" &middot; <span class='error'>{failed} grading error(s), left out of every statistic</span>"
                if failed else "") + "</p>"]
    for title, text, png in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><section class='{'' if png else 'wide'}'>"
                     f"<pre>{html.escape(text)}</pre>")
        if png:
            parts.append(f"<figure><img alt='{html.escape(title)}' "
                         f"src='data:image/png;base64,{base64.b64encode(png).decode()}'></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
