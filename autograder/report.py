"""`python -m autograder report OUT`: class statistics from OUT/grades.csv, as text and a figure."""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

TOP_REASONS = 3


def load(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


def totals(rows: list[dict]) -> dict[tuple[str, str], tuple[float, float]]:
    """(student, assignment) -> (automatic score, automatic maximum)."""
    result: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        if row["kind"] == "auto":
            entry = result[(row["student"], row["assignment"])]
            entry[0] += float(row["score"] or 0)
            entry[1] += float(row["max_score"])
    return {key: (score, maximum) for key, (score, maximum) in result.items()}


def grade_table(rows: list[dict]) -> str:
    """Students down, assignments across: automatic score / maximum."""
    scores = totals(rows)
    students = sorted({s for s, _ in scores})
    assignments = sorted({a for _, a in scores})
    width = max([len(s) for s in students] + [7])
    lines = ["student".ljust(width) + "".join(f"  {a:>16}" for a in assignments)]
    for student in students:
        cells = []
        for assignment in assignments:
            score, maximum = scores.get((student, assignment), (0.0, 0.0))
            cells.append(f"  {f'{score:g} / {maximum:g}':>16}")
        lines.append(student.ljust(width) + "".join(cells))
    return "\n".join(lines)


def cell_statistics(rows: list[dict]) -> list[dict]:
    """Per assignment and automatic cell: mean score, pass rate and the most common failure reasons."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "auto":
            groups[(row["assignment"], row["cell"])].append(row)
    stats = []
    for (assignment, cell), members in groups.items():
        scores = [float(r["score"] or 0) for r in members]
        passed = sum(float(r["score"] or 0) >= float(r["max_score"]) for r in members)
        reasons = Counter(r["reason"] for r in members if r["reason"])
        stats.append({"assignment": assignment, "cell": cell, "mean": sum(scores) / len(scores),
                      "max_score": float(members[0]["max_score"]), "pass_rate": passed / len(members),
                      "count": len(members), "reasons": reasons.most_common(TOP_REASONS)})
    return stats


def report(out: Path) -> str:
    """Write OUT/report.txt and OUT/report.png; return the text."""
    rows = load(out)
    lines = ["Automatic scores per student and assignment", grade_table(rows), ""]
    scores = totals(rows)
    for assignment in sorted({a for _, a in scores}):
        marks = [s / m for (_, a), (s, m) in scores.items() if a == assignment and m]
        lines.append(f"{assignment}: {len(marks)} submissions, mean {100 * sum(marks) / max(len(marks), 1):.1f}% "
                     "of the automatic points")
    lines += ["", "Per cell: mean score, pass rate, most common reasons for lost points"]
    stats = cell_statistics(rows)
    for item in stats:
        lines.append(f"  {item['assignment']}/{item['cell']}: mean {item['mean']:.2f}/{item['max_score']:g}, "
                     f"passed {item['pass_rate']:.0%} of {item['count']}")
        lines += [f"      {count} x {reason}" for reason, count in item["reasons"]]
    manual = sum(1 for row in rows if row["kind"] == "manual" and row["score"] == "")
    lines.append(f"\nManually graded answers awaiting a grade: {manual}")
    text = "\n".join(lines)
    (out / "report.txt").write_text(text + "\n")
    _figure(stats, out / "report.png")
    return text


def _figure(stats: list[dict], path: Path) -> None:
    labels = [f"{s['assignment'][:2]}/{s['cell'].removeprefix('test_')}" for s in stats]
    fig, axis = plt.subplots(figsize=(max(6, 0.45 * len(stats) + 2), 4))
    axis.bar(range(len(stats)), [100 * s["pass_rate"] for s in stats], color="tab:blue")
    axis.set_xticks(range(len(stats)), labels, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("students passing (%)")
    axis.set_xlabel("assignment / graded cell")
    axis.set_ylim(0, 100)
    axis.set_title("Pass rate per autograded cell")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
