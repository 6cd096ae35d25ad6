"""A submission's kernel starts before nbgrader is ready for it, and TrustedExecute adopts it: nothing is left
running whether or not it is adopted, and the adopted kernel is graded exactly as one started by nbclient."""

import os

import nbformat
import pytest
import zmq
from hostile_corpus import cell_by_grade_id, solved
from jupyter_core.utils import run_sync
from traitlets.config import Config

from autograder.batch import bundles, submission
from autograder.layout import SOURCE
from autograder.pipeline import early_kernel
from autograder.pipeline.preprocessors import TrustedExecute
from autograder.sandbox import bubblewrap as sandbox
from autograder.settings import load_grading

pytestmark = pytest.mark.slow  # every test here starts a kernel, a browser or a server

needs_sandbox = pytest.mark.skipif(bool(sandbox.unavailable_reason()), reason=sandbox.unavailable_reason() or "ok")


def _alive(manager) -> bool:
    return run_sync(manager.is_alive)()


def _start(kernel_name: str, path, max_message: int = 1 << 20):
    """What autograde passes to `started`: TrustedExecute's own start of the kernel it is configured for."""
    config = Config()
    config.TrustedExecute.kernel_name = kernel_name
    config.TrustedExecute.settings = load_grading(output_limit=max_message)
    return lambda: TrustedExecute.start_kernel_early(config, str(path))


def test_the_adopter_owns_the_kernel_and_it_refuses_large_messages(tmp_path):
    with early_kernel.started("a", _start("python3", tmp_path)):
        manager = early_kernel.take("a", "python3")
        assert manager is not None and _alive(manager)
        assert early_kernel.take("a", "python3") is None  # one adopter only
        assert manager.context.getsockopt(zmq.MAXMSGSIZE) == 1 << 20
        # nbclient's client (km.client()) gets that option: its IOPub and shell sockets are capped too.
        client = manager.client()
        client.start_channels(hb=False)  # the heartbeat's thread makes its socket late; nbclient's waits for it
        try:
            for channel in (client.iopub_channel, client.shell_channel):
                assert channel.socket.getsockopt(zmq.MAXMSGSIZE) == 1 << 20
        finally:
            client.stop_channels()
        # Started as nbclient starts an IPython kernel: its history stays in memory, no file is written.
        assert "--HistoryManager.hist_file=:memory:" in manager.provisioner.process.args
    try:
        assert _alive(manager), "an adopted kernel is the adopter's to shut down"
    finally:
        run_sync(manager.shutdown_kernel)(now=True)
    assert not _alive(manager)


def test_a_kernel_nobody_adopted_is_shut_down(tmp_path):
    with early_kernel.started("b", _start("python3", tmp_path)):
        waiting = early_kernel._waiting["b"]
        assert early_kernel.take("b", "another_kernel") is None  # the notebook asks for another kernel
        assert _alive(waiting)
    assert not _alive(waiting) and "b" not in early_kernel._waiting


def test_a_kernel_that_cannot_start_early_is_left_to_the_executor(tmp_path):
    with early_kernel.started("c", _start("no_such_kernel", tmp_path)):
        assert early_kernel.take("c", "no_such_kernel") is None


@needs_sandbox
def test_grading_adopts_the_early_kernel(tmp_path, monkeypatch):
    taken = []
    take = early_kernel.take

    def recording_take(key, kernel_name):
        manager = take(key, kernel_name)
        taken.append(manager)
        return manager

    monkeypatch.setattr(early_kernel, "take", recording_take)
    bundle = bundles.make_bundle(SOURCE, "01_databases", f"sqlite:///{tmp_path / 'class.db'}", tmp_path)
    nb = solved()
    # The kernel starts before nbgrader's autograde sets NBGRADER_EXECUTION, yet must run in grading mode.
    create_db = cell_by_grade_id(nb, "create_db")
    # A notebook that names another kernel is still run by the sandbox's: the repository is out of its sight.
    nb.metadata.kernelspec = {"name": "host-python", "display_name": "Python (host)", "language": "python"}
    create_db.source = (
        "import os\nassert os.environ.get('NBGRADER_EXECUTION') == 'autograde'\n"
        f"assert not os.path.exists({str(SOURCE)!r})\n" + create_db.source
    )
    job = submission.Job("student", "01_databases", "01_databases.ipynb", nbformat.writes(nb).encode())
    result = submission.grade_submission(job, bundle, load_grading())
    assert len(taken) == 1 and taken[0] is not None, "the sandboxed kernel was not started early"
    assert not result.grading_error
    assert all(cell.score == cell.max_score for cell in result.cells if cell.kind == "auto"), result.cells
    assert not _alive(taken[0]) and not early_kernel._waiting
    assert not os.path.exists(taken[0].connection_file)
