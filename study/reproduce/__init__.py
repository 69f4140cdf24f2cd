"""``kmlp reproduce``: the method's published report, run as one command.

- ``published``: the published figures, as data, with where they come from;
- ``plan``: the experiments built from them (full or quick);
- ``record``: what a reproduction stores in Optuna (studies ``<prefix>/<kind>``);
- ``runs``, ``gradients``, ``searches``: running and recording the experiments;
- ``tasks``, ``pool``, ``run``, ``progress``: tasks, worker processes, the scheduler and
  its progress lines;
- ``results``: the measurements read back; ``compare``, ``compare_gradcheck``, ``rows``:
  set beside the published figures, one row each.

Public entry points: :func:`reproduce` (run what is not finished), :func:`collect`
(read the measurements back) and :func:`compare` (one row per published figure).
"""

from __future__ import annotations

from kmlp.study.reproduce.compare import compare
from kmlp.study.reproduce.plan import Plan, make_plan
from kmlp.study.reproduce.results import Measurements, collect
from kmlp.study.reproduce.rows import ResultRow
from kmlp.study.reproduce.run import DEFAULT_PROCESSES, Outcome, reproduce

__all__ = [
    "DEFAULT_PROCESSES",
    "Measurements",
    "Outcome",
    "Plan",
    "ResultRow",
    "collect",
    "compare",
    "make_plan",
    "reproduce",
]
