"""Fetching the official CIFAR-10 archive into the per-user cache folder."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from kmlp.network.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published next to the archive
ARCHIVE_NAME = "cifar-10-python.tar.gz"

_CHUNK = 1 << 20  # bytes per read while downloading
_HOW_TO_POINT = (
    f"to use a local copy, pass --data DIR or set KMLP_DATA=DIR, where DIR holds {ARCHIVE_NAME} "
    "or the extracted cifar-10-batches-py folder"
)


def default_cache_dir() -> Path:
    """The per-user cache folder where CIFAR-10 is downloaded and looked for last.

    ``$KMLP_CACHE`` if set, else ``$XDG_CACHE_HOME/kmlp``, else ``~/.cache/kmlp``.
    The folder is not created here.
    """
    override = os.environ.get("KMLP_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "kmlp"
    return Path.home() / ".cache" / "kmlp"


def _show_url(url: str) -> str:
    """``url`` for messages: a password in it (``https://user:pw@host/...``, as a mirror
    might need) masked, one line."""
    shown = re.sub(r"^([^:/@]*://[^:/@]*):[^/]*@", r"\1:***@", url)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error here
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return " ".join(text.split())


def download_cifar10(
    *,
    dest: str | Path | None = None,
    progress: bool = True,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download the CIFAR-10 python archive, verify its md5 and return its path.

    The file is written under a temporary name in ``dest`` and renamed only once complete and
    verified, so an interrupted or corrupted download never looks like data.

    Args:
        dest: folder to download into; default ``default_cache_dir()`` (created if missing).
        progress: show a tqdm progress bar (bytes) on stderr.
        url: where to fetch from; default ``$KMLP_CIFAR_URL``, else the official URL.
        md5: expected hex md5 of the archive; default the published one.
        timeout: seconds to wait for the server on connect and on each read.

    Returns:
        ``dest / "cifar-10-python.tar.gz"``.

    Raises:
        DataError: no network / server error (one line saying how to use a local copy),
            md5 mismatch (the file is deleted), or ``dest`` not writable.
    """
    folder = Path(dest).expanduser() if dest is not None else default_cache_dir()
    url = url or os.environ.get("KMLP_CIFAR_URL") or CIFAR10_URL
    expected = (md5 or CIFAR10_MD5).lower()
    target = folder / ARCHIVE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{ARCHIVE_NAME}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot write the download to {folder}: {_one_line(exc)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _fetch(url, out, progress=progress, timeout=timeout)
        if digest != expected:
            raise DataError(
                f"downloaded {ARCHIVE_NAME} from {_show_url(url)} is corrupt: md5 {digest} "
                f"({size} bytes), expected {expected}; it was deleted, try again"
            )
        os.replace(tmp, target)
    except OSError as exc:  # local disk trouble; network errors are DataErrors by now
        raise DataError(f"cannot write the download to {folder}: {_one_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _fetch(url: str, out: BinaryIO, *, progress: bool, timeout: float) -> tuple[str, int]:
    """Stream ``url`` into the binary file ``out``; return (hex md5, bytes written)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"CIFAR-10 {ARCHIVE_NAME}",
                disable=not progress,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise _WriteError(exc) from None
                    size += len(chunk)
                    bar.update(len(chunk))
    except _WriteError as exc:
        raise exc.error from None
    # URLError (incl. HTTPError), refused/reset connections, timeouts, broken HTTP framing.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(
            f"could not download CIFAR-10 from {_show_url(url)} ({_one_line(exc)}); {_HOW_TO_POINT}"
        ) from None
    if total is not None and size != total:
        raise DataError(
            f"download of CIFAR-10 from {_show_url(url)} stopped after {size} of {total} bytes; "
            f"try again, or {_HOW_TO_POINT}"
        )
    return digest.hexdigest(), size


class _WriteError(Exception):
    """Carries a local write failure past the handler meant for network failures."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error
