"""Running a lockstep group: K claimed trials of one stage trained together.

The worker claims up to K trials of the current stage under the storage lock (each
created as a lone trial is, so its λ does not depend on K) and hands them here. They
train in one pass (``kmlp.network.train_lockstep``: shared batches, stacked first-layer
products), and each stays its own Optuna trial: it reports its validation accuracy at
each checkpoint, is judged by the study's pruning rule, and is told (COMPLETE, PRUNED, or
PRUNED as diverged) the moment it leaves the group, with its own curves hook call and
user attributes, while the others train on.

Pruning: ``"median"`` asks each member's ``trial.should_prune()`` (the stage median rule,
with finished peers of the stage); ``"halving"`` stops the worse half of the members still
training at each decision point (cycle ends after the warm-up, ``pruning.halving_rule``).
A stopped member records why in its ``pruned_by`` user attribute.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import optuna
from optuna.trial import TrialState

from kmlp.network import (
    DEFAULT_BLAS_THREADS,
    Checkpoint,
    Dataset,
    TrainConfig,
    blas_limit,
    train_lockstep,
)
from kmlp.network.lockstep_result import MemberResult
from kmlp.storage.urls import redact
from kmlp.study.objective import Outcome, TrialHook, conclude, diverged, lost
from kmlp.study.pruning import (
    halving_reason,
    halving_rule,
    is_decision_step,
    median_reason,
    stage_peers,
)
from kmlp.study.record import PARAM

# Called with each member's trial and outcome as soon as it is told.
ToldMember = Callable[[optuna.Trial, Outcome], None]


@dataclasses.dataclass(frozen=True)
class Pruning:
    """The pruning rule of a group: ``rule`` in median | halving | none, and its decision
    points (in update steps: the first at ``warmup_steps``, then every ``cycle_steps``)."""

    rule: str
    warmup_steps: int
    cycle_steps: int


def run_group(
    *,
    study: optuna.Study,
    trials: Sequence[optuna.Trial],
    data: Dataset,
    base_config: TrainConfig,
    pruning: Pruning,
    on_told: ToldMember,
    on_trial_end: TrialHook | None = None,
    err: TextIO | None = None,
    blas_threads: int | None = DEFAULT_BLAS_THREADS,
) -> list[Outcome]:
    """Train ``trials`` (their ``log10_lambda`` set, all of one stage) in lockstep.

    Each member is told as it leaves the group, then ``on_told(trial, outcome)`` is
    called (the worker drops it from the heartbeat and prints it). On an exception or
    interrupt every member not yet told is failed (``fail_reason``) and it is re-raised.
    Returns the outcomes in ``trials`` order.
    """
    configs = [dataclasses.replace(base_config, lam=10.0 ** float(t.params[PARAM])) for t in trials]
    last_step = 2 * configs[0].half_cycle(len(data.train.y)) * configs[0].cycles
    outcomes: dict[int, Outcome] = {}
    pruned_at: dict[int, int] = {}
    gone: set[int] = set()  # failed meanwhile by another worker: results discarded
    previous = [-1]  # the step of the group's last checkpoint (decision points)

    def member_callback(k: int) -> Callable[[Checkpoint], bool]:
        trial = trials[k]
        reported: set[int] = set()

        def on_checkpoint(point: Checkpoint) -> bool:
            if point.step in reported or math.isnan(point.val_accuracy):
                return False
            reported.add(point.step)
            try:
                trial.report(point.val_accuracy, point.step)
                if pruning.rule != "median" or point.step >= last_step:
                    return False
                if not trial.should_prune():
                    return False
                peers = stage_peers(study, trial.user_attrs.get("stage"))
                reason = median_reason(value=point.val_accuracy, step=point.step, peers=peers)
                trial.set_user_attr("pruned_by", reason)
            except optuna.exceptions.UpdateFinishedTrialError:
                gone.add(k)
                return True
            pruned_at[k] = point.step
            return True

        return on_checkpoint

    def group_callback(points: Mapping[int, Checkpoint]) -> set[int]:
        step = next(iter(points.values())).step
        before, previous[0] = previous[0], step
        if pruning.rule != "halving" or not is_decision_step(
            step=step,
            previous_step=before,
            warmup_steps=pruning.warmup_steps,
            cycle_steps=max(1, pruning.cycle_steps),
        ):
            return set()
        values = {k: p.val_accuracy for k, p in points.items() if k not in gone}
        stopped = halving_rule(values=values)
        for k in stopped:
            reason = halving_reason(value=values[k], step=step, values=values)
            try:
                trials[k].set_user_attr("pruned_by", reason)
            except optuna.exceptions.UpdateFinishedTrialError:
                gone.add(k)
            pruned_at[k] = step
        return set(stopped)

    def on_leave(member: MemberResult) -> None:
        k = member.member
        trial = trials[k]
        try:
            if k in gone:
                outcome = lost(study, trial)
            elif member.error is not None:
                outcome = diverged(study, trial, step=member.error.step, seconds=member.seconds)
            else:
                outcome = conclude(
                    study,
                    trial,
                    member,
                    pruned_at=pruned_at.get(k),
                    on_trial_end=on_trial_end,
                    err=err,
                )
        except optuna.exceptions.UpdateFinishedTrialError:
            outcome = lost(study, trial)
        outcomes[k] = outcome
        on_told(trial, outcome)

    try:
        with blas_limit(blas_threads) as threads:
            for trial in trials:
                # float32 sums differ with the BLAS thread count; retrain uses the same.
                trial.set_user_attr("lambda", 10.0 ** float(trial.params[PARAM]))
                trial.set_user_attr("blas_threads", threads)
                trial.set_user_attr("lockstep", len(trials))
        train_lockstep(
            data=data,
            configs=configs,
            callbacks=[member_callback(k) for k in range(len(trials))],
            group_callback=group_callback,
            on_leave=on_leave,
            progress=False,
            blas_threads=blas_threads,
        )
    except BaseException as exc:
        for k, trial in enumerate(trials):
            if k in outcomes:
                continue
            try:
                trial.set_user_attr("fail_reason", redact(f"{type(exc).__name__}: {exc}")[:500])
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # storage gone too; the heartbeat will fail the trial
                pass
        raise
    return [outcomes[k] for k in range(len(trials))]
