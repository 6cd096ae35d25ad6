"""Hidden tests run in the grader's process against a student's kernel: the wire format and the server.

The "kernel" here is a plain Python subprocess that calls autograder.kernel_side.check_client.check, as a hidden test
cell does; the grading round trip and the hostile corpus exercise the same path inside nbgrader.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
import torch

from autograder.kernel_side import wire
from autograder.pipeline.check_server import PENDING, CheckServer, pickle_for_kernel
from autograder.settings import load_grading
from course.grading import GradingFailure

CODEC = load_grading().wire  # the grader's limits, as nbgrader_config.py sets them

STUDENT = """
import sys, torch
from autograder.kernel_side.check_client import check
{definitions}
try:
    check(sys.argv[1], {function})
    print("kernel: passed")
except AssertionError as error:
    print("kernel:", error)
"""


def run_kernel(server: CheckServer, name: str, function: str, definitions: str = "") -> str:
    """Run a stand-in kernel that asks the server for check `name` on `function`; return what it printed."""
    code = STUDENT.format(definitions=textwrap.dedent(definitions), function=function)
    env = dict(os.environ, DP_COURSE_CHECKER=server.address)
    done = subprocess.run([sys.executable, "-c", code, name], env=env, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


@pytest.fixture
def server(tmp_path):
    with CheckServer(str(tmp_path / "checker"), CODEC) as running:
        yield running


@pytest.mark.parametrize(
    "value",
    [
        torch.tensor([True, False, True]),
        torch.arange(6, dtype=torch.float64).reshape(2, 3),
        torch.tensor(2.5),
        torch.zeros(0, 3),
        torch.ones(3, dtype=torch.bfloat16),
        torch.tensor([1 + 2j]),
        np.arange(5, dtype=np.int32),
        np.float32(1.5),
        np.bool_(True),
        [1, (2.0, "x"), {"a": None, 3: b"raw"}],
        {1, 2},
        3 + 4j,
        torch.Size([2, 3]),
    ],
)
def test_values_cross_the_wire_unchanged(value):
    back = CODEC.from_plain(CODEC.load_plain(wire.dump_plain(CODEC.to_plain(value))))
    if isinstance(value, torch.Tensor):
        assert back.dtype == value.dtype and torch.equal(back, value)
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value and type(back) is (tuple if isinstance(value, torch.Size) else type(value))


def test_gradient_flag_survives_and_other_objects_arrive_as_named_stand_ins():
    back = CODEC.from_plain(CODEC.to_plain(torch.ones(2, requires_grad=True)))
    assert back.requires_grad
    stand_in = CODEC.from_plain(CODEC.to_plain(object()))
    assert isinstance(stand_in, wire.Opaque) and type(stand_in).__name__ == "object"


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/should-never-exist",))


def test_frames_from_the_kernel_cannot_run_code_in_the_grader():
    with pytest.raises(wire.WireError, match="refused"):
        CODEC.load_plain(pickle.dumps(_RunsCode()))
    with pytest.raises(wire.WireError, match="unknown tag"):
        CODEC.from_plain(("pickle", b"..."))


def _fanning_out(levels: int, width: int = 100) -> bytes:
    """A pickle of a few hundred bytes that stands for width**levels values: each level refers back to the
    list built before it (the attack a hostile kernel sends as its reply)."""
    node = ("list", [0] * width)
    for _ in range(levels):
        node = ("list", [node] * width)
    return pickle.dumps(("result", node, ((), {})), protocol=pickle.HIGHEST_PROTOCOL)


def test_a_frame_that_fans_out_is_refused_before_it_is_walked():
    payload = _fanning_out(4)  # 10**10 values in about a kilobyte
    assert len(payload) < 2000
    start = time.perf_counter()
    with pytest.raises(wire.WireError, match="unpacks to more than"):
        CODEC.load_plain(payload)
    assert time.perf_counter() - start < 5
    # Every real reply, however large, is a tree with at least a byte per value, and passes.
    big = CODEC.to_plain([float(i) for i in range(100_000)] + [torch.arange(10)] * 50)
    back = CODEC.from_plain(CODEC.load_plain(wire.dump_plain(big)))
    assert len(back) == 100_050 and torch.equal(back[-1], torch.arange(10))


def test_a_frame_past_the_value_cap_or_nested_too_deep_is_refused():
    with pytest.raises(wire.WireError, match="unpacks to more than"):
        CODEC.load_plain(wire.dump_plain(("list", [None] * (CODEC.values + 1))))  # a byte per value
    deep = 0
    for _ in range(CODEC.nesting + 1):
        deep = ("list", [deep])
    with pytest.raises(wire.WireError, match="nests deeper"):
        CODEC.load_plain(wire.dump_plain(deep))
    deepest_plain = 1
    for _ in range(CODEC.depth + 5):
        deepest_plain = {"k": [(deepest_plain,)]}
    assert CODEC.load_plain(wire.dump_plain(CODEC.to_plain(deepest_plain)))  # to_plain's own depth cap fits


def _refusal_and_peak_bytes(payload: bytes) -> tuple[str, int]:
    """Why `load_plain` refused `payload` ('' if it did not), and the peak of Python memory meanwhile."""
    tracemalloc.start()
    try:
        CODEC.load_plain(payload)
        refusal = ""
    except wire.WireError as error:
        refusal = str(error)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return refusal, peak


def test_a_frame_of_sets_or_of_too_many_instructions_is_refused_before_anything_is_built():
    """A byte of pickle can build an empty set of 200 bytes (the red team's 12 MB frame took a worker to 4
    GB): instructions that plain data never needs are refused, and so is a frame of more instructions than
    MAX_OPCODES, by reading the instructions only."""
    sets = pickle.dumps(("result", [set() for _ in range(100_000)], ((), {})), protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(wire.WireError, match="EMPTY_SET"):
        CODEC.load_plain(sets)
    lists = b"\x80\x05(" + b"]" * (CODEC.opcodes + 1) + b"l."  # PROTO, MARK, empty lists, LIST, STOP
    refusal, peak = _refusal_and_peak_bytes(lists)
    assert peak < 20 * 1024**2 and "pickle instructions" in refusal, refusal
    with pytest.raises(wire.WireError, match="integer of more than"):
        CODEC.load_plain(wire.dump_plain(("result", 1 << 10_000, ((), {}))))
    for crafted in (pickle.dumps(bytearray(b"x"), protocol=5), pickle.dumps({1}), pickle.dumps(frozenset())):
        with pytest.raises(wire.WireError, match="refused the pickle instruction"):
            CODEC.load_plain(crafted)


def test_a_frame_that_names_memo_slots_is_refused_before_the_memo_grows():
    """CPython's unpickler grows its memo table to the slot a BINPUT names: 9 bytes asking for slot 1e8
    cost the grader 1.5 GB (red team, round 3). Plain pickles fill the memo in order (MEMOIZE) and refer
    only to filled slots."""
    for payload in (
        b"\x80\x04Nr" + struct.pack("<I", 10**8) + b".",
        b"\x80\x04Nq\xff.",
        b"\x80\x05Nj" + struct.pack("<I", 10**8) + b".",
        b"\x80\x05N\x94h\x01.",
    ):
        refusal, peak = _refusal_and_peak_bytes(payload)
        assert peak < 2**20 and refusal, payload
    shared = ("x", "x")
    assert CODEC.load_plain(wire.dump_plain(("list", [shared, shared]))) == ("list", [shared, shared])


def test_what_the_kernel_names_or_says_reaches_the_grader_bounded():
    opaque = CODEC.from_plain(("list", [("opaque", "Thing", "x" * 10_000)] * 1000 + [("opaque", "T" * 10**6, "y")]))
    assert len({type(value) for value in opaque[:1000]}) == 1 and len(repr(opaque[0])) == 200
    assert len(type(opaque[-1]).__name__) <= CODEC.name_chars
    error = CODEC.rebuild_exception("E" * 10**6, ["ValueError"] * 10**5, "m" * 10**7)
    assert isinstance(error, ValueError) and len(type(error).__name__) <= CODEC.name_chars
    assert len(str(error)) == CODEC.message_chars
    from autograder.pipeline.check_server import Verdict

    assert len(Verdict(False, "v" * 10**7).bounded(CODEC).message) == CODEC.message_chars
    with pytest.raises(wire.WireError, match="without its data"):  # torch.empty would reserve 4 GB
        CODEC.from_plain(("tensor", "float32", [1 << 30], b"", False))
    original = torch.zeros(3)
    CODEC.apply_state(original, ("opaque", "Tensor", "not a tensor's state"))  # a state of the wrong kind
    CODEC.apply_state(original, ("tensor", "float32", [3], torch.ones(3).numpy().tobytes(), False))
    assert torch.equal(original, torch.ones(3))


def test_a_reply_that_fans_out_fails_its_check_with_a_reason(server):
    server.open_window(["nb01.check_create_db"])
    printed = run_kernel(
        server,
        "nb01.check_create_db",
        "create_db",
        """
        import autograder.kernel_side.wire as _wire
        _plain = _wire.Wire.to_plain

        class _Bomb:
            pass

        def _to_plain(self, value, depth=0):
            if isinstance(value, _Bomb):
                node = 0
                for _ in range(8):
                    node = ("dict", [(0, node)] * 100)
                return node
            return _plain(self, value, depth)

        _wire.Wire.to_plain = _to_plain

        def create_db(num_entries, p=0.5):
            return _Bomb()
    """,
    )
    verdict = server.close_window()["nb01.check_create_db"]
    assert not verdict.passed and "unpacks to more than" in verdict.message, (verdict, printed)


def test_a_correct_function_passes_and_the_verdict_is_recorded(server):
    server.open_window(["nb01.check_create_db"])
    printed = run_kernel(
        server,
        "nb01.check_create_db",
        "create_db",
        """
        def create_db(num_entries, p=0.5):
            return torch.rand(num_entries) < p
    """,
    )
    assert "kernel: passed" in printed, printed
    assert server.close_window()["nb01.check_create_db"].passed


def test_a_wrong_function_fails_with_the_checks_message(server):
    server.open_window(["nb01.check_create_db"])
    printed = run_kernel(server, "nb01.check_create_db", "lambda n, p=0.5: torch.ones(n, dtype=torch.bool)")
    verdict = server.close_window()["nb01.check_create_db"]
    assert not verdict.passed and "rows are True" in verdict.message
    assert verdict.message in printed


def test_checks_run_only_in_their_window_and_only_once(server):
    # No window open: the connection is closed unanswered.
    assert "passed" not in run_kernel(server, "nb01.check_create_db", "lambda n, p=0.5: torch.rand(n) < p")
    server.open_window(["nb01.check_create_db"])
    assert "kernel: passed" in run_kernel(server, "nb01.check_create_db", "lambda n, p=0.5: torch.rand(n) < p")
    # One connection per check of the window: a second one is closed, and the verdict stands.
    assert "passed" not in run_kernel(server, "nb01.check_create_db", "lambda n, p=0.5: torch.rand(n) < p")
    assert server.close_window()["nb01.check_create_db"].passed
    server.open_window(["nb01.check_create_db"])
    assert "refused" in run_kernel(server, "nb01.check_sensitivity", "lambda *args: 1.0")  # not this cell's check
    assert not server.close_window()["nb01.check_create_db"].passed


def test_a_reply_over_the_limit_fails_its_check(tmp_path):
    with CheckServer(str(tmp_path / "checker"), dataclasses.replace(CODEC, frame_bytes=2**20)) as small:
        small.open_window(["nb01.check_create_db"])
        run_kernel(small, "nb01.check_create_db", "lambda n, p=0.5: torch.zeros(1_000_000)")
        verdict = small.close_window()["nb01.check_create_db"]
    assert not verdict.passed and "over the limit" in verdict.message


def test_a_huge_announced_request_is_refused_unread(server):
    server.open_window(["nb01.check_create_db"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as flood:
        flood.connect(server.address)
        flood.sendall(wire._HEADER.pack(500 * 2**20) + b"x" * 4096)
        flood.settimeout(10)
        try:
            closed = flood.recv(1) == b""
        except ConnectionResetError:  # closed with the rest of the frame unread
            closed = True
        assert closed, "the server kept the connection open"
    assert not server.close_window()["nb01.check_create_db"].passed


def test_a_check_that_never_ran_counts_as_failed(server):
    server.open_window(["nb01.check_create_db"])
    verdict = server.close_window()["nb01.check_create_db"]
    assert not verdict.passed and "never reached the grader" in verdict.message


def test_grader_objects_are_called_back_and_count_their_calls(server):
    """check_averaging_attack passes a noisy query that counts how often the student asks it."""
    server.open_window(["nb02.check_averaging_attack"])
    printed = run_kernel(
        server,
        "nb02.check_averaging_attack",
        "averaging_attack",
        """
        def averaging_attack(noisy_query, db, index, num_queries):
            parallel = torch.cat([db[:index], db[index + 1:]])
            return sum(float(noisy_query(db)) - float(noisy_query(parallel)) for _ in range(num_queries)) / num_queries
    """,
    )
    assert "kernel: passed" in printed, printed
    server.open_window(["nb02.check_averaging_attack"])
    printed = run_kernel(
        server,
        "nb02.check_averaging_attack",
        "averaging_attack",
        """
        def averaging_attack(noisy_query, db, index, num_queries):
            parallel = torch.cat([db[:index], db[index + 1:]])
            return float(noisy_query(db)) - float(noisy_query(parallel))
    """,
    )
    assert "should ask the noisy query" in server.close_window()["nb02.check_averaging_attack"].message


def test_changes_to_arguments_come_back_to_the_grader(server):
    """The kernel works on a copy; a function that overwrites its input must still be caught."""
    server.open_window(["nb03.check_randomized_response"])
    run_kernel(
        server,
        "nb03.check_randomized_response",
        "randomized_response",
        """
        def randomized_response(db, p_noise=0.5):
            coins = torch.rand(db.shape) < p_noise
            db[coins] = torch.rand(int(coins.sum())) < 0.5
            return db
    """,
    )
    assert "modified its input database" in server.close_window()["nb03.check_randomized_response"].message


def test_the_kernel_dying_mid_call_fails_the_check(server):
    server.open_window(["nb01.check_create_db"])
    run_kernel(server, "nb01.check_create_db", "lambda n, p=0.5: __import__('os')._exit(3)")
    deadline = time.monotonic() + 30
    while server._window["nb01.check_create_db"] is PENDING and time.monotonic() < deadline:
        time.sleep(0.05)  # the server's thread notices the closed connection a moment after the kernel exits
    verdict = server.close_window()["nb01.check_create_db"]
    assert not verdict.passed and "stopped answering" in verdict.message


def test_a_crafted_reply_cannot_run_code_in_the_grader(server, tmp_path):
    marker = tmp_path / "ran"
    server.open_window(["nb01.check_create_db"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as kernel:
        kernel.connect(server.address)
        wire.send(kernel, wire.dump_plain(("check", "nb01.check_create_db", "create_db")))
        while pickle.load(io.BytesIO(wire.receive(kernel, None)))[0] in ("wire", "seed"):
            pass  # the call follows the limits and the seed
        evil = type("Evil", (), {"__reduce__": lambda self: (open, (str(marker), "w"))})()
        wire.send(kernel, pickle.dumps(("result", evil, ([], {}))))
        verdict = pickle.load(io.BytesIO(wire.receive(kernel, None)))
    assert verdict[0] == "verdict" and not verdict[1] and "unreadable" in verdict[2]
    assert not marker.exists()


def test_course_objects_stay_in_the_grader():
    """What the grader sends keeps the course's own functions as references, never their code."""
    from course.lib import databases

    kept: list = []
    payload = pickle_for_kernel(("call", (databases.create_db, torch.ones(2)), {}), CODEC, kept)
    assert kept == [databases.create_db]
    assert b"course" not in payload


