"""The kernel's side of a hidden test: `check("nb01.check_create_db", create_db)`.

Hidden test cells call `check` with the name of a check in `course.grading` and the student's function.
While grading, the check runs in the grader's own process (autograder.pipeline.check_server), which the submission
cannot reach: the grader calls the student's function back in this kernel, one call at a time, and sends
the verdict. The grading kernel cannot import `course` at all, so a submission can neither delegate to the
reference nor patch the tests. What this module prints or raises is a courtesy: the grader records its
verdict itself, so replacing this module earns nothing.

Without a grader (an instructor running a source notebook) the check runs here, with `course` imported.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import random
import socket

from autograder.kernel_side import wire

# The sandbox holds this folder only (no course, no autograder.settings), so this name is repeated here:
# autograder.settings.CHECKER_VARIABLE.
CHECKER_VARIABLE = "DP_COURSE_CHECKER"  # path of the grader's socket, set in the kernel's environment


class GradingFailure(AssertionError):
    """A hidden test failed; the message says what was wrong, in the student's terms.

    The kernel's twin of course.grading.GradingFailure, which the grader's checks raise: the kernel cannot
    load course.grading, so the verdict's text crosses the wire and is raised here under the same name.
    """


def check(name: str, function) -> None:
    """Run hidden check `name` ("nbNN.check_<function>") on `function`; raise GradingFailure if it fails."""
    address = os.environ.get(CHECKER_VARIABLE)
    if not address:
        module, check_name = name.split(".")
        getattr(importlib.import_module(f"course.grading.{module}"), check_name)(function)
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(address)
        wire.send(connection, wire.dump_plain(("check", name, getattr(function, "__name__", "your function"))))
        session = _Session(connection)
        while True:
            message = session.receive()
            if message[0] == "wire":
                session.codec = message[1]
            elif message[0] == "seed":
                _seed(message[1])
            elif message[0] == "call":
                session.answer_call(function, *message[1:])
            elif message[0] == "verdict":
                passed, text = message[1:]
                if not passed:
                    raise GradingFailure(text)
                return


class _Session:
    """One check's connection to the grader, and the grader's Wire (its limits), which it sends first."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.codec: wire.Wire | None = None

    def receive(self):
        return _GraderUnpickler(io.BytesIO(wire.receive(self.connection, None)), self).load()

    def answer_call(self, function, args: tuple, kwargs: dict) -> None:
        codec = self.codec
        if codec is None:
            raise wire.WireError("the grader sent a call before its limits")
        try:
            value = function(*args, **kwargs)
        except (KeyboardInterrupt, GeneratorExit):
            raise  # a timeout interrupts the kernel: let the cell stop, the grader sees the connection close
        except BaseException as error:  # noqa: B036 (sys.exit inside the function is the student's bug too)
            reply = ("raised", *codec.describe_exception(error))
        else:
            reply = ("result", codec.to_plain(value))
        states = ([codec.state_of(a) for a in args], {k: codec.state_of(v) for k, v in kwargs.items()})
        wire.send(self.connection, wire.dump_plain((*reply, states)))


def _seed(seed: int) -> None:
    """The kernel's half of course.grading.seed_everything, which the kernel cannot import."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _GraderUnpickler(pickle.Unpickler):
    """Loads the grader's messages; objects the grader keeps for itself arrive as `_Remote` stand-ins."""

    def __init__(self, file, session: _Session):
        super().__init__(file)
        self._session = session

    def persistent_load(self, pid):
        _, key, name, capabilities = pid
        return _remote(self._session, key, name, capabilities)


def _remote(session: _Session, key: int, name: str, capabilities: list):
    """A stand-in for a grader's object (a query, a dataset): its calls, len() and items go to the grader."""

    def forward(method, *args, **kwargs):
        codec = session.codec
        if codec is None:
            raise wire.WireError("the grader sent an object before its limits")
        message = ("callback", key, method, codec.to_plain(args), codec.to_plain(kwargs))
        wire.send(session.connection, wire.dump_plain(message))
        reply = session.receive()
        if reply[0] == "raised":
            raise codec.rebuild_exception(*reply[1:])
        return codec.from_plain(reply[1])

    def read_attribute(self, attribute):
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return forward("getattr", attribute)

    namespace = {
        "__getattr__": read_attribute,
        "__name__": name,
        "__qualname__": name,
        "__repr__": lambda self: f"<{name} from the grader>",
    }
    if "call" in capabilities:
        namespace["__call__"] = lambda self, *args, **kwargs: forward("call", *args, **kwargs)
    if "len" in capabilities:
        namespace["__len__"] = lambda self: forward("len")
    if "getitem" in capabilities:
        namespace["__getitem__"] = lambda self, index: forward("getitem", index)
    return type(name if name.isidentifier() else "Remote", (), namespace)()
