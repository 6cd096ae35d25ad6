"""The whole grading flow into a PostgreSQL class gradebook (`grade --gradebook postgresql://...`), against a
real PostgreSQL server that this module starts on loopback and stops afterwards.

A tiny class of one assignment (a perfect, a one-wrong-function and an untouched submission) is graded twice
through the CLI, with 2 Dask workers and the sandbox, into the same database: the second run must change
nothing but keep a manual score a grader gave in between. Skipped, with the reason, only where no PostgreSQL
server binaries are installed (Debian: `apt-get install postgresql`).
"""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from cli import run_grade

from autograder.commands import demo as sample_class
from autograder.commands.grade import graded_cells
from autograder.layout import SOURCE, notebooks

pytestmark = pytest.mark.slow  # every test here starts a kernel, a browser or a server

ASSIGNMENT = "01_databases"
NOTEBOOK = notebooks(ASSIGNMENT)[0]
WRONG_FUNCTION = sample_class.WRONG_ANSWERS[ASSIGNMENT][0]
STUDENTS = ("perfect", "one_wrong", "untouched")
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
MANUAL_SCORE = 0.5  # what a grader gives between the two runs


def _server_bin_dir() -> Path | None:
    """A folder holding initdb, pg_ctl and postgres: next to pg_ctl on PATH, or Debian's and source builds'."""
    candidates = []
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).parent)
    # Newest major version first; Debian keeps the server out of PATH.
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path("/usr/local/bin"), Path("/usr/local/pgsql/bin"), Path("/usr/bin")]
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in SERVER_TOOLS):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://... of an empty database on a throwaway server on 127.0.0.1, stopped at teardown."""
    bin_dir = _server_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH, in /usr/lib/postgresql/*/bin "
            "or /usr/local/bin: install them (Debian: apt-get install postgresql) to run this test"
        )
    run_as = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the PostgreSQL server as")
        # No extra_groups: the server must not keep root's supplementary groups.
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    # Directly under /tmp, not pytest's tmp_path: pytest's folder is private to root, and the Unix socket
    # path must stay short.
    root = Path(tempfile.mkdtemp(prefix="pg-test-", dir="/tmp"))
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    data, log, port = root / "data", root / "server.log", _free_port()

    def pg(*args, **kwargs):
        return subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            **run_as,
            **kwargs,
        )

    try:
        initdb = pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8")
        assert initdb.returncode == 0, f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}"
        # fsync off: a test database need not survive a power cut, and it saves seconds per run.
        start = pg(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off",
            "start",
        )
        assert start.returncode == 0, f"pg_ctl start failed:\n{start.stderr}\n{log.read_text() if log.exists() else ''}"
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE gradebook")
        yield f"postgresql://postgres@127.0.0.1:{port}/gradebook"
    finally:
        if data.exists():
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _grade(submissions: Path, out: Path, url: str) -> None:
    result = run_grade(
        str(submissions),
        str(out),
        "--assignment",
        ASSIGNMENT,
        "--workers",
        "2",
        "--gradebook",
        url,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as file:
        return list(csv.DictReader(file))


def _table_counts(url: str) -> dict[str, int]:
    """Rows in every table of the gradebook: a regrade that duplicated anything would change one."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in sa.inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def graded(postgres_url, tmp_path_factory):
    """Grade the class, give one manual score, grade it again; the counts and rows of both runs."""
    from nbgrader.api import Gradebook

    root = tmp_path_factory.mktemp("postgres-class")
    versions = {
        "perfect": sample_class.solved(ASSIGNMENT, NOTEBOOK),
        "one_wrong": sample_class.solved(ASSIGNMENT, NOTEBOOK, replace=dict([sample_class.WRONG_ANSWERS[ASSIGNMENT]])),
        "untouched": nbformat.read(sample_class.RELEASE / ASSIGNMENT / NOTEBOOK, as_version=4),
    }
    for student, nb in versions.items():
        path = root / "submissions" / student / ASSIGNMENT / NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    out = root / "out"
    _grade(root / "submissions", out, postgres_url)
    first = {"rows": _rows(out), "counts": _table_counts(postgres_url)}
    manual_cell = next(c.name for c in graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK) if c.kind == "manual")
    with Gradebook(postgres_url) as gradebook:
        gradebook.find_grade(
            manual_cell, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, "perfect"
        ).manual_score = MANUAL_SCORE
        gradebook.db.commit()
    _grade(root / "submissions", out, postgres_url)
    second = {"rows": _rows(out), "counts": _table_counts(postgres_url)}
    return {"url": postgres_url, "first": first, "second": second, "manual_cell": manual_cell}


def _auto(rows, student):
    return [r for r in rows if r["student"] == student and r["kind"] == "auto"]


def test_grades_csv_scores_each_student(graded):
    rows = graded["first"]["rows"]
    cells = graded_cells(SOURCE / ASSIGNMENT / NOTEBOOK)
    assert len(rows) == len(STUDENTS) * len(cells)
    assert {r["student"] for r in rows} == set(STUDENTS)
    for row in _auto(rows, "perfect"):
        assert float(row["score"]) == float(row["max_score"]) and row["reason"] == "", row
    for row in _auto(rows, "one_wrong"):
        if row["cell"] == f"test_{WRONG_FUNCTION}":
            assert float(row["score"]) == 0 and row["reason"], row
        else:
            assert float(row["score"]) == float(row["max_score"]), row
    for row in _auto(rows, "untouched"):
        assert float(row["score"]) == 0 and row["reason"], row


def test_postgres_gradebook_holds_students_submissions_and_scores(graded):
    from nbgrader.api import Gradebook

    rows = graded["first"]["rows"]
    with Gradebook(graded["url"]) as gradebook:
        assert gradebook.engine.dialect.name == "postgresql"
        assert {s.id for s in gradebook.students} == set(STUDENTS)
        assert {s.student.id for s in gradebook.assignment_submissions(ASSIGNMENT)} == set(STUDENTS)
        for student in STUDENTS:
            auto = _auto(rows, student)
            # Every automatic cell of every student arrived: nothing lost by merging results of 2 workers.
            for row in auto:
                grade = gradebook.find_grade(row["cell"], NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, student)
                assert grade.auto_score == float(row["score"]), row
            if student != "perfect":  # the perfect student's score includes the manual grade given later
                assert gradebook.find_submission(ASSIGNMENT, student).score == sum(float(r["score"]) for r in auto)
    perfect_total = sum(float(r["max_score"]) for r in _auto(rows, "perfect"))
    with Gradebook(graded["url"]) as gradebook:
        assert gradebook.find_submission(ASSIGNMENT, "perfect").score == perfect_total + MANUAL_SCORE


def test_grading_again_duplicates_nothing(graded):
    first, second = graded["first"], graded["second"]
    assert second["counts"] == first["counts"]
    assert first["counts"]["student"] == len(STUDENTS)
    assert first["counts"]["submitted_assignment"] == len(STUDENTS)

    def automatic(rows):  # all but the cell whose manual score changed in between
        return [r for r in rows if not (r["student"] == "perfect" and r["cell"] == graded["manual_cell"])]

    assert automatic(second["rows"]) == automatic(first["rows"])


def test_regrade_keeps_the_manual_score_a_grader_gave(graded):
    row = next(r for r in graded["second"]["rows"] if r["student"] == "perfect" and r["cell"] == graded["manual_cell"])
    assert float(row["score"]) == MANUAL_SCORE and row["reason"] == "", row
