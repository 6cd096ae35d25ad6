"""The grading sandbox attacked from inside a real sandboxed kernel: what it sees, what it may write, what
it may reach, and that nothing it starts survives it (autograder.sandbox.bubblewrap, autograder.batch.preflight)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hostile_corpus import DETACH

from autograder.batch import preflight
from autograder.layout import REPO
from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import load_grading

pytestmark = [  # every test here starts a sandbox
    pytest.mark.slow,
    pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=sandbox.unavailable_reason() or "ok"),
]
MARKER = "dp-sandbox-test-marker"


def run(client, code: str, timeout: float = 60):
    """Run `code` in the kernel; return what it printed (stdout) and the error name, if any."""
    printed, errors = [], []

    def hook(message):
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            errors.append(f"{message['content']['ename']}: {message['content']['evalue']}")

    client.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)
    return "".join(printed), errors


def marked_processes() -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if MARKER.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def settings():
    return load_grading(argv=["--Grading.disk_limit=67108864"])


@pytest.fixture(scope="module")
def kernel(settings):
    with preflight.sandboxed_kernel(settings) as (client, manager):
        yield client, manager


def test_sees_only_the_allow_list(kernel, settings):
    client, _ = kernel
    printed, errors = run(
        client,
        f"""
        import json, os, sys
        checks = {{p: os.path.exists(p) for p in ({str(REPO / ".git")!r}, {str(REPO / "course")!r},
                  {str(REPO / "source")!r}, {str(REPO / "build")!r}, {str(REPO / "autograder" / "commands" / "grade.py")!r},
                  '/home', '/var/tmp', '/run/lock', '/etc/shadow', '/etc/hostname')}}
        import numpy, torch, autograder.kernel_side.check_client
        repo = sorted(os.listdir({str(REPO)!r})) if os.path.isdir({str(REPO)!r}) else []
        print(json.dumps({{"exists": checks, "repo": repo, "uid": os.getuid(), "cwd": os.getcwd(), "root": sorted(os.listdir('/')),
                          "pids": sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
                          "client": autograder.kernel_side.check_client.__file__, "course": __import__('importlib').util.find_spec('course') is not None}}))
    """,
    )
    assert not errors, errors
    seen = json.loads(printed)
    assert not any(seen["exists"].values()), seen["exists"]
    assert seen["uid"] == sandbox.INSIDE_UID and seen["cwd"] == sandbox.SCRATCH
    # The Python installation at its own paths; a virtual environment and the datasets at fixed ones, so that
    # where the repository lives shows nowhere (and nothing of it at all).
    installation = [Path(p) for p in sandbox.python_paths() if p != sandbox.virtual_environment()]
    tops = {p.parts[1] for p in installation} | {
        "usr",
        "bin",
        "sbin",
        "lib",
        "lib32",
        "lib64",
        "etc",
        "proc",
        "dev",
        "scratch",
        "tmp",
        "venv",
        "data",
    }
    assert set(seen["root"]) <= tops, seen["root"]
    assert not seen["repo"] or any(REPO in p.parents for p in installation), seen["repo"]
    assert len(seen["pids"]) <= 4, f"the kernel sees processes outside its sandbox: {seen['pids']}"
    assert not seen["course"], "the course package (reference and hidden tests) is importable"


def test_no_network(kernel):
    client, _ = kernel
    server = socket.create_server(("127.0.0.1", 0))
    try:
        printed, _ = run(
            client,
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2); print("connected")
            except OSError as error:
                print("refused", error)
        """,
        )
    finally:
        server.close()
    assert printed.startswith("refused"), printed


