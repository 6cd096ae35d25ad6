"""The grader's side of hidden tests: checks run here, in the trusted process, against the student's kernel.

A `CheckServer` listens on a Unix socket that the student's kernel can reach (autograder.kernel_side.check_client
connects to it). For each request it runs the named check from `course.grading` with a `RemoteFunction`
standing in for the student's function: each call is sent to the kernel, which runs the student's code and
sends back the result as plain data (autograder.kernel_side.wire), plus what the call changed in its arguments.

The reference values are therefore computed where the submission cannot reach them, and the verdict is
recorded here. A check is only run while the hidden test cell that names it executes, once: the notebook
executor opens that window (`open_window`) and reads the verdicts when the cell ends (`close_window`), so a
submission can neither run a check from its own cells nor learn from repeated failure messages. The server
takes one connection per check of the window and serves one at a time, reading no frame over its byte limit,
so the memory a kernel can make it hold is bounded.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import traceback
import types
from dataclasses import dataclass

import cloudpickle
import torch

from autograder import imports
from autograder.kernel_side import wire
from autograder.settings import CHECK_NAME
from autograder.sinks.safe_text import for_terminal
from course.grading import STUDENT_SEEDER, GradingFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str = ""
    ran: bool = True  # False: the check did not get to judge the student's function

    def bounded(self, codec: wire.Wire) -> Verdict:
        """The verdict as the grader records it: messages quote the student's values and errors, and the
        grader keeps, records and shows a bounded part."""
        return Verdict(self.passed, str(self.message)[: codec.message_chars], self.ran)


PENDING = Verdict(False, "the hidden test did not finish (interrupted, timed out or the kernel stopped)", ran=False)
NEVER_RUN = Verdict(
    False,
    "the hidden test never reached the grader: was the test cell changed, or the grading helper replaced?",
    ran=False,
)


class CheckServer:
    """Runs hidden checks for one notebook's kernel; use as a context manager."""

    def __init__(self, address: str, codec: wire.Wire, seed: int = 0):
        self.address = address
        self.codec = codec  # the limits of every frame, from GradingSettings.wire
        self.seed = seed  # the submission's seed for every check (autograder.batch.seeds)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lock = threading.Lock()
        self._window: dict[str, Verdict | None] | None = None
        self._window_connections = 0

    def __enter__(self) -> CheckServer:
        if os.path.lexists(self.address):
            os.unlink(self.address)
        self._listener.bind(self.address)
        os.chmod(self.address, 0o666)  # the sandboxed kernel runs as another user
        self._listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        if os.path.lexists(self.address):
            os.unlink(self.address)

    def open_window(self, names) -> None:
        """Allow each of these checks to run once, until `close_window`."""
        with self._lock:
            self._window = {name: None for name in names}
            self._window_connections = 0

    def close_window(self) -> dict[str, Verdict]:
        """The verdict of each check of the window: NEVER_RUN or PENDING where there is none."""
        with self._lock:
            window, self._window = self._window or {}, None
        return {name: NEVER_RUN if verdict is None else verdict for name, verdict in window.items()}

    def _accept(self) -> None:
        """Serve one connection at a time, at most one per check of the open window: any other is closed."""
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                admitted = self._window is not None and self._window_connections < len(self._window)
                self._window_connections += admitted
            if admitted:
                self._serve(connection)
            else:
                connection.close()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                # A request is two names (UTF-8: at most 4 bytes a character) and its framing.
                request = self.codec.load_plain(wire.receive(connection, 8 * self.codec.name_chars + 64))
                kind, name, function_name = request
                if kind != "check" or not isinstance(name, str) or not isinstance(function_name, str):
                    raise wire.WireError("expected a check request")
            except (wire.WireError, ValueError, TypeError) as error:
                log.warning("refused a malformed request: %s", for_terminal(error))
                return
            window = self._claim(name)
            if window is None:
                verdict = Verdict(
                    False, f"the grader refused to run {name!r}: hidden tests run only in their own test cell, once"
                )
            else:
                student = RemoteFunction(connection, function_name[: self.codec.name_chars], self.codec)
                verdict = run_check(name, student, self.seed).bounded(self.codec)
                with self._lock:
                    window[name] = verdict
            try:
                wire.send(connection, pickle_for_kernel(("verdict", verdict.passed, verdict.message), self.codec))
            except OSError:
                pass  # the kernel is gone; the verdict is recorded all the same

    def _claim(self, name: str):
        with self._lock:
            window = self._window
            if window is None or name not in window or window[name] is not None:
                return None
            window[name] = PENDING
            return window


def run_check(name: str, student, seed: int = 0) -> Verdict:
    """Run `course.grading.<module>.<check>` on `student` (a RemoteFunction) with the submission's seed."""
    if not CHECK_NAME.fullmatch(name):
        return Verdict(False, f"unknown hidden test {name!r}")
    module, check_name = name.split(".")
    check = getattr(imports.load(f"course.grading.{module}"), check_name, None)  # maybe beside the warm-up
    if not isinstance(check, types.FunctionType):
        return Verdict(False, f"unknown hidden test {name!r}")
    token = STUDENT_SEEDER.set(student.seed)
    try:
        check(student, seed=seed)
        return Verdict(True)
    except GradingFailure as failure:
        return Verdict(False, str(failure))
    except Exception as error:  # a grading bug must not pass or crash a submission: report it
        log.error("hidden test %s failed to run:\n%s", name, for_terminal(traceback.format_exc(), keep_lines=True))
        return Verdict(False, f"the hidden test could not run: {type(error).__name__}: {error}")
    finally:
        STUDENT_SEEDER.reset(token)


