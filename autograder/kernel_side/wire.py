"""What crosses between a student's kernel and the trusted grading process, and how it is framed.

Hidden tests run in a trusted process (autograder.pipeline.check_server) and call the student's function in the
student's kernel (autograder.kernel_side.check_client). Everything the kernel sends back is untrusted, so it travels as
plain data only: `to_plain` turns tensors, arrays, numbers and containers into a tree of builtin values
(tuples, lists, str, bytes, numbers), and `from_plain` rebuilds them. Frames from the kernel are unpickled
with `load_plain`, which refuses every global, so a crafted frame cannot run code in the grader. Anything
else a student returns arrives as an `Opaque` stand-in that keeps only its type name and a short repr.

The grader's frames to the kernel are ordinary (cloud)pickles: the kernel may trust the grader.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import socket
import struct
from dataclasses import dataclass

import numpy as np
import torch

# What pickle (protocol 5) writes for a tree of None, bools, ints, floats, str, bytes, tuples, lists and
# dicts (dicts only in the messages that wrap trees): no sets, no globals, no reducers, no buffers, and no
# memo slots by number (BINPUT: CPython grows its memo table to the index, so 5 bytes could cost gigabytes).
_PLAIN_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "MEMOIZE",
        "BINGET",
        "LONG_BINGET",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "LONG4",
        "BINFLOAT",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "SHORT_BINBYTES",
        "BINBYTES",
        "BINBYTES8",
        "EMPTY_TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "TUPLE",
        "EMPTY_LIST",
        "APPEND",
        "APPENDS",
        "EMPTY_DICT",
        "SETITEM",
        "SETITEMS",
    }
)
# Opcodes that push one value of a kind the stack simulation of `_require_plain_instructions` tells apart:
# a dict of the frame itself may be keyed by strings only (their hashes are salted per process; an int's,
# a float's or a tuple's are not, so a kernel could send keys that all collide and cost the grader time
# quadratic in their number while the C unpickler holds the GIL).
_PUSH_STR = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"})
_PUSH_OTHER = frozenset(
    {
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "LONG4",
        "BINFLOAT",
        "SHORT_BINBYTES",
        "BINBYTES",
        "BINBYTES8",
        "EMPTY_TUPLE",
        "EMPTY_LIST",
        "EMPTY_DICT",
    }
)
# Items of a rebuilt set or dict that may share one hash: equal hashes make each insertion compare with
# every item before it, so many of them cost quadratic time; by chance, a handful at most share one.
SHARED_HASHES = 16
_HEADER = struct.Struct("!Q")
_SCALARS = (type(None), bool, int, float, str, bytes)


class WireError(Exception):
    """A frame could not be read: the other side closed the connection or sent something malformed."""


class Opaque:
    """Stands for a value of a type that does not cross the wire; `type(x).__name__` is the original's."""

    def __init__(self, text: str):
        self._text = text

    def __repr__(self) -> str:
        return self._text


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def receive(sock: socket.socket, limit: int | None) -> bytes:
    """One frame, refused before it is read when it announces more than `limit` bytes (None: the sender is
    trusted, as the grader is by the kernel)."""
    (size,) = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
    if limit is not None and size > limit:
        raise WireError(f"a message of {size} bytes is over the limit of {limit}")
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise WireError("the connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise WireError(f"refused a pickled reference to {module}.{name}: only plain data may cross")


def dump_plain(tree) -> bytes:
    return pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)


def is_plain_tensor(value: torch.Tensor) -> bool:
    """Whether `to_plain` sends the tensor as its bytes (dense and not quantized)."""
    return value.layout == torch.strided and not value.is_quantized


@functools.lru_cache(maxsize=256)
def _opaque_class(name: str) -> type:
    """One stand-in class per type name (a class costs about a kilobyte: not one per value)."""
    return type(name if name.isidentifier() else "Opaque", (Opaque,), {})


def _numpy_dtype(text: str) -> np.dtype:
    dtype = np.dtype(str(text))
    if dtype.hasobject:
        raise WireError("object arrays do not cross the wire")
    return dtype


def rebuild_tensor(dtype_name: str, shape: list, data: bytes, requires_grad: bool) -> torch.Tensor:
    dtype = getattr(torch, str(dtype_name), None)
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"unknown tensor dtype {dtype_name!r}")
    shape = [int(n) for n in shape]
    if data:
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
    elif 0 in shape:
        tensor = torch.empty(shape, dtype=dtype)
    else:  # no bytes for a shape with elements: torch.empty would reserve memory for it
        raise WireError(f"a tensor of shape {shape[:8]} came without its data")
    return tensor.requires_grad_(bool(requires_grad)) if tensor.is_floating_point() or tensor.is_complex() else tensor


