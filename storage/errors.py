"""Errors that mean bad storage input; the CLI prints them as one line."""

from __future__ import annotations

from kmlp.errors import KmlpError


class StorageError(KmlpError):
    """A storage URL is malformed or unreachable, or a stored file is not what it claims."""
