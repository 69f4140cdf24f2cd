"""The root of kmlp's user-facing errors.

Every package's errors derive from :class:`KmlpError` (as Optuna's derive from
``OptunaError``), so the CLI catches one type and prints it as one line. This module
imports nothing, so that ``network`` and ``storage``, which import nothing else of
kmlp's, can still share the root.
"""

from __future__ import annotations


class KmlpError(Exception):
    """Bad input or an unusable environment, said in one line: the CLI prints
    ``kmlp: error: <message>`` and exits with status 2."""
