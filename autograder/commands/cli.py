"""The instructor command line of spec section 6: `python -m autograder {release,grade,report,export,manual,demo}`."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from autograder.batch import preflight
from autograder.commands import demo as sample_class
from autograder.commands import export as exporting
from autograder.commands import grade as grading
from autograder.commands import manual
from autograder.commands import release as releasing
from autograder.intake import submissions as intake
from autograder.layout import REPO, SOURCE, OutFolder
from autograder.settings import GradingSettings, load_grading
from autograder.sinks.safe_text import for_terminal, read_rows


class _GradingHelp(argparse.Action):
    """`grade --help-all`: every traitlet of Grading (every limit), as traitlets describes it."""

    def __call__(self, parser, namespace, values, option_string=None):
        from autograder.settings import Grading

        print(Grading.class_get_help())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("release", help="regenerate release/ from source/ and check that nothing leaks")
    grade = commands.add_parser(
        "grade",
        help="autograde SUBMISSIONS (folder or zip) into OUT; any setting of "
        "autograder.settings.Grading can also be given as "
        "--Grading.<name>=<value>",
    )
    grade.add_argument(
        "--help-all", action=_GradingHelp, nargs=0, help="list every Grading setting, with its default, and exit"
    )
    grade.add_argument("submissions", type=Path)
    grade.add_argument("--out", type=Path, required=True)
    grade.add_argument("--assignment", action="append", dest="assignments", metavar="ID")
    grade.add_argument("--workers", type=int, help="Dask LocalCluster worker processes (Grading.workers)")
    grade.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on an existing Dask scheduler (e.g. tcp://host:8786) instead of a LocalCluster",
    )
    grade.add_argument(
        "--gradebook",
        metavar="URL",
        help="class gradebook: a database URL (e.g. postgresql://...) or a SQLite file (default OUT/gradebook.db)",
    )
    grade.add_argument(
        "--student-regexp",
        default=intake.CANVAS_FILE,
        help="for flat LMS exports: regular expression with a (?P<student_id>...) group applied "
        "to file names, as nbgrader zip_collect's named_regexp (default: Canvas names)",
    )
    grade.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        default=None,
        help="run student kernels without the bubblewrap sandbox (only where none can be built; grades.csv records it)",
    )
    grade.add_argument(
        "--timeout",
        type=float,
        help="time limit per notebook, in seconds (Grading.notebook_timeout: its sandbox's CPU time where cgroups "
        "count it, else wall-clock time)",
    )
    grade.add_argument(
        "--cell-timeout", type=float, help="time limit per cell, in seconds, counted alike (Grading.cell_timeout)"
    )
    grade.add_argument(
        "--student",
        action="append",
        dest="students",
        metavar="ID",
        help="grade only this student (repeatable); the others' grades in OUT stay as they are",
    )
    grade.add_argument(
        "--force",
        action="store_true",
        help="regrade every submission, even those whose inputs did not change since OUT last graded them",
    )
    report = commands.add_parser("report", help="class statistics of a graded OUT folder")
    report.add_argument("out", type=Path)
    exporting.add_parser(commands)
    manual.add_parser(commands)
    demo = commands.add_parser("demo", help="release, then grade and report a small sample class")
    demo.add_argument("--out", type=Path, default=REPO / "build" / "demo")
    demo.add_argument("--workers", type=int, help="Dask LocalCluster worker processes (default: Grading.workers)")
    args, settings_argv = parser.parse_known_args(argv)
    if settings_argv and args.command != "grade":
        parser.error(f"unrecognized arguments: {' '.join(settings_argv)}")

    try:
        if args.command == "release":
            ids = releasing.release()
            print(f"released {', '.join(ids)} into release/; leak scan: clean")
        elif args.command == "grade":
            settings = load_grading(
                argv=settings_argv,
                workers=args.workers,
                notebook_timeout=args.timeout,
                cell_timeout=args.cell_timeout,
                scheduler=args.scheduler,
                sandbox=args.sandbox,
            )
            run_grade(
                args.submissions,
                args.out,
                args.assignments,
                settings,
                gradebook=args.gradebook,
                student_regexp=args.student_regexp,
                students=args.students,
                force=args.force,
            )
        elif args.command == "report":
            from autograder.commands import report as reporting  # matplotlib is imported only for a report

            print(reporting.report(args.out))
            print(f"wrote {for_terminal(args.out / 'report.html')}")
        elif args.command == "export":
            exporting.run(args)
        elif args.command == "manual":
            manual.run(args)
        elif args.command == "demo":
            from autograder.commands import report as reporting

            ids = releasing.release()
            print(f"released {', '.join(ids)} into release/; leak scan: clean")
            students = sample_class.build(args.out / "submissions")
            print(f"sample class: {', '.join(students)}")
            run_grade(args.out / "submissions", args.out / "graded", None, load_grading(workers=args.workers))
            reporting.report(args.out / "graded")
            print(reporting.grade_table(reporting.load(args.out / "graded")))
            print(f"class report: {args.out / 'graded' / 'report.html'}")
    except (releasing.ReleaseError, preflight.PreflightError, ValueError, FileNotFoundError) as error:
        print(f"error: {for_terminal(error)}", file=sys.stderr)
        return 1
    except Exception:  # a fault of the grader: its traceback, with any student text it quotes escaped
        print(for_terminal(traceback.format_exc(), keep_lines=True), file=sys.stderr, end="")
        return 1
    return 0


def run_grade(
    submissions: Path,
    out: Path,
    ids: list[str] | None,
    settings: GradingSettings,
    gradebook: str | None = None,
    student_regexp: str = intake.CANVAS_FILE,
    students: list[str] | None = None,
    force: bool = False,
) -> None:
    start = time.perf_counter()
    rows, summary = grading.grade_class(
        submissions,
        out,
        ids,
        SOURCE,
        gradebook,
        student_regexp,
        settings,
        progress=True,
        students=students,
        force=force,
    )
    print(
        f"graded {summary.submissions} notebook(s) of {summary.students} student(s), {len(rows)} cells in "
        f"{time.perf_counter() - start:.1f} s{'' if summary.sandboxed else ' WITHOUT the sandbox'}; wrote "
        f"{for_terminal(out / 'grades.csv')}, {for_terminal(out / 'feedback')} and the gradebook"
    )
    if summary.unchanged:
        print(f"{summary.unchanged} notebook(s) unchanged since they were last graded: grades kept (--force regrades)")
    if summary.grading_errors:
        print(
            f"{len(summary.grading_errors)} grading error(s), not counted against the students; rerun to regrade them:"
        )
        for student, notebook, reason in summary.grading_errors[:10]:
            print(f"  {for_terminal(student)} {for_terminal(notebook)}: {for_terminal(reason[:160])}")
    if summary.feedback_missing:
        print(f"{len(summary.feedback_missing)} feedback page(s) could not be made (scores stand)")
    notes = read_rows(OutFolder(out).intake)
    if notes:
        print(f"{len(notes)} file(s) found but not graded: see {for_terminal(out / 'intake.csv')}")
