"""Allow-list unpickling of the CIFAR-10 "python version" batch files.

The official files are Python 2 pickles of plain dicts holding NumPy arrays, so the only
globals they name are NumPy's array reconstructor, ``numpy.ndarray`` and ``numpy.dtype``.
Any other global (``os.system``, ``builtins.eval``, ...) means the file was not produced by
the CIFAR-10 authors, and we refuse *before* the pickle can call it: ``find_class`` is the
only door through which a pickle obtains a callable, so refusing there runs no code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from kmlp.network.errors import DataError

try:  # NumPy >= 2 moved the implementation to numpy._core; numpy.core warns on import there
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# (module, name) as written in the pickle -> the object it stands for. Resolving here, not by
# import, is what maps numpy.core -> numpy._core on NumPy 2 without a DeprecationWarning.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, qualified_name: str) -> None:
        super().__init__(qualified_name)
        self.qualified_name = qualified_name


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(raw: bytes, *, where: str) -> Any:
    """Unpickle ``raw`` (bytes of one CIFAR-10 batch file) allowing only NumPy array globals.

    Args:
        raw: the whole file content.
        where: how to name the file in error messages (a path, or ``archive:member``).

    Returns:
        The unpickled object; byte-string keys stay ``bytes`` (``encoding="bytes"``), as the
        official files are meant to be read.

    Raises:
        DataError: the pickle names a global outside the allow-list, or is truncated/corrupt.
    """
    unpickler = _AllowListUnpickler(io.BytesIO(raw), encoding="bytes")
    try:
        return unpickler.load()
    except _ForbiddenGlobal as exc:
        raise DataError(
            f"{where}: refusing to unpickle: it references the forbidden global "
            f"'{exc.qualified_name}' (CIFAR-10 files only use NumPy array globals); "
            "the file is not an official CIFAR-10 batch and may be malicious"
        ) from None
    # A damaged pickle can fail in many ways (EOFError, UnpicklingError, ValueError from
    # numpy's setstate, struct errors, ...); all mean the same thing to the user.
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{where}: truncated or corrupt pickle ({reason})") from None
