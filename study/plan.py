"""What a worker does next, as a pure function of the stage records and trials.

A worker holds the storage lock, reads the study, asks ``next_action`` and applies the
answer, until the answer is to run a trial (``Claim``), to wait for other workers'
trials (``Wait``) or that the study is finished (``Done``). Because the read and the
write happen under one lock, a stage never gets more trials than its budget:

- a stage's *occupied* slots are its trials that are RUNNING, WAITING, COMPLETE or
  PRUNED; FAILED trials (interrupted, or failed by the heartbeat of a dead worker) free
  their slot, so it is run again;
- a stage is *finished* when its COMPLETE + PRUNED trials reach its budget;
- the next stage's record (range, budget, derivation) is written only once the stage
  before is finished and closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from kmlp.study.config import SearchConfig
from kmlp.study.narrowing import Scored, narrow

OCCUPYING = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TrialInfo:
    """What planning needs of a trial; ``stage`` is None for trials kmlp did not create."""

    number: int
    stage: int | None
    state: TrialState
    value: float | None = None
    log10_lambda: float | None = None


@dataclass(frozen=True)
class Claim:
    """Run one trial of ``stage``: pop a queued (retry) trial if ``waiting``, else a new one."""

    stage: int
    waiting: bool


@dataclass(frozen=True)
class OpenStage:
    """Append ``record`` (stage, low, high, n_trials, derived_from, ...) to the stages."""

    record: dict[str, Any]


@dataclass(frozen=True)
class CloseStage:
    """Mark ``stage`` finished, with its best completed trial (None if none completed)."""

    stage: int
    best: TrialInfo | None


@dataclass(frozen=True)
class Wait:
    """Every slot of ``stage`` is taken; other workers' trials are still running."""

    stage: int


@dataclass(frozen=True)
class Done:
    """All stages are finished."""


Action = Claim | OpenStage | CloseStage | Wait | Done


def stage_counts(trials: Sequence[TrialInfo], stage: int) -> dict[TrialState, int]:
    """Number of trials of ``stage`` in each state."""
    counts: dict[TrialState, int] = {}
    for t in trials:
        if t.stage == stage:
            counts[t.state] = counts.get(t.state, 0) + 1
    return counts


def completed(trials: Sequence[TrialInfo], stage: int | None = None) -> list[Scored]:
    """COMPLETE trials (of ``stage``, or of every stage) as narrowing inputs."""
    return [
        Scored(t.number, t.log10_lambda, t.value)
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.stage is not None
        and (stage is None or t.stage == stage)
        and t.value is not None
        and t.log10_lambda is not None
    ]


def next_action(
    *, stages: Sequence[dict[str, Any]], trials: Sequence[TrialInfo], search: SearchConfig
) -> Action:
    """The next step for a worker, given the stage records and all trials of the study."""
    if not stages:
        return OpenStage(first_stage(search))
    current = stages[-1]
    s = int(current["stage"])
    if current.get("completed"):
        if s + 1 >= search.stages:
            return Done()
        return OpenStage(following_stage(search, stages=stages, trials=trials))
    budget = int(current["n_trials"])
    counts = stage_counts(trials, s)
    if sum(counts.get(state, 0) for state in FINISHED) >= budget:
        best = _best(trials, s)
        return CloseStage(stage=s, best=best)
    if counts.get(TrialState.WAITING, 0):
        return Claim(stage=s, waiting=True)
    if sum(counts.get(state, 0) for state in OCCUPYING) < budget:
        return Claim(stage=s, waiting=False)
    return Wait(stage=s)


def first_stage(search: SearchConfig) -> dict[str, Any]:
    low, high = search.ranges[0] if search.ranges else search.coarse
    return {
        "stage": 0,
        "low": low,
        "high": high,
        "n_trials": search.budget(0),
        "derived_from": "manual" if search.manual else "coarse",
    }


def following_stage(
    search: SearchConfig, *, stages: Sequence[dict[str, Any]], trials: Sequence[TrialInfo]
) -> dict[str, Any]:
    """Record of stage ``len(stages)``: by hand, or narrowed from the top-k trials so far."""
    s = len(stages)
    if search.ranges is not None:
        low, high = search.ranges[s]
        return {
            "stage": s,
            "low": low,
            "high": high,
            "n_trials": search.budget(s),
            "derived_from": "manual",
        }
    previous = stages[-1]
    narrowed = narrow(
        low=float(previous["low"]),
        high=float(previous["high"]),
        trials=completed(trials),
        top_k=search.top_k,
        margin=search.margin,
    )
    return {
        "stage": s,
        "low": narrowed.low,
        "high": narrowed.high,
        "n_trials": search.budget(s),
        "derived_from": "top-k",
        "top_k": search.top_k,
        "top_k_trials": list(narrowed.top),
        "top_k_span": list(narrowed.span),
        "margin": search.margin,
        "capped": narrowed.capped,
    }


def _best(trials: Sequence[TrialInfo], stage: int) -> TrialInfo | None:
    scored = completed(trials, stage)
    if not scored:
        return None
    best = min(scored, key=lambda t: (-t.value, t.number))
    return next(t for t in trials if t.number == best.number)
