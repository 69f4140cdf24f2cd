"""Errors that mean bad input to the network package; the CLI prints them as one line."""

from __future__ import annotations

from kmlp.errors import KmlpError


class KmlpNetworkError(KmlpError):
    """Base of the network package's user-facing errors."""


class DataError(KmlpNetworkError):
    """CIFAR-10 files are missing, corrupt, unsafe or cannot be fetched."""


class ConfigError(KmlpNetworkError, ValueError):
    """A network or training setting is invalid (widths, lambda, init, ...)."""


class DivergenceError(KmlpNetworkError):
    """Training produced a non-finite loss.

    Attributes:
        step: the update step (0-based) at which the loss became NaN or inf.
    """

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step