def test_plain_tensors_reach_the_kernel_as_their_bytes():
    """A dense tensor travels as wire's encoding (no torch.save per call); dtype, shape, values and
    requires_grad survive, a tensor the kernel receives owns its memory, and others keep torch's reduction."""
    sent = (
        torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
        torch.rand(5) < 0.5,
        torch.ones(2, dtype=torch.float64, requires_grad=True),
        torch.zeros(0, 3, dtype=torch.int16),
        torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (4,)),
        torch.nn.Parameter(torch.ones(2)),
    )
    payload = pickle_for_kernel(("call", sent, {}), CODEC)
    assert b"rebuild_tensor" in payload
    _, received, _ = pickle.loads(payload)
    for before, after in zip(sent, received):
        assert type(after) is type(before) and after.dtype == before.dtype and after.shape == before.shape
        assert after.requires_grad == before.requires_grad
        assert torch.equal(
            after.to_dense() if after.is_sparse else after.detach(),
            before.to_dense() if before.is_sparse else before.detach(),
        )
    received[0][0, 0] = 99.0  # writable, and not a view of the payload's bytes
    assert sent[0][0, 0] == 0.0


def test_names_the_sandboxed_client_repeats_match_their_homes():
    """check_client cannot import the grader's modules inside the sandbox, so it repeats two names."""
    from autograder import settings
    from autograder.kernel_side import check_client

    assert check_client.CHECKER_VARIABLE == settings.CHECKER_VARIABLE
    assert check_client.GradingFailure.__name__ == GradingFailure.__name__
    assert issubclass(check_client.GradingFailure, AssertionError) and issubclass(GradingFailure, AssertionError)