def _simulate(name: str, argument, stack: list[bool], marks: list[int], memo: list[bool]) -> None:
    """Follow one plain instruction's effect on the unpickler's stack, as kinds (str or not): a dict built by
    the frame itself (SETITEM, SETITEMS) may have str keys only. Malformed frames raise (IndexError...)."""
    if name in _PUSH_STR:
        stack.append(True)
    elif name in _PUSH_OTHER:
        stack.append(False)
    elif name == "MARK":
        marks.append(len(stack))
    elif name == "POP":
        if marks and marks[-1] == len(stack):
            marks.pop()
        else:
            stack.pop()
    elif name == "MEMOIZE":
        memo.append(stack[-1])
    elif name in ("BINGET", "LONG_BINGET"):
        stack.append(memo[argument])
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        del stack[len(stack) - int(name[-1]) :]
        stack.append(False)
    elif name == "APPEND":
        stack.pop()
    elif name == "SETITEM":
        stack.pop()
        if not stack.pop():
            raise WireError("refused a dict of the frame with a key that is not a str")
    elif name in ("TUPLE", "APPENDS", "SETITEMS", "POP_MARK"):
        start = marks.pop()
        if name == "SETITEMS" and not all(stack[start::2]):
            raise WireError("refused a dict of the frame with a key that is not a str")
        del stack[start:]
        if name == "TUPLE":
            stack.append(False)
    elif name == "STOP":
        stack.pop()


def _require_spread_hashes(keys: list) -> None:
    """Refuse keys of a set or dict to be built when more than SHARED_HASHES of them share one hash."""
    counts: dict[int, int] = {}
    for key in keys:
        code = hash(key)  # an unhashable key raises TypeError: a malformed value
        counts[code] = counts.get(code, 0) + 1
        if counts[code] > SHARED_HASHES:
            raise WireError(f"refused a set or dict with more than {SHARED_HASHES} keys of one hash")


def _copy_tensor(original: torch.Tensor, changed) -> None:
    if isinstance(changed, torch.Tensor) and changed.shape == original.shape:
        with torch.no_grad():
            original.copy_(changed)


