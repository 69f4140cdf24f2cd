"""Reading a CIFAR-10 batch file's pickle without unpickling it.

The official batches are Python 2 pickles of a plain dict: ``labels`` (a list of ints),
``data`` (a NumPy uint8 array), ``filenames`` and ``batch_label``. Handing such bytes to
``pickle`` builds whatever they declare: even with only NumPy's globals allowed, a 200 KB
file can declare a (100000, 3072) array (``numpy.ndarray`` called directly allocates it,
uninitialised) or a list of 10^8 labels. So this module never calls ``pickle``: it walks
the opcodes itself, knows only those the official files and Python 3 re-pickles of them
use, and builds nothing but inert values:

- no callable is ever called: NumPy's globals are symbols, and only the calls a pickled
  array makes are understood (``network.pickled_arrays``), which checks each array's
  declared shape and dtype before anything is built;
- lists are capped at ``rows`` entries, dicts and tuples at a few dozen, the whole walk at
  a number of opcodes proportional to ``rows``, and text strings at 256 bytes, so time
  and memory are bounded by the official layout whatever the file says; long byte
  strings are views of the file, never copies.

Any other global (``os.system``, ``builtins.eval``, ...) is refused by name.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import numpy as np

from kmlp.network.errors import DataError
from kmlp.network.pickled_arrays import (
    ALLOWED_GLOBALS,
    Array,
    Blob,
    Corrupt,
    Global,
    Refused,
    build,
    call,
    describe,
)

__all__ = ["ALLOWED_GLOBALS", "read_batch_pickle"]

_SMALL = 256  # byte strings up to this long are copied; longer ones stay views of the file
_MAX_CONTAINER = 64  # entries of a dict or tuple (a batch dict has 4, an array state 5)
_OPCODE_NAMES = {
    value[0]: name
    for name, value in vars(pickle).items()
    if name.isupper() and isinstance(value, bytes) and len(value) == 1
}


def _op(name: str) -> int:
    return getattr(pickle, name)[0]


# Opcodes that push a value read from their argument: opcode -> struct format.
_INTS = {_op("BININT1"): "<B", _op("BININT2"): "<H", _op("BININT"): "<i"}
_BYTES = {  # the format of the length that precedes the bytes (Python 2 str -> bytes)
    _op("SHORT_BINSTRING"): "<B",
    _op("SHORT_BINBYTES"): "<B",
    _op("BINSTRING"): "<i",
    _op("BINBYTES"): "<I",
    _op("BINBYTES8"): "<Q",
}
_TEXTS = {_op("SHORT_BINUNICODE"): "<B", _op("BINUNICODE"): "<I", _op("BINUNICODE8"): "<Q"}
_CONSTANTS = {_op("NONE"): None, _op("NEWTRUE"): True, _op("NEWFALSE"): False}
_EMPTY = {_op("EMPTY_LIST"): list, _op("EMPTY_DICT"): dict, _op("EMPTY_TUPLE"): tuple}
_PUT = {_op("BINPUT"): "<B", _op("LONG_BINPUT"): "<I"}
_GET = {_op("BINGET"): "<B", _op("LONG_BINGET"): "<I"}
_TUPLE_N = {_op("TUPLE1"): 1, _op("TUPLE2"): 2, _op("TUPLE3"): 3}
_MEMOIZE, _STOP = _op("MEMOIZE"), _op("STOP")


class _Forbidden(Exception):
    """A global outside the allow-list (its qualified name)."""


class _Mark:
    __slots__ = ()


_MARK = _Mark()


def read_batch_pickle(buffer: bytearray, *, where: str, rows: int, features: int) -> dict:
    """The dict pickled in ``buffer`` (one batch file's bytes), checked as it is read.

    Args:
        buffer: the whole file content. Arrays in the result are writable views of it (no
            copy), so it stays alive as long as they do.
        where: how to name the file in error messages (a path, or ``archive:member``).
        rows: images per batch (10000 in the official files).
        features: values per image (3072).

    Returns:
        The top-level dict with its keys as written (``bytes`` in the official files,
        ``str`` in some re-pickles); a NumPy array where the file has one; byte strings as
        ``bytes`` (short) or a uint8 view of the file (long).

    Raises:
        DataError: one line naming ``where``: a forbidden global, an array, list or string
            the batch layout does not allow, or a truncated/corrupt pickle.
    """
    try:
        result = _Walker(buffer, rows=rows, features=features).run()
        if not isinstance(result, dict):
            raise Refused(f"it holds {describe(result)}, not a dict")
        return {key: _finish(value, buffer) for key, value in result.items()}
    except _Forbidden as exc:
        raise DataError(
            f"{where}: refusing to unpickle: it references the forbidden global "
            f"'{exc.args[0]}' (CIFAR-10 files only use NumPy array globals); "
            "the file is not an official CIFAR-10 batch and may be malicious"
        ) from None
    except Refused as exc:
        raise DataError(f"{where}: {exc.args[0]}; not an official CIFAR-10 batch") from None
    # A damaged pickle trips the walk in many ways; all mean the same thing to the user.
    except (Corrupt, LookupError, TypeError, ValueError, RecursionError, struct.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{where}: truncated or corrupt pickle ({reason})") from None


def _finish(value: Any, buffer: bytearray) -> Any:
    """Top-level values as callers see them: arrays built, long strings as uint8 views."""
    if isinstance(value, Array):
        if value.value is None:
            raise Refused("an array has no data")
        return value.value
    if isinstance(value, Blob):
        return np.frombuffer(buffer, np.uint8, value.stop - value.start, value.start)
    return value


class _Walker:
    """A stack machine over the pickle's opcodes that only builds inert values."""

    def __init__(self, buffer: bytearray, *, rows: int, features: int) -> None:
        self.buffer = buffer
        self.view = memoryview(buffer)
        self.rows, self.features = rows, features
        self.pos = 0
        # The official layout takes about 2 opcodes per image (label and file name), a
        # Python 3 re-pickle about 4 (memo entries); anything far beyond is not a batch.
        self.max_ops = 8 * rows + 1024
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}

    # -- reading arguments ---------------------------------------------------------
    def _take(self, n: int) -> memoryview:
        start, stop = self.pos, self.pos + n
        if n < 0 or stop > len(self.view):
            raise Corrupt(f"the file ends inside an opcode at byte {start}")
        self.pos = stop
        return self.view[start:stop]

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _line(self) -> str:
        end = bytes(self.view[self.pos : self.pos + _SMALL]).find(b"\n")
        if end < 0:
            raise Corrupt(f"an unterminated name at byte {self.pos}")
        return bytes(self._take(end + 1)[:-1]).decode("latin-1")

    def _bytes(self, n: int) -> bytes | Blob:
        start = self.pos
        self._take(n)
        return bytes(self.view[start : start + n]) if n <= _SMALL else Blob(start, start + n)

    def _text(self, n: int) -> str:
        if n > _SMALL:
            raise Refused(f"a text string of {n} bytes at byte {self.pos}")
        return bytes(self._take(n)).decode("utf-8", "surrogatepass")

    def _pop_mark(self) -> list[Any]:
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise Corrupt("a container without its MARK")

    # -- the walk ------------------------------------------------------------------
    def run(self) -> Any:
        stack, n = self.stack, len(self.view)
        for _ in range(self.max_ops):
            if self.pos >= n:
                raise Corrupt("the file ends before the pickle's STOP")
            at = self.pos
            op = self.view[at]
            self.pos += 1
            if op in _INTS:  # most frequent first: labels, file names, memo entries
                stack.append(self._unpack(_INTS[op]))
            elif op in _BYTES:
                stack.append(self._bytes(self._unpack(_BYTES[op])))
            elif op in _PUT:
                self.memo[self._unpack(_PUT[op])] = stack[-1]
            elif op == _MEMOIZE:
                self.memo[len(self.memo)] = stack[-1]
            elif op in _GET:
                stack.append(self.memo[self._unpack(_GET[op])])
            elif op in _TEXTS:
                stack.append(self._text(self._unpack(_TEXTS[op])))
            elif op in _CONSTANTS:
                stack.append(_CONSTANTS[op])
            elif op in _EMPTY:
                stack.append(_EMPTY[op]())
            elif op in _TUPLE_N:
                size = _TUPLE_N[op]
                items = stack[-size:]
                if len(items) < size or any(v is _MARK for v in items):
                    raise Corrupt(f"a tuple of {size} without its items at byte {at}")
                del stack[-size:]
                stack.append(tuple(items))
            elif op == _STOP:
                if len(stack) != 1:
                    raise Corrupt(f"{len(stack)} values left at STOP")
                return stack.pop()
            else:
                self._structural(op, at)
        raise Refused(f"more than {self.max_ops} pickle opcodes")

    def _structural(self, op: int, at: int) -> None:
        """The opcodes that combine values: marks, containers, globals, calls, protocol."""
        handler = _STRUCTURAL.get(op)
        if handler is None:
            name = _OPCODE_NAMES.get(op, f"0x{op:02x}")
            raise Refused(f"the pickle opcode {name} at byte {at}, which batches never use")
        handler(self, at)

    def _mark(self, at: int) -> None:
        self.stack.append(_MARK)

    def _appends(self, at: int) -> None:
        items = self._pop_mark()
        self._extend(self.stack[-1], items)

    def _append(self, at: int) -> None:
        item = self.stack.pop()
        self._extend(self.stack[-1], [item])

    def _setitems(self, at: int) -> None:
        items = self._pop_mark()
        self._set_items(self.stack[-1], items)

    def _setitem(self, at: int) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def _list(self, at: int) -> None:
        items = self._pop_mark()
        self.stack.append([])
        self._extend(self.stack[-1], items)

    def _dict(self, at: int) -> None:
        items = self._pop_mark()
        self.stack.append({})
        self._set_items(self.stack[-1], items)

    def _tuple(self, at: int) -> None:
        items = self._pop_mark()
        if len(items) > _MAX_CONTAINER:
            raise Refused(f"a tuple of {len(items)} items")
        self.stack.append(tuple(items))

    def _long1(self, at: int) -> None:
        size = self._unpack("<B")
        self.stack.append(int.from_bytes(self._take(size), "little", signed=True))

    def _global(self, at: int) -> None:
        module = self._line()
        self.stack.append(self._resolve(module, self._line()))

    def _stack_global(self, at: int) -> None:
        name, module = self.stack.pop(), self.stack.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise Corrupt(f"STACK_GLOBAL without a module and name at byte {at}")
        self.stack.append(self._resolve(module, name))

    def _reduce(self, at: int) -> None:
        args = self.stack.pop()
        self.stack.append(call(self.stack.pop(), args))

    def _build(self, at: int) -> None:
        state = self.stack.pop()
        build(self.stack[-1], state, buffer=self.buffer, rows=self.rows, features=self.features)

    def _proto(self, at: int) -> None:
        if self._unpack("<B") > pickle.HIGHEST_PROTOCOL:
            raise Corrupt("an unknown pickle protocol")

    def _frame(self, at: int) -> None:
        self._unpack("<Q")  # only a read-ahead hint

    def _inst(self, at: int) -> None:
        # INST names a class and calls it: a forbidden one is named as such, NumPy's refused.
        module = self._line()
        name = self._line()
        self._resolve(module, name)
        raise Refused(f"an INST call of {module}.{name}")

    # -- containers ----------------------------------------------------------------
    def _extend(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, list):
            raise Refused(f"appending to {describe(target)}")
        if len(target) + len(items) > self.rows:
            raise Refused(
                f"a list of more than {self.rows} entries (a batch holds {self.rows} images)"
            )
        target.extend(items)

    def _set_items(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, dict) or len(items) % 2:
            raise Corrupt("dict items without a dict")
        if len(target) + len(items) // 2 > _MAX_CONTAINER:
            raise Refused(f"a dict of more than {_MAX_CONTAINER} entries")
        for i in range(0, len(items), 2):
            key = items[i]
            if not isinstance(key, (bytes, str)):
                raise Refused(f"a dict key {describe(key)}; batch keys are names")
            target[key] = items[i + 1]

    def _resolve(self, module: str, name: str) -> Global:
        known = ALLOWED_GLOBALS.get((module, name))
        if known is None:
            raise _Forbidden(f"{module}.{name}")
        return Global(known)


# Opcode -> the _Walker method that handles it, named after it (all others are refused).
_STRUCTURAL = {
    _op(name): getattr(_Walker, f"_{name.lower()}")
    for name in (
        *("MARK", "APPENDS", "APPEND", "SETITEMS", "SETITEM", "LIST", "DICT", "TUPLE"),
        *("LONG1", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "PROTO", "FRAME", "INST"),
    )
}
