"""NumPy's array pickles, understood rather than run (used by ``network.safe_pickle``).

A pickled ndarray is ``_reconstruct(ndarray, (0,), b"b")`` -- an empty array -- followed
by ``BUILD`` with the state ``(1, shape, dtype, is_fortran, raw bytes)``; its dtype is
``dtype("u1", False, True)`` followed by ``BUILD`` with ``(3, "|", None, None, None, -1,
-1, 0)``. Here those calls make symbols, never objects: the shape and dtype an array
declares are checked against what a CIFAR-10 batch may hold *before* anything is built,
and an accepted array is a zero-copy view of the file's own bytes.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

# (module, name) as written in the pickle -> what it stands for. numpy.core became
# numpy._core in NumPy 2; both spellings occur (the official files use the old one).
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
}
_DTYPE_TEXT = re.compile(r"[iuf][1248]")  # plain numbers; a batch needs u1 and integers


class Refused(Exception):
    """The pickle is well formed but is not a CIFAR-10 batch (the reason)."""


class Corrupt(Exception):
    """The pickle is truncated or malformed (the reason)."""


class Global:
    """One of ``ALLOWED_GLOBALS``, as a name: never resolved to the real object."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Blob:
    """A long byte string: bytes [start, stop) of the file, not copied."""

    __slots__ = ("start", "stop")

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop


class DType:
    __slots__ = ("built", "dtype")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self.built = dtype, False


class Array:
    """An array under construction: ``_reconstruct`` made it, ``BUILD`` gives it data."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: np.ndarray | None = None


def describe(value: Any, depth: int = 0) -> str:
    """A short description of a walked value for messages (never a long repr)."""
    if isinstance(value, Global):
        return f"numpy.{value.name}"
    if isinstance(value, Blob):
        return f"a string of {value.stop - value.start} bytes"
    if isinstance(value, Array):
        return "an array"
    if isinstance(value, DType):
        return f"dtype {value.dtype}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {value.bit_length()}-bit integer"
    if isinstance(value, tuple):
        if depth > 2:
            return "(...)"
        inner = ", ".join(describe(v, depth + 1) for v in value[:4])
        return f"({inner}{', ...' if len(value) > 4 else ''}{',' if len(value) == 1 else ''})"
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def call(func: Any, args: Any) -> Array | DType:
    """What ``REDUCE`` of ``func(*args)`` stands for; Refused unless NumPy's own pickles
    would make that call."""
    if not isinstance(func, Global) or not isinstance(args, tuple):
        raise Refused(f"a call of {describe(func)}")
    if func.name == "_reconstruct":
        # NumPy's __reduce__ always starts from an empty array; another shape would have
        # NumPy allocate that array before any data arrives.
        if (
            len(args) != 3
            or not (isinstance(args[0], Global) and args[0].name == "ndarray")
            or args[1] != (0,)
            or args[2] not in (b"b", "b")
        ):
            raise Refused(f"numpy's _reconstruct called with {describe(args)}")
        return Array()
    if func.name == "dtype":
        spec = args[0] if args else None
        text = spec.decode("latin-1") if isinstance(spec, bytes) else spec
        if (
            len(args) != 3
            or not isinstance(text, str)
            or not _DTYPE_TEXT.fullmatch(text)
            or not all(isinstance(flag, int) for flag in args[1:])
        ):
            raise Refused(f"numpy.dtype called with {describe(args)}")
        return DType(np.dtype(text))
    # numpy.ndarray(shape, dtype) would allocate uninitialised memory of any size.
    raise Refused(f"numpy.ndarray called directly with {describe(args)}")


def build(target: Any, state: Any, *, buffer: bytearray, rows: int, features: int) -> None:
    """Apply ``BUILD``'s ``state`` to a DType or Array symbol.

    An array must declare (rows, features) uint8 (the images) or (rows,) integers (the
    labels), and come with exactly that many bytes; it becomes a view of ``buffer``.
    """
    if isinstance(target, DType):
        _build_dtype(target, state)
    elif isinstance(target, Array):
        _build_array(target, state, buffer=buffer, rows=rows, features=features)
    else:
        raise Refused(f"setting the state of {describe(target)}")


def _build_dtype(target: DType, state: Any) -> None:
    # (version 3, byte order, subarray, names, fields, elsize, alignment, flags) of a plain
    # scalar dtype; anything structured is not part of a batch.
    order = state[1] if isinstance(state, tuple) and len(state) == 8 else None
    order = order.decode("latin-1") if isinstance(order, bytes) else order
    if (
        target.built
        or order not in ("|", "<", ">", "=")
        or state[0] != 3
        or state[2:5] != (None, None, None)
        or state[5:7] != (-1, -1)
    ):
        raise Refused(f"a dtype state {describe(state)}")
    if order in "<>" and target.dtype.itemsize > 1:
        target.dtype = target.dtype.newbyteorder(order)
    target.built = True


def _build_array(target: Array, state: Any, *, buffer: bytearray, rows: int, features: int) -> None:
    if target.value is not None or not isinstance(state, tuple) or len(state) != 5:
        raise Refused(f"an array state {describe(state)}")
    version, shape, dtype, fortran, raw = state
    if (
        version != 1
        or not isinstance(shape, tuple)
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        or not isinstance(dtype, DType)
    ):
        raise Refused(f"an array state {describe(state)}")
    dt = dtype.dtype
    images = shape == (rows, features) and dt == np.uint8
    labels = shape == (rows,) and dt.kind in "iu"
    if not (images or labels):
        raise Refused(
            f"it declares an array of shape {describe(shape)} {dt.name}; a batch holds "
            f"a ({rows}, {features}) uint8 array of images and {rows} labels"
        )
    if fortran not in (False, 0):
        raise Refused("an array in Fortran order (official batches are in C order)")
    count = math.prod(shape)
    if isinstance(raw, Blob):
        length = raw.stop - raw.start
    elif isinstance(raw, bytes):
        length = len(raw)
    else:
        raise Refused(f"array data given as {describe(raw)}")
    if length != count * dt.itemsize:
        raise Corrupt(f"{length} bytes of data for a {shape} {dt.name} array")
    if isinstance(raw, Blob):
        target.value = np.frombuffer(buffer, dt, count, raw.start).reshape(shape)
    else:
        target.value = np.frombuffer(raw, dt).reshape(shape).copy()
