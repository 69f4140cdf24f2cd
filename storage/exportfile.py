"""The export file: one JSON object describing a study's best trial, for ``kmlp retrain``.

The study package decides what goes in; this module only writes and reads the file and
checks that a file read back is a kmlp export of a known format version.
"""

from __future__ import annotations

import json
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
    """Read a kmlp export; raise StorageError if it is missing, not JSON or not an export."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StorageError(f"no such export file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise StorageError(f"{path} is not a kmlp export (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StorageError(f'{path} is not a kmlp export (no "format": "{FORMAT}")')
    if document.get("format_version") != FORMAT_VERSION:
        raise StorageError(
            f"{path} has export format version {document.get('format_version')!r}; "
            f"this kmlp reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in document]
    if missing:
        raise StorageError(f"{path} is not a complete kmlp export (missing {', '.join(missing)})")
    return document
