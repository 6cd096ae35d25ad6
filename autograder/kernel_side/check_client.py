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
        while True:
            message = _receive(connection)
            if message[0] == "seed":
                _seed(message[1])
            elif message[0] == "call":
                _answer_call(connection, function, *message[1:])
            elif message[0] == "verdict":
                passed, text = message[1:]
                if not passed:
                    raise GradingFailure(text)
                return


def _receive(connection: socket.socket):
    return _GraderUnpickler(io.BytesIO(wire.receive(connection)), connection).load()


def _seed(seed: int) -> None:
    """The kernel's half of course.grading.seed_everything, which the kernel cannot import."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _answer_call(connection: socket.socket, function, args: tuple, kwargs: dict) -> None:
    try:
        value = function(*args, **kwargs)
    except (KeyboardInterrupt, GeneratorExit):
        raise  # a timeout interrupts the kernel: let the cell stop, the grader sees the connection close
    except BaseException as error:  # noqa: B036 (sys.exit inside the function is the student's bug too)
        reply = ("raised", *wire.describe_exception(error))
    else:
        reply = ("result", wire.to_plain(value))
    states = ([wire.state_of(a) for a in args], {k: wire.state_of(v) for k, v in kwargs.items()})
    wire.send(connection, wire.dump_plain((*reply, states)))


class _GraderUnpickler(pickle.Unpickler):
    """Loads the grader's messages; objects the grader keeps for itself arrive as `_Remote` stand-ins."""

    def __init__(self, file, connection):
        super().__init__(file)
        self._connection = connection

    def persistent_load(self, pid):
        _, key, name, capabilities = pid
        return _remote(self._connection, key, name, capabilities)


def _remote(connection, key: int, name: str, capabilities: list):
    """A stand-in for a grader's object (a query, a dataset): its calls, len() and items go to the grader."""

    def forward(method, *args, **kwargs):
        wire.send(connection, wire.dump_plain(("callback", key, method, wire.to_plain(args), wire.to_plain(kwargs))))
        reply = _receive(connection)
        if reply[0] == "raised":
            raise wire.rebuild_exception(*reply[1:])
        return wire.from_plain(reply[1])

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