def test_writable_places_share_one_disk_limit(kernel, settings):
    """The scratch folder, $TMPDIR, /dev/shm and (as root, where it is a tmpfs of its own) the kernel's socket
    folder on the host: together no more than the disk limit, and the socket folder holds a few files only."""
    client, _ = kernel
    root = os.geteuid() == 0
    printed, errors = run(
        client,
        f"""
        import json, os
        written = {{}}
        sockets = os.path.dirname(json.load(open("/scratch/.jupyter/kernel.json"))["ip"])
        for index in range(1000):
            try:
                open(os.path.join(sockets, f"many-{{index}}"), "w").close()
            except OSError:
                break
        written["files in the socket folder"] = index
        for name in os.listdir(sockets):
            if name.startswith("many-"):
                os.remove(os.path.join(sockets, name))
        for folder in ("/scratch", os.environ["TMPDIR"], "/dev/shm", *([sockets] if {root} else [])):
            written[folder] = 0
            try:
                with open(os.path.join(folder, "fill"), "wb") as file:
                    for _ in range({settings.disk_limit // 2**20}):
                        file.write(b"x" * 2**20); file.flush(); written[folder] += 1
            except OSError:
                pass
        for folder in ("/", "/usr", "/etc", "/dev", "/tmp", "/proc/sys"):
            try:
                open(os.path.join(folder, "w"), "w"); written["WRITABLE " + folder] = 1
            except OSError:
                pass
        for folder in ("/scratch", os.environ["TMPDIR"], "/dev/shm", *([sockets] if {root} else [])):
            os.remove(os.path.join(folder, "fill"))
        print(written)
    """,
        timeout=120,
    )
    assert not errors, errors
    written = eval(printed)  # noqa: S307 (our own kernel's dict of ints)
    assert not any(key.startswith("WRITABLE") for key in written), written
    files = written.pop("files in the socket folder")
    if root:
        assert files < sandbox.SOCKET_FOLDER_INODES, f"{files} files in the socket folder"
    total = sum(written.values())
    limit_mib = settings.disk_limit // 2**20
    assert limit_mib - 2 <= total <= limit_mib, f"{written}: the three places must share one {limit_mib} MiB limit"


def test_runs_as_its_own_host_uid_with_limits(kernel, settings):
    _, manager = kernel
    pid = manager.provisioner.process.pid  # bubblewrap, as nbgrader's kernel manager started it
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    if os.geteuid() == 0:
        assert uid >= sandbox.UID_BASE
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert str(settings.process_limit) in next(line for line in limits.splitlines() if "processes" in line)
    else:
        assert uid == os.geteuid()


def test_fork_bomb_is_bounded(kernel, settings):
    client, _ = kernel
    printed, _ = run(
        client,
        """
        import os, time
        children = []
        for _ in range(5000):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(2); os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        print(len(children))
    """,
        timeout=120,
    )
    assert int(printed) < settings.process_limit


DAEMON = DETACH + "time.sleep(600)\n"  # leaves its session, forks twice, ignores every signal it can


def _start_daemon(client) -> None:
    run(
        client,
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", {DAEMON!r}, {MARKER!r}], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import time; time.sleep(1)
    """,
    )


def test_nothing_survives_the_kernel(settings):
    with preflight.sandboxed_kernel(settings) as (client, _):
        _start_daemon(client)
        assert marked_processes(), "the daemon did not start"
    time.sleep(1)
    assert not marked_processes(), "a process that ignores signals outlived its sandbox"


def test_nothing_survives_the_grader(tmp_path):
    """The grading process is killed outright: bubblewrap's --die-with-parent takes the sandbox down."""
    script = tmp_path / "grader.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        # The repository first: tests/autograder would otherwise pass for the autograder package.
        sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}, {str(Path(__file__).parents[2])!r}]
        from autograder.batch import preflight
        from autograder.settings import load_grading
        from test_sandbox import _start_daemon
        with preflight.sandboxed_kernel(load_grading()) as (client, _):
            _start_daemon(client)
            print("ready", flush=True)
            time.sleep(600)
    """)
    )
    grader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert grader.stdout.readline().strip() == "ready"
        assert marked_processes()
    finally:
        grader.send_signal(signal.SIGKILL)
        grader.wait()
    for _ in range(50):
        if not marked_processes():
            break
        time.sleep(0.2)
    assert not marked_processes(), "a student process outlived the grader that started it"


def test_host_abstract_sockets_and_kernel_files_are_out_of_reach(kernel):
    """Abstract Unix sockets belong to the network namespace; /sys and /proc's writable knobs are not there."""
    client, _ = kernel
    host = socket.socket(socket.AF_UNIX)
    host.bind("\0dp-sandbox-abstract-probe")
    host.listen(1)
    try:
        printed, _ = run(
            client,
            """
            import socket
            results = []
            try:
                probe = socket.socket(socket.AF_UNIX); probe.connect("\\0dp-sandbox-abstract-probe")
                results.append("CONNECTED")
            except OSError as error:
                results.append(type(error).__name__)
            for path in ("/sys/fs/cgroup/x", "/proc/sysrq-trigger"):
                try:
                    open(path, "w").write("x"); results.append("WRITABLE " + path)
                except OSError as error:
                    results.append(type(error).__name__)
            print(results)
        """,
        )
    finally:
        host.close()
    assert "CONNECTED" not in printed and "WRITABLE" not in printed, printed
