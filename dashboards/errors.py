"""Errors that mean bad input to the dashboards package; the CLI prints them as one line."""

from __future__ import annotations

from kmlp.errors import KmlpError


class DashboardError(KmlpError):
    """Base of the dashboards package's user-facing errors (bad port, storage, study, store)."""
