"""The class report from hand-written OUT files: text, statistics without grading errors, the HTML page, and
that page in headless Chromium at 1280, 1600 and 390 px: nothing overflows its column, reasons wrap between
words (screenshots in build/screenshots; `make screenshots` refreshes docs/screenshots)."""

import base64
import csv
import math
import random
import re
import struct
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser import browser_missing, open_chromium
from locations import FIXTURES as ALL_FIXTURES  # noqa: E402
from locations import REPO  # noqa: E402

from autograder.commands import report as reporting
from autograder.term import late

FIXTURES = ALL_FIXTURES / "lms"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "course.toml"
    path.write_text(
        '[course]\ntime_zone = "UTC"\n[due]\n"01_databases" = "2027-03-01 22:59"\n'
        '"02_differencing" = "2027-03-08 22:59"\n'
        '[late]\nplugin = "autograder.term.late.PerDayPenalty"\n'
    )
    return late.load_config(path)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def test_grading_errors_are_never_zeros(out, config):
    text = reporting.report(out, config)
    # 02_differencing/test_c: ada 5, bob 3, dee 5 and cy's grading error. As a zero it would be 13/4 = 3.25.
    assert "02_differencing/test_c: mean 4.33/5, passed 67% of 3 (1 grading error(s) left out)" in text
    assert "02_differencing: 3 submissions, mean 86.7% of the automatic points (1 with a grading error" in text
    assert "Grading errors: 1 cell(s)" in text and "cy/02_differencing/test_c: grading error:" in text
    table = text.splitlines()[1:6]
    assert re.search(r"^cy\s+5 / 5\s+grading error$", "\n".join(table), re.M)
    assert "Manually graded answers awaiting a grade: 1" in text


def test_late_counts_penalties_and_reasons(out, config):
    text = reporting.report(out, config)
    assert "02_differencing: 1 late, 1 on time" in text
    assert "01_databases: 1 late, time unknown, 1 on time" in text
    assert "penalty 1 of 5 points: ada/02_differencing" in text  # 2 started days x 10% of 5
    assert "check by hand: bob/01_databases" in text
    assert "2 x AssertionError: the count of smokers is off by one" not in text  # bob and dee, different cells
    assert "1 x AssertionError: the count of smokers is off by one; check the boundary of your query" in text


def test_html_page_has_the_text_and_its_figures(out, config):
    text = reporting.report(out, config)
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Pass rate per cell" in page
    images = _images(page)
    assert len(images) == 3  # distribution, pass rate, late counts
    for png in images:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 400 and height > 250
    assert "NameError: name &#x27;count_smokers&#x27; is not defined" in page  # escaped
    assert (out / "report.txt").read_text().strip() == text.strip()
    assert (out / "report.png").read_bytes() == images[1]


def test_late_counts_follow_todays_due_dates(out, tmp_path):
    path = tmp_path / "extended.toml"
    path.write_text(
        '[course]\ntime_zone = "UTC"\n[due]\n"02_differencing" = "2027-03-08 22:59"\n'
        '[extensions.ada]\n"02_differencing" = 2\n'
    )
    text = reporting.report(out, late.load_config(path))
    assert "01_databases: 2 no due date" in text and "02_differencing: 2 on time" in text
    assert "penalty" not in text and "check by hand" not in text


def test_report_without_late_file(out, config):
    (out / "late.csv").unlink()
    text = reporting.report(out, config)
    assert "no late.csv" in text and len(_images((out / "report.html").read_text())) == 2


ASSIGNMENTS = [
    "01_databases",
    "02_differencing",
    "03_randomized_response",
    "04_laplace",
    "05_pate",
    "06_dpsgd",
    "07_membership",
]
FIRST_DUE = datetime(2027, 3, 1, 22, 59, tzinfo=UTC)  # one assignment a week


def _synthetic_class(out: Path, students: int = 28) -> None:
    """A hand-built class in grades.csv/late.csv form (fixed seed): 7 assignments, 3 cells each, a few
    grading errors, ungraded answers and late notebooks."""
    rng = random.Random(16)
    reasons = [
        "AssertionError: the noise scale should be sensitivity / epsilon",
        "AssertionError: the noise is added to the mean instead of the sum",
        "NameError: name 'laplace_mechanism' is not defined",
        "the test cell did not pass",
        "AssertionError: dp_grads returned gradients whose noise has the wrong standard deviation: expected about "
        "noise_multiplier * max_grad_norm / len(batch_data) per coordinate, measured over 2000 seeded draws; check "
        "that the noise is added once to the summed clipped gradients and not to every example",
    ]
    assignments = ASSIGNMENTS
    grades, lateness, inputs = [], [], []
    for i in range(students):
        student = f"student{i:02d}"
        skill = rng.random()
        for assignment in assignments:
            notebook = f"{assignment}.ipynb"
            for cell, points in (("test_a", 2), ("test_b", 3), ("test_c", 5)):
                if rng.random() < 0.02:
                    grades.append(
                        [
                            student,
                            assignment,
                            notebook,
                            cell,
                            "auto",
                            "",
                            points,
                            "grading error: the grading worker died; regrade this submission",
                        ]
                    )
                elif rng.random() < 0.35 + 0.6 * skill:
                    grades.append([student, assignment, notebook, cell, "auto", points, points, ""])
                else:
                    grades.append([student, assignment, notebook, cell, "auto", 0, points, rng.choice(reasons)])
            grades.append([student, assignment, notebook, "written", "manual", "" if rng.random() < 0.2 else 1, 1, ""])
            inputs.append(
                [student, assignment, notebook, f"{rng.getrandbits(64):016x}", f"{4 + 20 * rng.random():.2f}"]
            )
            roll = rng.random()
            due = FIRST_DUE + timedelta(weeks=assignments.index(assignment))
            seconds = -rng.randint(60, 200000) if roll < 0.8 else rng.randint(600, 200000) if roll < 0.95 else None
            submitted = "" if seconds is None else (due + timedelta(seconds=seconds)).isoformat()
            lateness.append(
                [
                    student,
                    assignment,
                    notebook,
                    submitted,
                    "zip" if submitted else "",
                    due.isoformat(),
                    "" if seconds is None else max(seconds, 0),
                    int(roll >= 0.8),
                    "",
                    "0",
                    "late, time unknown" if seconds is None else "",
                ]
            )
    with open(out / "grades.csv", "w", newline="") as file:
        csv.writer(file).writerows(
            [["student", "assignment", "notebook", "cell", "kind", "score", "max_score", "reason"], *grades]
        )
    with open(out / "late.csv", "w", newline="") as file:
        csv.writer(file).writerows([late.LATE_COLUMNS, *lateness])
    with open(out / "inputs.csv", "w", newline="") as file:
        csv.writer(file).writerows([["student", "assignment", "notebook", "digest", "grading_seconds"], *inputs])


