"""Errors that mean bad study input; the CLI prints them as one line."""

from __future__ import annotations

from kmlp.errors import KmlpError


class StudyError(KmlpError):
    """A bad search setting, an unknown or mismatched study, nothing to export, ..."""