class RemoteFunction:
    """The student's function, living in their kernel; calling it runs it there and returns plain data."""

    def __init__(self, connection: socket.socket, name: str, codec: wire.Wire):
        self._connection = connection
        self._codec = codec
        self.__name__ = self.__qualname__ = name
        self._limits_sent = False

    def seed(self, seed: int) -> None:
        """Seed the kernel's generators (the student's code draws from them)."""
        self._send(pickle_for_kernel(("seed", seed), self._codec))

    def __call__(self, *args, **kwargs):
        kept: list = []
        self._send(pickle_for_kernel(("call", args, kwargs), self._codec, kept))
        while True:
            message = self._receive()
            if message[0] == "callback":
                self._send(_serve_callback(self._codec, kept, *message[1:]))
                continue
            *reply, (arg_states, kwarg_states) = message
            for argument, state in zip(args, arg_states):
                self._codec.apply_state(argument, state)
            for key, state in kwarg_states.items():
                if key in kwargs:
                    self._codec.apply_state(kwargs[key], state)
            if reply[0] == "result":
                return self._codec.from_plain(reply[1])
            raise self._codec.rebuild_exception(*reply[1:])

    def _send(self, payload: bytes) -> None:
        try:
            if not self._limits_sent:  # the kernel cuts what it sends to the grader's limits
                wire.send(self._connection, pickle_for_kernel(("wire", self._codec), self._codec))
                self._limits_sent = True
            wire.send(self._connection, payload)
        except OSError as error:
            raise GradingFailure(
                f"the grader lost contact with your kernel while testing {self.__name__}: {error}"
            ) from None

    def _receive(self):
        try:
            return self._codec.load_plain(self._codec.receive(self._connection))
        except (wire.WireError, OSError) as error:
            raise GradingFailure(
                f"your kernel stopped answering while {self.__name__} ran (interrupted, timed "
                f"out or crashed) or sent something unreadable: {error}"
            ) from None


def _serve_callback(codec: wire.Wire, kept: list, key, method, args, kwargs) -> bytes:
    """Run a call the kernel made on one of the grader's objects; the answer is plain data only."""
    try:
        target = kept[key]
        args, kwargs = codec.from_plain(args), codec.from_plain(kwargs)
        if method == "call":
            value = target(*args, **kwargs)
        elif method == "len":
            value = len(target)
        elif method == "getitem":
            value = target[args[0]]
        elif method == "getattr" and not str(args[0]).startswith("_"):
            value = getattr(target, args[0])
        else:
            raise TypeError(f"unsupported operation {method!r}")
        return pickle_for_kernel(("returned", codec.to_plain(value)), codec)
    except Exception as error:
        return pickle_for_kernel(("raised", *codec.describe_exception(error)), codec)


class _KernelPickler(cloudpickle.Pickler):
    """Pickles the grader's messages; the course's own objects stay here and travel as references."""

    def __init__(self, file, codec: wire.Wire, kept: list):
        super().__init__(file)
        self._codec = codec
        self._kept = kept

    def reducer_override(self, obj):
        # A plain tensor travels as its bytes, rebuilt by wire's own decoder: torch's reduction (a torch.save
        # per tensor, a torch.load in the kernel) cost about 1 ms of each call a statistical check makes.
        plain = type(obj) is torch.Tensor and obj.device.type == "cpu" and obj.grad_fn is None
        if plain and wire.is_plain_tensor(obj):
            return wire.rebuild_tensor, self._codec.to_plain(obj)[1:]
        return super().reducer_override(obj)

    def persistent_id(self, obj):
        if not _belongs_to_course(obj):
            return None
        self._kept.append(obj)
        capabilities = [
            name
            for name, dunder in (("call", "__call__"), ("len", "__len__"), ("getitem", "__getitem__"))
            if hasattr(type(obj), dunder)
        ]
        name = getattr(obj, "__name__", None) if isinstance(obj, (types.FunctionType, type)) else type(obj).__name__
        return ("ref", len(self._kept) - 1, str(name), capabilities)


def _belongs_to_course(obj) -> bool:
    if type(obj) in (int, float, str, bytes, bool, tuple, list, dict) or obj is None:
        return False
    if isinstance(obj, torch.nn.Module):
        return False  # models run in the kernel: they travel by value, their classes are torch's
    module = obj.__module__ if isinstance(obj, (types.FunctionType, type)) else type(obj).__module__
    return isinstance(module, str) and (module == "course" or module.startswith("course."))


def pickle_for_kernel(message, codec: wire.Wire, kept: list | None = None) -> bytes:
    buffer = io.BytesIO()
    _KernelPickler(buffer, codec, [] if kept is None else kept).dump(message)
    return buffer.getvalue()
