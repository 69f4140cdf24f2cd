"""Checking settings before any work: whole numbers, finite reals, and what fits in memory.

Every check raises ``ConfigError`` with one line that names the setting and shows the
value safely (a 5000-digit integer or a long string is summarised, never printed whole).
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kmlp.network.errors import ConfigError

MAX_COUNT = 2**31 - 1  # sizes, steps and counts: far beyond use, within a C int
MAX_SEED = 2**63 - 1


def show(value: object) -> str:
    """``value`` for a message: short, one line, never a 5000-digit number."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
        if abs(value) >= 10**15:
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"a {digits}-digit number"
        return str(value)
    text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else f"{text[:45]}... ({len(text)} characters)"


def whole(name: str, value: object, *, low: int, high: int = MAX_COUNT) -> int:
    """``value`` as an int in [low, high]; floats, strings and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be a whole number, got {show(value)}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"{name} must be from {low} to {bound_text(high)}, got {show(number)}")
    return number


def bound_text(n: int) -> str:
    """2147483647 as "2^31-1": the limits here are powers of two less one."""
    return f"2^{n.bit_length()}-1" if n >= 2**20 and (n + 1) & n == 0 else str(n)


def real(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {show(value)}")
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {number:g}")
    return number


def flag(name: str, value: object) -> bool:
    """``value`` as a bool; only True and False (no "false" strings, no 0/1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be true or false, got {show(value)}")
    return bool(value)


def widths(name: str, value: object) -> tuple[int, ...]:
    """A list or tuple of layer widths >= 1 (a string such as "55" is refused)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ConfigError(f"{name} must be a list of whole numbers, got {show(value)}")
    return tuple(whole(f"{name} entry", w, low=1) for w in value)


def show_path(path: object) -> str:
    """A path for a message: whole unless absurdly long."""
    text = " ".join(str(path).split("\n"))
    return text if len(text) <= 200 else f"{text[:100]}...{text[-60:]} ({len(text)} characters)"


def writable_file(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` if a file can be written there now; ConfigError otherwise.

    It must not be a folder; an existing file must be writable; otherwise its nearest
    existing ancestor must be a folder that accepts a new file, which is tried (a file is
    created and removed at once): permissions alone do not tell, e.g. for root in /proc.
    Missing folders in between are left to the writer to create.
    """
    text = os.fspath(path)
    target = Path(text).expanduser()
    where = f"{name} {show_path(text)}"
    try:
        if not text:
            raise ConfigError(f"{name}: an empty path")
        if text.endswith(os.sep) or target.is_dir():
            raise ConfigError(f"{where} is a folder; give a file name")
        if target.exists():
            if not os.access(target, os.W_OK):
                raise ConfigError(f"{where}: the file is not writable")
            return target
        _probe_nearest_folder(target.parent, where)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    return target


def _probe_nearest_folder(path: Path, where: str) -> None:
    """Create and remove a file in the nearest existing ancestor of ``path`` (itself
    included): the one sure test that a file could be written below it now."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{where}: {show_path(ancestor)} is not a folder")
    fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".kmlp-write-check-")
    os.close(fd)
    os.unlink(probe)


def writable_folder(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` if a folder can be written there now (it exists, or can be created);
    ConfigError otherwise: an empty path, an existing file, or a nearest existing
    ancestor that is not a folder or refuses a new file (tried, as ``writable_file`` does).
    Nothing is left behind."""
    text = os.fspath(path)
    target = Path(text).expanduser()
    where = f"{name} {show_path(text)}"
    try:
        if not text.strip():
            raise ConfigError(f"{name}: an empty path")
        if target.exists() and not target.is_dir():
            raise ConfigError(f"{where} is a file, not a folder")
        _probe_nearest_folder(target, where)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    return target


# -- memory ----------------------------------------------------------------------------


def physical_memory() -> int | None:
    """Bytes of memory this process may use: the machine's RAM, or a smaller cgroup
    limit; None where neither can be read."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    usable = [m for m in limits if m > 0]
    return min(usable) if usable else None


def format_bytes(n: int) -> str:
    """``n`` bytes in decimal units: "1.2 TB"; astronomically large ones as a power of 10."""
    if n >= 1000**9:
        return f"about 10^{int(n.bit_length() * math.log10(2))} bytes"
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"):
        if n < 1000 or unit == "YB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def network_bytes(*, layer_sizes: Sequence[int], itemsize: int, rows: int) -> int:
    """A lower estimate of the bytes a network [d, h1, ..., c] needs.

    Its parameters (weights and, per layer, at most three vectors) three times over
    (parameters, gradients, an update's temporaries), plus about three float arrays per
    layer for ``rows`` images at once (the forward pass keeps each layer's activations
    for the backward pass; evaluation runs in chunks of 10000 images).
    """
    params = sum(a * b + 3 * b for a, b in itertools.pairwise(layer_sizes))
    activations = 3 * rows * sum(layer_sizes[1:])
    return itemsize * (3 * params + activations)


def check_fits(what: str, needed: int) -> None:
    """ConfigError if ``needed`` bytes exceed this machine's memory."""
    available = physical_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs about {format_bytes(needed)} of memory, more than this "
            f"machine's {format_bytes(available)}"
        )