@dataclass(frozen=True)
class Wire:
    """The limits of what crosses, and the coding that keeps to them: `GradingSettings.wire`, from the
    traitlets of autograder.settings.Grading. The grader sends its Wire to the kernel at the start of every
    check, so both sides cut alike; only the grader's side is a defence.
    """

    frame_bytes: int  # a bigger frame is refused rather than loaded into the grader (Grading.reply_limit)
    depth: int  # levels of containers `to_plain` follows; deeper values arrive as Opaque stand-ins
    # Values one frame may unpickle to: every value of a plain tree takes at least a byte of its pickle, but a
    # pickle can refer back to a container it already built, so a frame of a few hundred bytes could stand
    # for billions of values. The absolute cap bounds the grader's work for one frame.
    values: int
    int_bits: int  # a bigger int would make str() and arithmetic in a check costly
    name_chars: int  # characters of a type, function or exception name from the kernel
    message_chars: int  # characters of an exception message or a verdict
    repr_chars: int  # characters an Opaque stand-in keeps of the original's repr

    @property
    def opcodes(self) -> int:
        """Pickle instructions one frame may hold, read before anything is built: one instruction can build
        an object of a few hundred bytes (an empty container), so this bounds the grader's memory for a frame
        to a few hundred megabytes whatever its size; a plain tree needs about two per value."""
        return 2 * self.values

    @property
    def nesting(self) -> int:
        """Python nesting of the deepest tree `to_plain` makes (three levels per value: tag, item list, dict
        pair), with room for the messages that wrap it."""
        return 3 * (self.depth + 1) + 16

    def receive(self, sock: socket.socket) -> bytes:
        """One frame from the other side, refused before it is read when it is over `frame_bytes`."""
        return receive(sock, self.frame_bytes)

    def load_plain(self, payload: bytes):
        """Unpickle a frame that may hold builtin values only (no classes, functions or reducers), as a tree.

        A frame that unpacks to more values than its size allows (at most self.values), or nests deeper than
        any tree `to_plain` makes, is refused before anything walks it; a frame with other instructions than
        those of plain data, or more than self.opcodes of them, is refused before anything is built.
        """
        self._require_plain_instructions(payload)
        try:
            tree = _PlainUnpickler(io.BytesIO(payload)).load()
        except WireError:
            raise
        except Exception as error:
            raise WireError(f"malformed message: {type(error).__name__}: {error}") from None
        self._require_small_tree(tree, len(payload))
        return tree

    def _require_plain_instructions(self, payload: bytes) -> None:
        count = 0
        stack: list[bool] = []  # per value on the unpickler's stack: whether it is a str
        marks: list[int] = []
        memo: list[bool] = []
        try:
            for opcode, argument, _ in pickletools.genops(payload):
                count += 1
                if count > self.opcodes:
                    raise WireError(
                        f"a message of {len(payload)} bytes holds more than {self.opcodes} pickle instructions"
                    )
                name = opcode.name
                if name not in _PLAIN_OPCODES:
                    raise WireError(f"refused the pickle instruction {name}: only plain data may cross")
                # genops reads a GET's slot as an int (uint1, uint4); anything else is refused too
                if name in ("BINGET", "LONG_BINGET") and (not isinstance(argument, int) or argument >= len(memo)):
                    raise WireError(f"refused a reference to memo slot {argument}, of {len(memo)} filled")
                if type(argument) is int and argument.bit_length() > self.int_bits:
                    raise WireError(f"refused an integer of more than {self.int_bits} bits")
                _simulate(name, argument, stack, marks, memo)
        except WireError:
            raise
        except Exception as error:
            raise WireError(f"malformed message: {type(error).__name__}: {error}") from None

    def _require_small_tree(self, tree, size: int) -> None:
        """Count the values of `tree`, unpickled from `size` bytes, as a tree (a container referred to twice
        counts twice), and stop at the first one past the budget."""
        budget = min(size + 1024, self.values)
        stack, seen = [(tree, 0)], 0
        while stack:
            value, depth = stack.pop()
            seen += 1
            if seen > budget:
                raise WireError(f"a message of {size} bytes unpacks to more than {budget} values")
            if depth > self.nesting:
                raise WireError(f"a message nests deeper than {self.nesting} levels")
            kind = type(value)
            if kind in (tuple, list):  # sets never get this far: their instructions are refused
                stack.extend((item, depth + 1) for item in value)
            elif kind is dict:
                stack.extend((item, depth + 1) for pair in value.items() for item in pair)

    def to_plain(self, value, depth: int = 0):
        """A tree of builtin values that `from_plain` turns back into `value` (or an `Opaque` stand-in)."""
        if depth > self.depth:
            return ("opaque", type(value).__name__, "<nested too deeply>")
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is complex:
            return ("complex", value.real, value.imag)
        if isinstance(value, torch.Tensor) and is_plain_tensor(value):
            flat = value.detach().cpu().contiguous().reshape(-1)
            data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            return ("tensor", str(value.dtype).removeprefix("torch."), list(value.shape), data, value.requires_grad)
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            return ("ndarray", value.dtype.str, list(value.shape), np.ascontiguousarray(value).tobytes())
        if isinstance(value, np.generic) and not value.dtype.hasobject:
            return ("npscalar", value.dtype.str, value.tobytes())
        if kind in (list, tuple, set, frozenset) or isinstance(value, torch.Size):
            tag = "tuple" if isinstance(value, torch.Size) else kind.__name__
            return (tag, [self.to_plain(item, depth + 1) for item in value])
        if kind is dict:
            return ("dict", [(self.to_plain(k, depth + 1), self.to_plain(v, depth + 1)) for k, v in value.items()])
        return ("opaque", kind.__name__, self._short_repr(value))

    def _short_repr(self, value) -> str:
        try:
            return repr(value)[: self.repr_chars]
        except Exception:
            return f"<{type(value).__name__}>"

    def from_plain(self, tree):
        """Rebuild what `to_plain` encoded; anything unexpected raises WireError."""
        if type(tree) in _SCALARS:
            return tree
        if type(tree) is not tuple or not tree or type(tree[0]) is not str:
            raise WireError(f"unexpected value on the wire: {type(tree).__name__}")
        tag, *rest = tree
        try:
            if tag == "complex":
                return complex(float(rest[0]), float(rest[1]))
            if tag == "tensor":
                return rebuild_tensor(*rest)
            if tag == "ndarray":
                dtype, shape, data = rest
                return np.frombuffer(data, dtype=_numpy_dtype(dtype)).reshape(shape).copy()
            if tag == "npscalar":
                dtype, data = rest
                return np.frombuffer(data, dtype=_numpy_dtype(dtype))[0]
            if tag in ("list", "tuple", "set", "frozenset"):
                items = [self.from_plain(item) for item in rest[0]]
                if tag in ("set", "frozenset"):
                    _require_spread_hashes(items)
                return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
            if tag == "dict":
                pairs = [(self.from_plain(k), self.from_plain(v)) for k, v in rest[0]]
                _require_spread_hashes([k for k, _ in pairs])
                return dict(pairs)
            if tag == "opaque":
                return _opaque_class(str(rest[0])[: self.name_chars])(str(rest[1])[: self.repr_chars])
        except WireError:
            raise
        except Exception as error:
            raise WireError(f"malformed {tag}: {type(error).__name__}: {error}") from None
        raise WireError(f"unknown tag {tag!r} on the wire")

    def state_of(self, argument):
        """What a call may have changed in an argument, as plain data (None: nothing the grader reads back).

        Hidden tests check that a function leaves its inputs alone, reads a model's parameters and `.grad`
        afterwards, and reuse a random generator across calls; the argument the kernel saw is a copy, so its
        final state is sent back and `apply_state` writes it into the grader's original.
        """
        if isinstance(argument, (torch.Tensor, np.ndarray)):
            return self.to_plain(argument)
        if isinstance(argument, np.random.Generator):
            return ("rng", self.to_plain(argument.bit_generator.state))
        if isinstance(argument, torch.nn.Module):
            parameters = list(argument.parameters())
            return (
                "module",
                [self.to_plain(p) for p in parameters],
                [None if p.grad is None else self.to_plain(p.grad) for p in parameters],
                [self.to_plain(b) for b in argument.buffers()],
                [m.training for m in argument.modules()],
            )
        if type(argument) in (list, tuple):
            return ("items", [self.state_of(item) for item in argument])
        return None

    def apply_state(self, original, state) -> None:
        """Write a `state_of` tree, received from the kernel, into the grader's `original` argument."""
        if state is None or type(state) is not tuple or not state:
            return
        if isinstance(original, torch.Tensor) and state[0] == "tensor":
            _copy_tensor(original, self.from_plain(state))
        elif isinstance(original, np.ndarray) and state[0] == "ndarray":
            changed = self.from_plain(state)
            if isinstance(changed, np.ndarray) and changed.shape == original.shape and original.flags.writeable:
                original[...] = changed
        elif isinstance(original, np.random.Generator) and state[0] == "rng":
            original.bit_generator.state = self.from_plain(state[1])
        elif isinstance(original, torch.nn.Module) and state[0] == "module":
            _, values, grads, buffers, modes = state
            parameters = list(original.parameters())
            for parameter, value, grad in zip(parameters, values, grads):
                _copy_tensor(parameter, self.from_plain(value))
                parameter.grad = None if grad is None else self.from_plain(grad).to(parameter.dtype)
            for buffer, value in zip(original.buffers(), buffers):
                _copy_tensor(buffer, self.from_plain(value))
            for module, training in zip(original.modules(), modes):
                module.training = bool(training)
        elif type(original) in (list, tuple) and state[0] == "items":
            for item, item_state in zip(original, state[1]):
                self.apply_state(item, item_state)

    def describe_exception(self, error: BaseException) -> tuple:
        """(name, names of the builtin exception classes it derives from, message): an error as plain data."""
        import builtins

        bases = [k.__name__ for k in type(error).__mro__ if getattr(builtins, k.__name__, None) is k]
        try:
            message = str(error)[: self.message_chars]
        except Exception:
            message = "<message could not be read>"
        return type(error).__name__, bases, message

    def rebuild_exception(self, name: str, bases: list, message: str) -> Exception:
        """An exception like the one `describe_exception` described: same name and message, and an instance of
        the same builtin classes (ValueError stays catchable as ValueError). Never SystemExit or KeyboardInterrupt."""
        import builtins

        base = Exception
        for candidate in bases[:64] if isinstance(bases, list) else ():
            found = getattr(builtins, str(candidate), None)
            if isinstance(found, type) and issubclass(found, Exception):
                base = found
                break
        name = str(name)[: self.name_chars]
        name = name if name.isidentifier() else base.__name__
        return type(name, (base,), {"__module__": "builtins"})(str(message)[: self.message_chars])