SCREENSHOTS = REPO / "build" / "screenshots"  # `make screenshots` copies them into docs/screenshots
# Every element's box against its section's, reasons' words each on one line, lines of several words.
MEASURE = """() => {
  const width = document.documentElement.clientWidth;
  const outside = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('.scroll') && !el.classList.contains('scroll')) continue;  // a matrix scrolls in its box
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    const column = (el.closest('section > *, .below, section') || document.body).getBoundingClientRect();
    if (box.left < column.left - 1 || box.right > column.right + 1 || box.right > width + 1)
      outside.push(el.tagName + '.' + el.className + ': ' + Math.round(box.left) + '-' + Math.round(box.right)
                   + ' in ' + Math.round(column.left) + '-' + Math.round(column.right));
  }
  const reasons = [];
  for (const el of document.querySelectorAll('.reason')) {
    const summary = el.querySelector('summary') || el;
    const text = summary.firstChild && summary.firstChild.nodeType === 3 ? summary.firstChild : null;
    const words = [], tops = new Set();
    if (text) {
      const re = /\\S+/g; let m;
      while ((m = re.exec(text.data))) {
        const range = document.createRange();
        range.setStart(text, m.index); range.setEnd(text, m.index + m[0].length);
        const rects = Array.from(range.getClientRects()).filter(r => r.width > 0);
        words.push([m[0], rects.length]);
        if (rects.length) tops.add(Math.round(rects[0].top));
      }
    }
    reasons.push({words: words, lines: tops.size, clipped: el.scrollWidth > el.clientWidth + 1,
                  width: el.getBoundingClientRect().width});
  }
  return {outside: outside, reasons: reasons, overflow: document.documentElement.scrollWidth - width};
}"""


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graded")
    _synthetic_class(out)
    course = out.parent / "course.toml"
    course.write_text(
        '[course]\ntime_zone = "UTC"\n[due]\n'
        + "".join(f'"{a}" = "{(FIRST_DUE + timedelta(weeks=i)).isoformat()}"\n' for i, a in enumerate(ASSIGNMENTS))
        + '[late]\nplugin = "autograder.term.late.PerDayPenalty"\n'
    )
    text = reporting.report(out, late.load_config(course))
    assert "penalty" in text and "Hardest cells" in text and "Grading time per notebook" in text
    return out


def test_the_report_puts_the_hardest_cells_first_and_times_grading(synthetic_report):
    text = (synthetic_report / "report.txt").read_text()
    hardest = text.split("Hardest cells (lowest pass rate first)\n")[1].split("\n\n")[0].splitlines()
    rates = [int(re.search(r"passed (\d+)%", line).group(1)) for line in hardest]
    assert rates == sorted(rates) and len(rates) == reporting.HARDEST
    assert re.search(r"01_databases: median \d+\.\d, slowest \d+\.\d \(student\d\d\), 28 notebooks", text)
    page = (synthetic_report / "report.html").read_text()
    assert "<details class='reason'>" in page  # the long reason is cut, its whole text one click away
    assert "<h2>Grading time</h2>" in page


@pytest.mark.slow  # a browser
@pytest.mark.parametrize("width", [1280, 1600, 390])
def test_report_reads_at_any_width(synthetic_report, width):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = open_chromium(playwright, profile, width, 900, offline=True)
        try:
            page = context.new_page()
            page.goto((synthetic_report / "report.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width])"
            )
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.innerText)")
            measured = page.evaluate(MEASURE)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"report-{width}.png"), full_page=True)
        finally:
            context.close()
    assert len(images) == 3 and all(done and natural > 400 and shown > 300 for done, natural, shown in images)
    assert headings == [
        "Scores",
        "Pass rate per cell",
        "Late submissions",
        "Grading errors and pending grades",
        "Grading time",
    ]
    assert measured["overflow"] <= 0, "the page is wider than the window"
    assert not measured["outside"], measured["outside"][:10]
    assert len(measured["reasons"]) > 20
    for reason in measured["reasons"]:
        words = reason["words"]
        assert not reason["clipped"], reason
        assert all(rects == 1 for _, rects in words), f"a word broken across lines: {words}"
        if len(words) >= 6:  # several words a line, never one word per line
            assert reason["lines"] <= math.ceil(len(words) / 3), reason
    assert (SCREENSHOTS / f"report-{width}.png").stat().st_size > 20000
