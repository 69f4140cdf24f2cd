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

from optuna.trial import TrialState

from kmlp.study.config import SearchConfig
from kmlp.study.narrowing import Scored, narrow
from kmlp.study.record import (
    COARSE,
    MANUAL,
    TOP_K,
    StageRecord,
    TrialInfo,
    best_trial,
    scored_trials,
)

OCCUPYING = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Claim:
    """Run one trial of ``stage``: pop a queued (retry) trial if ``waiting``, else a new one."""

    stage: int
    waiting: bool


@dataclass(frozen=True)
class OpenStage:
    """Append ``record`` to the stages (its ``created_at`` is set by the worker)."""

    record: StageRecord


@dataclass(frozen=True)
class CloseStage:
    """Mark ``stage`` finished, with its best trial (None if none completed)."""

    stage: int
    best: TrialInfo | None


@dataclass(frozen=True)
class Wait:
    """Every slot of ``stage`` is taken; ``running`` trials of other workers still run."""

    stage: int
    running: int


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
    """The trials that can be the best (of ``stage``, or of every stage), as narrowing inputs."""
    return [
        Scored(t.number, t.log10_lambda, t.value)  # type: ignore[arg-type]  (scored: not None)
        for t in scored_trials(trials, stage)
    ]


def next_action(
    *, stages: Sequence[StageRecord], trials: Sequence[TrialInfo], search: SearchConfig
) -> Action:
    """The next step for a worker, given the stage records and all trials of the study."""
    if not stages:
        return OpenStage(first_stage(search))
    current = stages[-1]
    s = current.stage
    if current.completed:
        if s + 1 >= search.stages:
            return Done()
        return OpenStage(following_stage(search, stages=stages, trials=trials))
    budget = current.n_trials
    counts = stage_counts(trials, s)
    if sum(counts.get(state, 0) for state in FINISHED) >= budget:
        return CloseStage(stage=s, best=best_trial(trials, s))
    if counts.get(TrialState.WAITING, 0):
        return Claim(stage=s, waiting=True)
    if sum(counts.get(state, 0) for state in OCCUPYING) < budget:
        return Claim(stage=s, waiting=False)
    return Wait(stage=s, running=counts.get(TrialState.RUNNING, 0))


def first_stage(search: SearchConfig) -> StageRecord:
    low, high = search.ranges[0] if search.ranges else search.coarse
    return StageRecord(
        stage=0,
        low=low,
        high=high,
        n_trials=search.budget(0),
        derived_from=MANUAL if search.manual else COARSE,
    )


def following_stage(
    search: SearchConfig, *, stages: Sequence[StageRecord], trials: Sequence[TrialInfo]
) -> StageRecord:
    """Record of stage ``len(stages)``: by hand, or narrowed from the top-k trials so far."""
    s = len(stages)
    if search.ranges is not None:
        low, high = search.ranges[s]
        return StageRecord(
            stage=s, low=low, high=high, n_trials=search.budget(s), derived_from=MANUAL
        )
    previous = stages[-1]
    # Every range searched so far, the current one included: a best trial in the outer
    # tenth at its edge lets the next range reach past it (narrowing module docstring).
    searched = (min(r.low for r in stages), max(r.high for r in stages))
    narrowed = narrow(
        low=previous.low,
        high=previous.high,
        trials=completed(trials),
        top_k=search.top_k,
        margin=search.margin,
        searched=searched,
    )
    return StageRecord(
        stage=s,
        low=narrowed.low,
        high=narrowed.high,
        n_trials=search.budget(s),
        derived_from=TOP_K,
        top_k=search.top_k,
        top_k_trials=tuple(narrowed.top),
        top_k_span=(float(narrowed.span[0]), float(narrowed.span[1])),
        margin=search.margin,
        capped=narrowed.capped,
        extended=narrowed.extended,
    )
