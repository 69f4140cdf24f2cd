"""Errors that mean bad study input; the CLI prints them as one line."""

from __future__ import annotations


class StudyError(Exception):
    """A bad search setting, an unknown or mismatched study, nothing to export, ..."""
