"""A real grading run through the CLI, then `manual`: each feedback page opens with where the student stands,
its written answers awaiting grading (never 0) until a grader scores them, and then the page shows the score; its
formulas are typeset offline from OUT's own MathJax."""

from __future__ import annotations

import re
import shutil
import tempfile

import pytest
from browser import CHROMIUM, CHROMIUM_FLAGS, browser_missing
from cli import run_cli

from autograder.commands import demo as sample_class
from autograder.layout import assignments, notebooks
from autograder.sinks import safe_text

pytestmark = pytest.mark.slow  # a grading run and a browser

ASSIGNMENT = "04_laplace"
STUDENTS = ("perfect", "one_wrong")


def _page(out, student: str) -> str:
    return (out / "feedback" / student / ASSIGNMENT / notebooks(ASSIGNMENT)[0]).with_suffix(".html").read_text()


def _summary(page: str) -> str:
    return re.search(r'<section id="standing">.*?</section>', page, re.S).group(0)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    assert ASSIGNMENT in assignments()
    root = tmp_path_factory.mktemp("class")
    sample_class.build(root / "all")
    for student in STUDENTS:
        shutil.copytree(root / "all" / student / ASSIGNMENT, root / "submissions" / student / ASSIGNMENT)
    result = run_cli(
        "grade", root / "submissions", "--out", root / "out", "--assignment", ASSIGNMENT, "--workers", "1", timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


def test_the_page_opens_with_where_the_student_stands(graded):
    rows = safe_text.read_rows(graded / "grades.csv")
    for student in STUDENTS:
        mine = [r for r in rows if r["student"] == student]
        auto = [r for r in mine if r["kind"] == "auto"]
        earned, possible = sum(float(r["score"]) for r in auto), sum(float(r["max_score"]) for r in auto)
        summary = _summary(_page(graded, student))
        assert f"{earned:g} of {possible:g} points" in summary
        written = [r for r in mine if r["kind"] == "manual"]
        assert f"{len(written)} of {len(written)} awaiting grading" in summary
        page = _page(graded, student)
        assert not re.search(r"Score: 0(\.0)? / 1(\.0)?\b", page) or student == "one_wrong"
        for cell in (r["cell"] for r in written):
            start = page.index(f'id="cell-{cell}"')
            assert "awaiting grading" in page[start : page.index("</div>", start)]
    failed = [r for r in rows if r["student"] == "one_wrong" and r["kind"] == "auto" and r["reason"]]
    summary = _summary(_page(graded, "one_wrong"))
    assert failed and f"Failed cells ({len(failed)})" in summary
    for row in failed:
        assert f'href="#cell-{row["cell"]}"' in summary
        assert row["reason"].split(": ", 1)[-1][:30] in summary.replace("&#x27;", "'").replace("&gt;", ">")
    assert "Every automatic test passed." in _summary(_page(graded, "perfect"))


def test_a_manual_grade_is_shown_on_the_page_and_math_renders_offline(graded):
    assert run_cli("manual", graded, timeout=300).returncode == 0
    sheets = sorted((graded / "manual" / ASSIGNMENT).glob("*.csv"))
    rows = safe_text.read_rows(sheets[0])
    for row in rows:
        row["score"] = row["max_score"] if row["student"] == "perfect" else ""
    with open(sheets[0], "w", newline="") as file:
        writer = safe_text.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    done = run_cli("manual", graded, "--scores", sheets[0], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 feedback page(s) made again" in done.stdout
    summary = _summary(_page(graded, "perfect"))
    written = len(sheets)
    assert f"; {written - 1} of {written} awaiting grading" in summary or written == 1
    cell = sheets[0].stem
    page = _page(graded, "perfect")
    start = page.index(f'id="cell-{cell}"')
    assert "Score: 1 / 1" in page[start : page.index("</div>", start)]

    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    target = (graded / "feedback" / "perfect" / ASSIGNMENT / notebooks(ASSIGNMENT)[0]).with_suffix(".html")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, offline=True
        )
        outside: list[str] = []
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:", "about:"))
                else (outside.append(route.request.url), route.abort())
            ),
        )
        try:
            browser_page = context.new_page()
            browser_page.goto(target.as_uri())
            browser_page.wait_for_function(
                "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0"
                " && document.querySelectorAll('span.MathJax').length > 0",
                timeout=60_000,
            )
            shown = browser_page.evaluate(
                "() => Array.from(document.querySelectorAll('.rendered_html')).map(e => e.innerText).join('\\n')"
            )
        finally:
            context.close()
    assert not outside, outside
    assert "\\varepsilon" not in shown and not re.search(r"\$[^$\s][^$]*\$", shown), "TeX source left on the page"
