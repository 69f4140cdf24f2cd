"""The export file: one JSON object describing a study's best trial, for ``kmlp retrain``.

The study package decides what goes in; this module only writes and reads the file and
checks that a file read back is a kmlp export of a known format version whose fields have
the types readers rely on, so that a crafted file is refused in one line. (The training
configuration inside is checked by ``network.TrainConfig.from_dict``.) Messages name the
file, never the values of its storage URL.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from kmlp.storage.errors import StorageError

FORMAT = "kmlp-export"
FORMAT_VERSION = 1
# Keys every export must have (the study package writes more).
REQUIRED_KEYS = ("study", "trial", "lambda", "log10_lambda", "val_accuracy", "config", "data")


def write_export(path: str | Path, content: dict[str, Any]) -> Path:
    """Write ``content`` plus the format marker to ``path`` atomically; return the path."""
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise ValueError(f"export content lacks {missing}")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, **content}
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise StorageError(f"cannot write {path}: folder {path.parent} does not exist")
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"
    # Write-then-rename so that a reader never sees half a file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def read_export(path: str | Path) -> dict[str, Any]:
    """Read a kmlp export; StorageError (one line) unless it is one, whole and well typed.

    Besides the format marker and version, every field a reader relies on is checked
    for its type (``check_fields``), every number in the document must be finite and
    within 64-bit integer range, nesting is bounded, and so is the file's size.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:  # at most the limit: /dev/zero has no size
            raw = handle.read(MAX_EXPORT_BYTES + 1)
        if len(raw) > MAX_EXPORT_BYTES:
            raise StorageError(
                f"{path} is too big for a kmlp export (over {MAX_EXPORT_BYTES} bytes)"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise StorageError(f"no such export file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise StorageError(
            f"{path} is not a kmlp export (not JSON: {exc.msg} at line {exc.lineno})"
        ) from None
    except ValueError as exc:  # NaN/Infinity, or a number of more than 4300 digits
        reason = "it holds a number too long to read" if "digits" in str(exc) else str(exc)
        raise StorageError(f"{path} is not a kmlp export ({reason})") from None
    except RecursionError:
        raise StorageError(f"{path} is not a kmlp export (nested too deeply)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StorageError(f'{path} is not a kmlp export (no "format": "{FORMAT}")')
    if document.get("format_version") != FORMAT_VERSION:
        raise StorageError(
            f"{path} has export format version {_kind(document.get('format_version'))}; "
            f"this kmlp reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in document]
    if missing:
        raise StorageError(f"{path} is not a complete kmlp export (missing {', '.join(missing)})")
    problem = _number_problem(document, depth=0) or check_fields(document)
    if problem:
        raise StorageError(f"{path} is not a valid kmlp export: {problem}")
    return document


# -- what a well-formed export holds ------------------------------------------------------

MAX_EXPORT_BYTES = 16 * 1024 * 1024  # an export is a few kB; its stage list grows slowly
_MAX_DEPTH = 32
_INT_LIMIT = 2**63


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a kmlp export can hold")


def _kind(value: object) -> str:
    """What ``value`` is, for a message: its type, and the value itself if short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**15:
        return f"a {int(value.bit_length() * 0.30103) + 1}-digit number"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _number_problem(value: object, *, depth: int) -> str | None:
    """The first number that is not finite or exceeds 64-bit range, or too deep nesting."""
    if depth > _MAX_DEPTH:
        return f"nested more than {_MAX_DEPTH} levels deep"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None if abs(value) < _INT_LIMIT else f"{_kind(value)} is too large"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    items = value.values() if isinstance(value, dict) else value
    for item in items:  # type: ignore[union-attr]  # JSON gives only dicts and lists here
        problem = _number_problem(item, depth=depth + 1)
        if problem:
            return problem
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Field -> (what it must be, test). Optional fields may also be null or absent.
_FIELDS: dict[str, tuple[str, Any]] = {
    "study": (
        "a study name (1 to 512 printable characters)",
        lambda v: isinstance(v, str) and v.strip() != "" and len(v) <= 512 and v.isprintable(),
    ),
    "trial": ("a whole number >= 0", lambda v: _is_int(v) and v >= 0),
    "lambda": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "log10_lambda": ("a number", _is_number),
    "val_accuracy": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "config": ("an object", lambda v: isinstance(v, dict)),
    "data": ("an object", lambda v: isinstance(v, dict)),
}
_OPTIONAL: dict[str, tuple[str, Any]] = {
    "storage": ("a string", lambda v: isinstance(v, str)),
    "stage": ("a whole number >= 0", lambda v: _is_int(v) and v >= 0),
    "train_accuracy": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "blas_threads": ("a whole number >= 1", lambda v: _is_int(v) and v >= 1),
    "search": ("an object", lambda v: isinstance(v, dict)),
    "stages": ("a list", lambda v: isinstance(v, list)),
    "versions": ("an object", lambda v: isinstance(v, dict)),
    "exported_at": ("a string", lambda v: isinstance(v, str)),
    "lambda_interval": (
        "a list [low, high] of two numbers with 0 < low <= high",
        lambda v: (
            isinstance(v, list)
            and len(v) == 2
            and all(_is_number(x) for x in v)
            and 0 < v[0] <= v[1]
        ),
    ),
    "interval": ("an object", lambda v: isinstance(v, dict)),
}
_DATA_FIELDS: dict[str, tuple[str, Any]] = {
    "n_train": ("a whole number >= 1", lambda v: _is_int(v) and v >= 1),
    "n_val": ("a whole number >= 1", lambda v: _is_int(v) and v >= 1),
    "fingerprint": ("a string", lambda v: isinstance(v, str)),
}


def check_fields(document: dict[str, Any]) -> str | None:
    """The first field of an export (a JSON object) that is not what readers rely on, as
    a phrase ('"data" must be an object, not a list'); None if all are."""
    for fields, where, optional in (
        (_FIELDS, document, False),
        (_OPTIONAL, document, True),
        (_DATA_FIELDS, document.get("data"), True),
    ):
        if not isinstance(where, dict):
            continue  # "data" itself was checked with the required fields
        prefix = "" if where is document else "data."
        for name, (what, test) in fields.items():
            if name not in where or (optional and where[name] is None):
                continue
            if not test(where[name]):
                return f'"{prefix}{name}" must be {what}, not {_kind(where[name])}'
    interval = document.get("lambda_interval")
    lam = document.get("lambda")
    if interval is not None and _is_number(lam) and not interval[0] <= lam <= interval[1]:
        return (
            f'"lambda_interval" [{interval[0]:.6g}, {interval[1]:.6g}] must contain '
            f'"lambda" {lam:.6g}'
        )
    return None
