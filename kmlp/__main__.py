"""``python -m kmlp``: the same as the ``kmlp`` command."""

from __future__ import annotations

from kmlp.cli.entry import main

main()
