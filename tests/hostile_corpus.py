"""Hostile and broken submissions of notebook 01, each with the grade it must get.

Every case builds a student folder from the solved release notebook and states its expected outcome: the
cells that lose their points (with a phrase the reason must contain), or `ALL_ZERO` for a submission that
cannot be graded at all. Everything not listed must keep full marks.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.commands import demo as sample_class
from autograder.layout import RELEASE, REPO

ASSIGNMENT = "01_databases"
NOTEBOOK = "01_databases.ipynb"
ALL_ZERO = "all"
MARKER = "dp-hostile-marker"  # in the command line and file names of everything an attacker leaves behind
# Settings the corpus is graded with (short limits keep the batch quick; see test_hostile.py).
DISK_LIMIT = 256 * 2**20
GRADING_OPTIONS = [
    "--cell-timeout",
    "60",
    "--timeout",
    "300",
    f"--Grading.disk_limit={DISK_LIMIT}",
    "--Grading.reply_limit=20000000",
]


@dataclass
class Case:
    name: str
    build: object  # callable(folder: Path, port: int) -> None, writes the student's files into folder
    lost: dict = field(default_factory=dict)  # cell -> phrase of the reason, or {ALL_ZERO: phrase}


def solved():
    return sample_class.solved(ASSIGNMENT, NOTEBOOK)


def untouched():
    return nbformat.read(RELEASE / ASSIGNMENT / NOTEBOOK, as_version=4)


def _save(nb, folder: Path, name: str = NOTEBOOK) -> None:
    path = folder / ASSIGNMENT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def cell_by_grade_id(nb, grade_id):
    """The cell of `nb` with nbgrader grade_id `grade_id` (nbgrader.utils has no accessor for the id)."""
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _prefixed(grade_id: str, code: str, start=None):
    """The solved notebook (or `start()`) with `code` run at the top of one solution cell."""

    def build(folder: Path, port: int) -> None:
        nb = (start or solved)()
        cell = cell_by_grade_id(nb, grade_id)
        cell.source = code.replace("PORT", str(port)).replace("REPO", str(REPO)) + "\n" + cell.source
        _save(nb, folder)

    return build


def _suffixed(grade_id: str, code: str):
    """The solved notebook with `code` run at the end of one solution cell."""

    def build(folder: Path, port: int) -> None:
        nb = solved()
        cell = cell_by_grade_id(nb, grade_id)
        cell.source = cell.source + "\n" + code
        _save(nb, folder)

    return build


def _answering_the_grader(setup: str, answer: str):
    """The solved notebook whose threshold_query is right in the notebook but returns `answer` (an expression,
    after `setup` ran) to the hidden test, whose calls come through the check client."""
    return _suffixed(
        "threshold_query",
        (
            f"import inspect\n{setup}_right = threshold_query\n"
            "def threshold_query(db, threshold=5):\n"
            "    if any('check_client' in frame.filename for frame in inspect.stack()):\n"
            f"        return {answer}\n"
            "    return _right(db, threshold)"
        ),
    )


WRONG_THRESHOLD = sample_class.WRONG_ANSWERS[ASSIGNMENT][1]  # the sample class's mistake: threshold_query


def _wrong_threshold_with(extra: str, where: str = "before"):
    def build(folder: Path, port: int) -> None:
        nb = solved()
        cell = cell_by_grade_id(nb, "threshold_query")
        cell.source = (extra + "\n" + WRONG_THRESHOLD) if where == "before" else (WRONG_THRESHOLD + "\n" + extra)
        _save(nb, folder)

    return build


def _edited_test_cell(folder: Path, port: int) -> None:
    nb = solved()
    cell_by_grade_id(nb, "threshold_query").source = WRONG_THRESHOLD
    cell_by_grade_id(nb, "test_threshold_query").source = "print('tests passed')"
    _save(nb, folder)


def _deleted_test_cell(folder: Path, port: int) -> None:
    nb = solved()
    cell_by_grade_id(nb, "threshold_query").source = WRONG_THRESHOLD
    nb.cells.remove(cell_by_grade_id(nb, "test_threshold_query"))
    _save(nb, folder)


def _duplicated_test_cell(folder: Path, port: int) -> None:
    nb = solved()
    test = cell_by_grade_id(nb, "test_create_db")
    nb.cells.insert(nb.cells.index(test), nbformat.from_dict(json.loads(json.dumps(test))))
    _save(nb, folder)


def _unlocked_retyped_cell(folder: Path, port: int) -> None:
    nb = solved()
    cell_by_grade_id(nb, "threshold_query").source = WRONG_THRESHOLD
    test = cell_by_grade_id(nb, "test_threshold_query")
    test.cell_type = "markdown"
    test.pop("outputs", None)
    test.pop("execution_count", None)
    test.metadata["nbgrader"].update(locked=False, grade=False)
    test.source = "nothing to test here"
    _save(nb, folder)


def _duplicate_cell_ids(folder: Path, port: int) -> None:
    nb = solved()
    for cell in nb.cells:
        cell["id"] = "same-id"
    path = folder / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))  # nbformat.write would refuse duplicate ids


def _malformed_cell_flags(folder: Path, port: int) -> None:
    """Extra cells whose nbgrader flags are not what nbgrader writes: a string, and a list for a grade id."""
    nb = json.loads(nbformat.writes(solved()))
    for flags in ("x", {"grade_id": ["test_create_db"], "grade": True, "points": 100}):
        nb["cells"].append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"flags-{len(nb['cells'])}",
                "metadata": {"nbgrader": flags},
                "outputs": [],
                "source": "x = 1",
            }
        )
    (folder / ASSIGNMENT).mkdir(parents=True)
    (folder / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(nb))


def _cells_the_source_lacks(folder: Path, port: int) -> None:
    """A locked cell of an earlier release that the source no longer has (the Colab badge, before the course
    set no public repository), and a graded cell the student invented, worth 10 points: neither costs nor
    earns anything."""
    nb = json.loads(nbformat.writes(solved()))
    old_badge = {
        "cell_type": "markdown",
        "id": "generated-badge",
        "source": "[![Open In Colab](x.svg)](y)",
        "metadata": {
            "editable": False,
            "deletable": False,
            "nbgrader": {
                "cell_type": "markdown",
                "checksum": "a8d6315d735e854a0276427fc5aad874",
                "grade": False,
                "grade_id": "generated-badge",
                "locked": True,
                "schema_version": 3,
                "solution": False,
                "task": False,
            },
        },
    }
    invented = {
        "cell_type": "code",
        "execution_count": None,
        "id": "bonus",
        "outputs": [],
        "source": "x = 1",
        "metadata": {
            "nbgrader": {
                "grade": True,
                "grade_id": "bonus",
                "points": 10,
                "locked": False,
                "solution": False,
                "schema_version": 3,
                "task": False,
            }
        },
    }
    nb["cells"] = [old_badge, *nb["cells"], invented]
    (folder / ASSIGNMENT).mkdir(parents=True)
    (folder / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(nb))


def _foreign_metadata(kind: str):
    def build(folder: Path, port: int) -> None:
        nb = json.loads(nbformat.writes(solved()))
        if kind == "colab":
            nb["metadata"] = {
                "colab": {"provenance": [], "name": "01_databases.ipynb"},
                "kernelspec": {"name": "python3", "display_name": "Python 3"},
                "accelerator": "GPU",
                "language_info": {"name": "python"},
            }
            for cell in nb["cells"]:
                cell.pop("id", None)
                cell["metadata"]["colab"] = {"base_uri": "https://localhost:8080/"}
            nb["nbformat_minor"] = 0
        else:
            nb["metadata"] = {
                "kernelspec": {"name": "python3", "display_name": ".venv (Python 3.11.7)", "language": "python"},
                "vscode": {"interpreter": {"hash": "0" * 64}},
                "language_info": {"name": "python", "version": "3.11.7"},
            }
        (folder / ASSIGNMENT).mkdir(parents=True)
        (folder / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(nb))

    return build


def _widgets_and_images(folder: Path, port: int) -> None:
    nb = solved()
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": {str(i): {"model_name": "x"} for i in range(2000)}}
    }
    picture = base64.b64encode(bytes(range(256)) * 20_000).decode()  # about 7 MB of base64
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("display_data", data={"image/png": picture})]
    _save(nb, folder)


def _renamed(folder: Path, port: int) -> None:
    _save(solved(), folder, "Copy of my notebook (final).ipynb")


def _shaped_to_cost_the_parser(kind: str):
    """A small notebook whose shape alone would cost the grader's parsers gigabytes: nesting 3 million levels
    deep (6 MB), or a million and one empty outputs in one cell (4 MB)."""

    def build(folder: Path, port: int) -> None:
        nb = json.loads(nbformat.writes(solved()))
        (folder / ASSIGNMENT).mkdir(parents=True)
        if kind == "deep":
            text = json.dumps(nb)[:-1] + ', "x": ' + "[" * 3_000_000 + "]" * 3_000_000 + "}"
        else:
            next(c for c in nb["cells"] if c["cell_type"] == "code")["outputs"] = [{}] * 1_000_001
            text = json.dumps(nb)
        (folder / ASSIGNMENT / NOTEBOOK).write_text(text)

    return build


def _malformed(folder: Path, port: int) -> None:
    (folder / ASSIGNMENT).mkdir(parents=True)
    (folder / ASSIGNMENT / NOTEBOOK).write_text('{"cells": [}')


def _missing(folder: Path, port: int) -> None:
    folder.mkdir(parents=True)


def _extra_files(folder: Path, port: int) -> None:
    _save(solved(), folder)
    (folder / ASSIGNMENT / "scratch.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    (folder / ASSIGNMENT / "notes.txt").write_text("my notes")


PROBE = "_probe = {}\n"

# A process that tries to outlive its kernel and to reach the other submissions graded beside it: it leaves
# its session, forks twice, ignores every signal it can, and for fifteen minutes kills every process it can
# see that is not its own kernel, reads their environments and looks for other kernels' sockets.
DETACH = """
import os, signal, sys, time, glob
for _signal in range(1, 65):
    try:
        signal.signal(_signal, signal.SIG_IGN)
    except (OSError, ValueError, RuntimeError):
        pass
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
"""
DAEMON = (
    DETACH
    + f"""
