"""Errors that mean bad storage input or a storage that is gone; the CLI prints one line."""

from __future__ import annotations

from kmlp.errors import KmlpError


class StorageError(KmlpError):
    """A storage URL is malformed or unreachable, or a stored file is not what it claims."""


class LockLost(StorageError):
    """A storage lock's lease ran out while it was held: another process may hold it now.

    Raised by ``LeasedLock.check()``; the holder must not write what it read under the lock.
    """
