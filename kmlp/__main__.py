"""``python -m kmlp``: the same as the ``kmlp`` command."""

from __future__ import annotations

import sys

from kmlp.cli.main import main

sys.exit(main())
