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
        stage = trial.user_attrs.get("stage")
        peers = [
            t.intermediate_values
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            )
            if t.user_attrs.get("stage") == stage
        ]
        return median_rule(
            value=trial.intermediate_values[step], step=step, peers=peers, n_startup=self.n_startup
        )