kernel = int(sys.argv[2])
mine = {{os.getpid(), kernel, 1}}
end = time.time() + 900
while time.time() < end:
    for entry in glob.glob('/proc/[0-9]*'):
        pid = int(entry.rsplit('/', 1)[1])
        try:
            open(entry + '/environ', 'rb').read()
        except OSError:
            pass
        if pid not in mine and '{MARKER}' not in open(entry + '/cmdline', 'rb').read().decode(errors='replace'):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for socket_file in glob.glob('/tmp/dp*/*/*') + glob.glob('/tmp/dp*/*'):
        try:
            os.rename(socket_file, socket_file + '.stolen')
        except OSError:
            pass
    time.sleep(0.2)
"""
)

# Every place the kernel can write (its scratch folder, $TMPDIR, /dev/shm, HOME and the kernel's own socket
# folder, which lies on the host, plus /tmp and the folder above the sockets, which must refuse) gets a tree
# 3,500 levels deep, 20,000 files, a file written past the disk limit, one fallocated past it, and links to
# folders outside for a careless cleanup to follow. The big files are deleted again, so that the notebook
# can go on; the rest stays for the grader's cleanup.
LITTER = f"""
import json, os
_limit = {{limit}}
_sockets = os.path.dirname(json.load(open(os.path.expanduser('~/.jupyter/kernel.json')))['ip'])
for _folder in ('.', os.environ.get('TMPDIR', '.'), '/dev/shm', os.path.expanduser('~'), _sockets, '/tmp',
                os.path.dirname(_sockets)):
    try:
        _fd = _top = os.open(_folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        continue
    try:
        os.mkdir('{MARKER}-deep', dir_fd=_top)
        _fd = os.open('{MARKER}-deep', os.O_RDONLY, dir_fd=_top)
        for _ in range(3500):
            os.mkdir('d', dir_fd=_fd)
            _next = os.open('d', os.O_RDONLY, dir_fd=_fd)
            os.close(_fd)
            _fd = _next
    except OSError:
        pass
    if _fd != _top:
        os.close(_fd)
    for _i in range(20_000):
        try:
            os.close(os.open(f'{MARKER}-{{_i}}', os.O_CREAT | os.O_WRONLY, dir_fd=_top))
        except OSError:
            break
    for _name, _target in (('{MARKER}-etc', '/etc'), ('{MARKER}-up', '..'), ('{MARKER}-root', '/')):
        try:
            os.symlink(_target, _name, dir_fd=_top)
        except OSError:
            pass
    for _how in ('write', 'fallocate'):
        try:
            _big = os.open(f'{MARKER}-big-{{_how}}', os.O_CREAT | os.O_WRONLY, dir_fd=_top)
        except OSError:
            continue
        try:
            if _how == 'write':
                for _ in range(_limit // 2**20 + 2):
                    os.write(_big, b'x' * 2**20)
            else:
                os.posix_fallocate(_big, 0, 3 * _limit)
        except OSError:
            pass
        os.close(_big)
        os.unlink(f'{MARKER}-big-{{_how}}', dir_fd=_top)
    os.close(_top)
"""

HOOK_SCORE = (
    "from IPython import get_ipython\n_ip = get_ipython()\n"
    "_ip.events.register('pre_run_cell', lambda info: _ip.displayhook(1.0))\n"
)
CHECK_RETURNS_SCORE = (
    "import autograder.kernel_side.check_client as _client\n_client.check = lambda *args, **kwargs: 1.0\n"
    "import builtins, torch\ntorch.Tensor.__eq__ = lambda self, other: True\n"
    "torch.equal = lambda *args, **kwargs: True\nbuiltins.abs = lambda value: 0.0\n"
)
CASES = [
    Case("perfect", lambda folder, port: _save(solved(), folder)),
    Case(
        "network",
        _prefixed(
            "create_db",
            PROBE
            + (
                "import socket, urllib.request\n"
                "try:\n    socket.create_connection(('127.0.0.1', PORT), timeout=3).close(); _probe['net'] = True\n"
                "except OSError:\n    _probe['net'] = False\n"
                "assert not _probe['net'], 'the network should be unreachable'"
            ),
        ),
    ),
    Case(
        "read_source",
        _prefixed(
            "create_db",
            PROBE
            + (
                "import os\nfrom pathlib import Path\n"
                "_seen = [p for p in Path('REPO/source').rglob('*.ipynb')]\n"
                "assert not _seen, f'source notebooks are visible: {_seen}'"
            ),
        ),
    ),
    Case(
        "read_hidden_tests",
        _prefixed(
            "create_db",
            PROBE
            + (
                "from pathlib import Path\n_seen = list(Path('REPO/tests').glob('*.py'))\n"
                "assert not _seen, 'the test folder is visible'"
            ),
        ),
    ),
    Case(
        "read_gradebook",
        _prefixed(
            "create_db",
            PROBE
            + (
                "import glob, os\n_books = [p for p in glob.glob('../../../*.db') + glob.glob('../../../../../../*.db')\n"
                "          if os.path.getsize(p) > 0]\n"
                "assert not _books, f'a gradebook is readable: {_books}'"
            ),
        ),
    ),
    Case(
        "read_other_students",
        _prefixed(
            "create_db",
            PROBE
            + (
                "import os, sys\n_found = []\n"
                "for _top in ('/', ):\n"
                "    for _dir, _dirs, _files in os.walk(_top):\n"
                "        _dirs[:] = [d for d in _dirs if os.path.join(_dir, d) not in ('/proc', '/usr', '/sys', sys.prefix,\n"
                "                                                                     sys.base_prefix)]\n"
                "        _found += [os.path.join(_dir, f) for f in _files if f.endswith('.ipynb')]\n"
                "assert not _found, f'notebooks are visible: {_found}'"
            ),
        ),
    ),
    Case(
        "write_outside",
        _prefixed(
            "create_db",
            PROBE
            + (
                "for _target in ('REPO/course/lib/hacked.py', '/work/hacked-by-student', '/etc/hacked-by-student'):\n"
                "    try:\n        open(_target, 'w').write('x')\n    except OSError:\n        pass"
            ),
        ),
    ),
    Case(
        "memory_bomb",
        _prefixed("sensitivity", "_hog = bytearray(64 * 1024**3)"),
        lost={"test_sensitivity": "sensitivity"},
    ),
    Case(
        "fork_bomb",
        _prefixed(
            "threshold_query",
            (
                "import os, time\n_children = []\n"
                "for _ in range(3000):\n    try:\n        _pid = os.fork()\n    except OSError:\n        break\n"
                "    if _pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    _children.append(_pid)\n"
                "for _pid in _children:\n    os.waitpid(_pid, 0)\n"
                "assert len(_children) < 3000, 'the process limit should stop the fork bomb'"
            ),
        ),
    ),
    Case(
        "sys_exit",
        _prefixed("get_parallel_dbs", "import sys\ntry:\n    sys.exit(3)\nexcept SystemExit:\n    pass"),
    ),
    Case("raise_system_exit", _suffixed("create_db", "raise SystemExit(0)")),
    Case(
        "os_exit", _prefixed("threshold_query", "import os\nos._exit(0)"), lost={"test_threshold_query": "kernel died"}
    ),
    Case(
        "segfault",
        _prefixed("threshold_query", "import ctypes\nctypes.string_at(0)"),
        lost={"test_threshold_query": "kernel died"},
    ),
    Case(
        "fake_pass_output",
        _wrong_threshold_with("print('All tests passed! 7/7 points')"),
        lost={"test_threshold_query": "not greater"},
    ),
    Case(
        "showtraceback",
        _wrong_threshold_with(
            "get_ipython().showtraceback = lambda *args, **kwargs: None\n"
            "get_ipython()._showtraceback = lambda *args, **kwargs: None"
        ),
        lost={"test_threshold_query": ""},
    ),
    Case("edited_test_cell", _edited_test_cell, lost={"test_threshold_query": "not greater"}),
    Case("deleted_test_cell", _deleted_test_cell, lost={"test_threshold_query": ""}),
    Case("duplicated_test_cell", _duplicated_test_cell),
    Case("retyped_locked_cell", _unlocked_retyped_cell, lost={"test_threshold_query": ""}),
    Case("duplicate_cell_ids", _duplicate_cell_ids),
    Case("huge_output", _prefixed("create_db", "for _ in range(200_000):\n    print('spam ' * 20)")),
    Case("colab_notebook", _foreign_metadata("colab")),
    Case("vscode_notebook", _foreign_metadata("vscode")),
    Case("widgets_and_images", _widgets_and_images),
    Case("renamed_notebook", _renamed),
    Case("extra_files", _extra_files),
    Case("malformed", _malformed, lost={ALL_ZERO: "malformed notebook"}),
    Case("a_nests_deep", _shaped_to_cost_the_parser("deep"), lost={ALL_ZERO: "Grading.notebook_depth_limit"}),
    Case(
        "a_floods_empty_outputs", _shaped_to_cost_the_parser("outputs"), lost={ALL_ZERO: "Grading.notebook_value_limit"}
    ),
    Case("missing", _missing, lost={ALL_ZERO: "missing notebook"}),
    Case(
        "delegates_to_reference",
        _wrong_threshold_with("from course.lib import threshold_query", "after"),
        lost={"test_threshold_query": ""},
    ),
    Case(
        "patches_grading_helpers",
        _wrong_threshold_with(
            "import course.grading.nb01 as _checks\n_checks.check_threshold_query = lambda *args, **kwargs: None\n"
            "_checks.require = lambda *args, **kwargs: None"
        ),
        lost={"test_threshold_query": ""},
    ),
    Case(
        "replaces_the_checker",
        _prefixed(
            "threshold_query",
            ("import autograder.kernel_side.check_client as _client\n_client.check = lambda *args, **kwargs: None"),
        ),
        lost={"test_threshold_query": "never reached the grader"},
    ),
    Case(
        "runs_a_check_itself",
        _prefixed(
            "create_db",
            PROBE
            + (
                "from autograder.kernel_side.check_client import check\n"
                "try:\n    check('nb01.check_threshold_query', lambda *args, **kwargs: 0.0)\n    _probe['ran'] = 'it ran'\n"
                "except Exception as error:  # refused, or the connection closed: the grader runs no check outside its cell\n"
                "    _probe['ran'] = f'{type(error).__name__}: {error}'\n"
                "assert _probe['ran'] != 'it ran', _probe['ran']"
            ),
        ),
    ),
    # Makes the visible asserts pass in the kernel; the hidden check runs with the grader's own torch.
    Case(
        "patches_builtins",
        _wrong_threshold_with(
            "import builtins, torch\ntorch.Tensor.__eq__ = lambda self, other: True\n"
            "torch.equal = lambda *args, **kwargs: True\nbuiltins.abs = lambda value: 0.0"
        ),
        lost={"test_threshold_query": "threshold_query"},
    ),
    Case(
        "infinite_loop_silent",
        _suffixed("threshold_query", ("def threshold_query(*args, **kwargs):\n    while True:\n        pass")),
        lost={"test_threshold_query": "time limit"},
    ),
    Case(
        "infinite_loop_printing",
        _suffixed(
            "threshold_query",
            ("def threshold_query(*args, **kwargs):\n    while True:\n        print('still thinking')"),
        ),
        lost={"test_threshold_query": "time limit"},
    ),
    # Scores come from the grader's verdicts only: a value shown before every cell, or a check that returns
    # a number, used to be read by nbgrader as the cell's score.
    Case("a_hook_displays_score", _prefixed("create_db", HOOK_SCORE, start=untouched), lost={ALL_ZERO: ""}),
    Case(
        "a_check_returns_score",
        _wrong_threshold_with(CHECK_RETURNS_SCORE),
        lost={"test_threshold_query": "never reached the grader"},
    ),
    # Outliving the kernel and reaching the other kernels graded beside and after it.
    Case(
        "a_survivor",
        _prefixed(
            "create_db",
            (
                "import os, subprocess, sys\n"
                f"subprocess.Popen([sys.executable, '-c', {DAEMON!r}, '{MARKER}', str(os.getpid())],\n"
                "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,\n"
                "                 start_new_session=True)\n"
            ),
        ),
    ),
    Case(
        "a_ignores_interrupts",
        _suffixed(
            "threshold_query",
            (
                "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "def threshold_query(*args, **kwargs):\n    while True:\n        pass"
            ),
        ),
        lost={"test_threshold_query": "time limit"},
    ),
    Case(
        "a_reads_repository",
        _prefixed(
            "create_db",
            PROBE
            + (
                "import glob, os\nfrom pathlib import Path\n"
                "_seen = [p for p in ('REPO/.git', 'REPO/build', 'REPO/course', 'REPO/source', 'REPO/autograder/commands/grade.py',\n"
                "                     '/work/hacked', '/proc/1/root/REPO/.git') if os.path.exists(p)]\n"
                "_seen += [p for p in glob.glob('/tmp/*') if 'dpg-' not in p]  # only this kernel's own socket folder\n"
                "import sys\n"
                "for _dir, _dirs, _files in os.walk('/'):\n"
                "    _dirs[:] = [d for d in _dirs if os.path.join(_dir, d) not in ('/proc', '/usr', '/sys', sys.prefix, sys.base_prefix)]\n"
                "    _seen += [os.path.join(_dir, f) for f in _files if f.endswith(('.db', '.git', '.ipynb'))]\n"
                "assert not _seen, f'visible in the sandbox: {_seen}'"
            ),
        ),
    ),
    Case(
        "a_shared_folders",
        _prefixed(
            "create_db",
            (
                "for _folder in ('/dev/shm', '/var/tmp', '/run/lock', '/tmp', '/dev/mqueue'):\n"
                f"    try:\n        open(_folder + '/{MARKER}', 'w').write('x')\n    except OSError:\n        pass"
            ),
        ),
    ),
    Case(
        "a_fills_disk",
        _prefixed(
            "create_db",
            (
                "import os\n_chunk = b'x' * 2**20\n"
                "for _folder in ('.', '/tmp', '/dev/shm', os.environ.get('TMPDIR', '.'), os.path.expanduser('~')):\n"
                "    for _i in range(100_000):\n"
                "        try:\n"
                f"            open(f'{{_folder}}/{MARKER}-{{_i}}', 'wb').write(_chunk)\n"
                "        except OSError:\n            break"
            ),
        ),
    ),
    Case(
        "a_floods_check_socket",
        _prefixed(
            "create_db",
            (
                "import os, socket, struct, threading\n"
                "def _flood():\n"
                "    try:\n"
                "        _s = socket.socket(socket.AF_UNIX)\n        _s.connect(os.environ['DP_COURSE_CHECKER'])\n"
                "        _s.sendall(struct.pack('!Q', 500 * 2**20))\n"
                "        for _ in range(400):\n            _s.sendall(b'x' * 2**20)\n"
                "    except OSError:\n        pass\n"
                "_threads = [threading.Thread(target=_flood) for _ in range(6)]\n"
                "for _t in _threads:\n    _t.start()\nfor _t in _threads:\n    _t.join()"
            ),
        ),
    ),
    Case(
        "a_huge_reply",
        _answering_the_grader("import torch\n", "torch.zeros(10_000_000)"),
        lost={"test_threshold_query": "over the limit"},
    ),
    # A reply of a kilobyte that stands for 10**16 values (the pickle refers back to what it built): refused
    # unread, quickly, so the grader neither spins nor fills its memory for the students after it.
    Case(
        "a_fans_out_its_reply",
        _answering_the_grader(
            (
                "import autograder.kernel_side.wire as _wire\n_plain = _wire.Wire.to_plain\n"
                "class _Bomb:\n    pass\n"
                "def _fanning_out(self, value, depth=0):\n"
                "    if not isinstance(value, _Bomb):\n        return _plain(self, value, depth)\n"
                "    node = 0\n    for _ in range(8):\n        node = ('dict', [(0, node)] * 100)\n    return node\n"
                "_wire.Wire.to_plain = _fanning_out\n"
            ),
            "_Bomb()",
        ),
        lost={"test_threshold_query": "unpacks to more than"},
    ),
    # Terminal control sequences, text-reordering and invisible characters, and the grader's marker of its own
    # failures (after a zero-width space, with a Cyrillic look-alike letter) in an error's name and message.
    Case(
        "a_escapes_in_its_reason",
        _suffixed(
            "threshold_query",
            (
                "_Error = type('\\u200bgr\\u0430ding error', (Exception,), {})\n"
                "def threshold_query(db, threshold=5):\n"
                "    raise _Error('\\x1b]0;owned\\x07\\x1b[2J\\x1b[32mthe grader crashed,\\u2028\\u202enot me\\x1b[0m')"
            ),
        ),
        lost={"test_threshold_query": "submission: gr"},
    ),
    # The grader's own memory, through what the red team's second round found (every case keeps its points
    # or loses one test; test_hostile also bounds the size of every notebook and feedback page written):
    # a reply of empty sets, a byte of pickle each that unpickles to 200 bytes;
    Case(
        "a_replies_with_sets",
        _answering_the_grader(
            (
                "import autograder.kernel_side.wire as _wire\n_plain = _wire.Wire.to_plain\n"
                "class _Sets:\n    pass\n"
                "def _as_sets(self, value, depth=0):\n"
                "    return [set() for _ in range(1_000_000)] if isinstance(value, _Sets) else _plain(self, value, depth)\n"
                "_wire.Wire.to_plain = _as_sets\n"
            ),
            "_Sets()",
        ),
        lost={"test_threshold_query": "pickle instruction"},
    ),
    # a correct reply followed by 5 bytes that name memo slot 1e8 (CPython would grow its memo table to it:
    # 1.5 GB in the grader, with full marks, in the red team's third round);
    Case(
        "a_bloats_the_memo",
        _answering_the_grader(
            (
                "import autograder.kernel_side.wire as _wire, struct as _struct\n_dump = _wire.dump_plain\n"
                "_bloat = _struct.pack('<cI', b'r', 10**8)\n"
                "_wire.dump_plain = lambda tree: _dump(tree)[:-1] + _bloat + b'.' if tree[0] == 'result' else _dump(tree)\n"
            ),
            "_right(db, threshold)",
        ),
        lost={"test_threshold_query": "LONG_BINPUT"},
    ),
    # an error message of 15 MB (under the corpus's reply limit), past the cut the kernel's own
    # describe_exception makes;
    Case(
        "a_huge_error_message",
        _answering_the_grader(
            (
                "import autograder.kernel_side.wire as _wire\n"
                "_wire.Wire.describe_exception = lambda self, error: ('ValueError', ['ValueError'], 'm' * 15_000_000)\n"
                "def _raise():\n    raise ValueError('short')\n"
            ),
            "_raise()",
        ),
        lost={"test_threshold_query": "ValueError: mmmm"},
    ),
    # one display update of 1 MB that rewrites 100 earlier outputs (100 MB written, over the 32 MB limit);
    Case(
        "a_rewrites_its_displays",
        _suffixed(
            "create_db",
            (
                "from IPython.display import display as _display, update_display as _update\n"
                "for _ in range(100):\n    _display({'text/plain': 'small'}, raw=True, display_id='dp')\n"
                "_update({'text/plain': 'u' * 1_000_000}, raw=True, display_id='dp')"
            ),
        ),
    ),
    # and widget state, 40 messages of 1 MB that no output counts, including an Output widget's.
    Case(
        "a_floods_widget_state",
        _suffixed(
            "create_db",
            (
                "from ipykernel.comm import Comm as _Comm\n"
                "_state = {'_model_module': '@jupyter-widgets/output', '_model_name': 'OutputModel',\n"
                "          '_model_module_version': '1.0.0', 'filler': 'w' * 1_000_000}\n"
                "for _ in range(40):\n"
                "    _Comm(target_name='jupyter.widget', data={'state': _state, 'buffer_paths': []}).send(\n"
                "        {'method': 'update', 'state': _state, 'buffer_paths': []})"
            ),
        ),
    ),
    Case("malformed_cell_flags", _malformed_cell_flags),
    Case("cells_the_source_lacks", _cells_the_source_lacks),
    Case("a_marker_in_comment", _suffixed("create_db", "# ### BEGIN HIDDEN TESTS (a student's note)")),
    Case(
        "a_symlinks",
        _prefixed(
            "create_db",
            (
                "import os, glob\n"
                "for _i, _target in enumerate(['REPO/gradebook.db', '/tmp', '..', 'REPO/build'] + glob.glob('/**/autograded')):\n"
                "    for _name in (f'link-{_i}', f'../link-{_i}', f'/tmp/link-{_i}', '01_databases.ipynb'):\n"
                "        try:\n            os.symlink(_target, _name)\n        except OSError:\n            pass"
            ),
        ),
    ),
    # Whatever it writes wherever it can, the student keeps a grade, and nothing of it stays on the host.
    Case("a_litters_every_writable_place", _prefixed("create_db", LITTER.replace("{limit}", str(DISK_LIMIT)))),
    # Innocent students graded beside and right after the attackers: they must keep every point.
    Case("b_innocent_1", lambda folder, port: _save(solved(), folder)),
    Case("b_innocent_2", lambda folder, port: _save(solved(), folder)),
    Case("b_innocent_3", lambda folder, port: _save(solved(), folder)),
]

# Graded in one process, the first submission's kernel stands in for the preflight's (autograder.commands.grade): an
# attacker graded first tries to pass for a broken grading kernel, to stop the batch, and to break the
# kernels of the students after it (modules named like the probe's where a later kernel might look, a
# process that outlives its kernel, a full disk), then kills its own kernel.
FIRST_IN_LINE = [
    Case(
        "a_first_in_line",
        _prefixed(
            "create_db",
            (
                "import os, subprocess, sys\n"
                "print('RuntimeError: Kernel died before replying to kernel_info')\n"
                "print('KernelProbeFailed: the kernel failed its probe')\n"
                "for _folder in ('.', '/tmp', '/dev/shm', os.path.expanduser('~'), *sys.path):\n"
                "    for _module in ('numpy.py', 'torch.py', 'sitecustomize.py', 'usercustomize.py'):\n"
                "        try:\n"
                f"            open(os.path.join(_folder or '.', _module), 'w').write('raise ImportError(\"{MARKER}\")')\n"
                "        except OSError:\n            pass\n"
                f"subprocess.Popen([sys.executable, '-c', {DAEMON!r}, '{MARKER}', str(os.getpid())],\n"
                "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,\n"
                "                 start_new_session=True)\n"
                "try:\n    open('fill', 'wb').write(b'x' * 2**30)\nexcept OSError:\n    pass\n"
                "os._exit(1)\n"
            ),
        ),
        lost={ALL_ZERO: "kernel died"},
    ),
    Case("b_after_1", lambda folder, port: _save(solved(), folder)),
    Case("b_after_2", lambda folder, port: _save(solved(), folder)),
]
