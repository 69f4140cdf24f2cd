"""Median pruning within a stage, at cycle ends after a warm-up.

A trial reports its validation accuracy at each checkpoint (step = update steps done).
It is judged only at *decision points*: the first checkpoint at or after the end of the
warm-up, then one every cycle after that (the final checkpoint never prunes: a trial
that ran to its end is complete). There it is pruned when its accuracy at that step is
below the median of the accuracies that the stage's finished trials (COMPLETE or PRUNED)
had at the same step, once at least ``n_startup`` of them reported that step.

Why not Optuna's MedianPruner: it compares a trial's *best* value so far with the
peers' value at each step. Under a cyclical learning rate the peers' mid-cycle values
(high learning rate) are low, so it prunes almost nothing until the last checkpoint.
Comparing at every checkpoint the value itself fails the other way: ten noisy
mid-cycle comparisons prune nearly every trial after the first few. At cycle ends the
learning rate is lowest and the accuracy predicts the final one best; with the default
one-cycle warm-up and two cycles, each trial is judged once, halfway, against all the
stage's trials so far (pruned ones included, so the median is not that of survivors).
Peers come from the same stage only: earlier stages' trials, from wider ranges, would
make the median too easy to beat.

Successive halving (``halving_rule``) is the alternative for a lockstep group, whose
members all reach each cycle end together: at a decision point the worse half of the
group stops, the better half trains on. It compares members with each other at the same
step, so it needs no finished peers and prunes from the first decision point on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState


def is_decision_step(*, step: int, previous_step: int, warmup_steps: int, cycle_steps: int) -> bool:
    """True if a decision point (warm-up end + k cycles, k >= 0) lies in (previous, step]."""
    k = max(0, math.ceil((previous_step + 1 - warmup_steps) / cycle_steps))
    return warmup_steps + k * cycle_steps <= step


def median_rule(
    *,
    value: float,
    step: int,
    peers: Sequence[Mapping[int, float]],
    n_startup: int,
) -> bool:
    """True if a trial whose accuracy at ``step`` is ``value`` is below the peers' median."""
    if math.isnan(value):
        return False
    values = [p[step] for p in peers if step in p and not math.isnan(p[step])]
    if len(values) < n_startup:
        return False
    return value < statistics.median(values)


def halving_rule(
    *, values: Mapping[int, float], min_group: int = 1, reduction: int = 2
) -> frozenset[int]:
    """Members of a lockstep group to stop at a decision point: the worse part.

    ``values`` maps each member still training to its accuracy at this step. The best
    ceil(n / reduction) are kept (n = 5, reduction 2: keep 3, stop 2), but never fewer
    than ``min_group`` and never a member tied with a kept one (a tie at the cut keeps
    every tied member, so fewer stop). A NaN accuracy ranks below every number and ties
    with other NaNs (so if a NaN would be kept, nothing stops). Returns the stopped
    members' keys.
    """
    if min_group < 1 or reduction < 2:
        raise ValueError("need min_group >= 1 and reduction >= 2")
    n = len(values)
    if n == 0 or all(math.isnan(v) for v in values.values()):
        return frozenset()
    keep = max(math.ceil(n / reduction), min_group)
    if keep >= n:
        return frozenset()
    ranked = sorted(values.values(), key=lambda v: -math.inf if math.isnan(v) else v, reverse=True)
    cut = ranked[keep - 1]
    if math.isnan(cut):  # a NaN is kept, and NaNs tie with each other: keep them all
        return frozenset()
    return frozenset(m for m, v in values.items() if math.isnan(v) or v < cut)


class StageMedianPruner(optuna.pruners.BasePruner):
    """``median_rule`` at decision points; peers = finished trials of the same ``stage``."""

    def __init__(self, *, n_startup: int, warmup_steps: int, cycle_steps: int) -> None:
        self.n_startup = n_startup
        self.warmup_steps = warmup_steps
        self.cycle_steps = max(1, cycle_steps)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        steps = sorted(trial.intermediate_values)
        if not steps:
            return False
        step = steps[-1]
        previous = steps[-2] if len(steps) > 1 else -1
        if not is_decision_step(
            step=step,
            previous_step=previous,
            warmup_steps=self.warmup_steps,
            cycle_steps=self.cycle_steps,
        ):
            return False
        peers = stage_peers(study, trial.user_attrs.get("stage"))
        return median_rule(
            value=trial.intermediate_values[step], step=step, peers=peers, n_startup=self.n_startup
        )


def stage_peers(study: optuna.Study, stage: object) -> list[Mapping[int, float]]:
    """Intermediate values (step -> accuracy) of ``stage``'s finished trials."""
    return [
        t.intermediate_values
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if t.user_attrs.get("stage") == stage
    ]


def median_reason(*, value: float, step: int, peers: Sequence[Mapping[int, float]]) -> dict:
    """Why ``median_rule`` stopped a trial: the ``pruned_by`` user attribute it gets."""
    values = [p[step] for p in peers if step in p and not math.isnan(p[step])]
    return {
        "rule": "median",
        "step": int(step),
        "value": float(value),
        "threshold": float(statistics.median(values)) if values else None,
        "peers": len(values),
    }


def halving_reason(*, value: float, step: int, values: Mapping[int, float]) -> dict:
    """Why ``halving_rule`` stopped a member: the ``pruned_by`` user attribute it gets.

    ``threshold`` is the lowest accuracy kept in the group at that step; ``group`` the
    members compared."""
    stopped = halving_rule(values=values)
    kept = [v for m, v in values.items() if m not in stopped and not math.isnan(v)]
    return {
        "rule": "halving",
        "step": int(step),
        "value": float(value),
        "threshold": float(min(kept)) if kept else None,
        "group": len(values),
    }
