"""Progress lines a worker prints: a stage opens or closes, a trial ends (with the best so far).

Lines start with ``[w<i>] `` when several workers share the terminal.
"""

from __future__ import annotations

from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from kmlp.study import plan
from kmlp.study.objective import Outcome
from kmlp.study.records import trial_infos


def stage_opened(record: dict[str, Any], *, out: TextIO, prefix: str) -> None:
    how = record["derived_from"]
    if how == "top-k":
        how = (
            f"top-{record['top_k']} trials {record['top_k_trials']} "
            f"+ margin {record['margin']}" + (", capped" if record.get("capped") else "")
        )
    print(
        f"{prefix}stage {record['stage']}: log10 lambda in [{record['low']:.3f}, "
        f"{record['high']:.3f}] ({how}), {record['n_trials']} trials",
        file=out,
        flush=True,
    )


def waiting(stage: int, *, grace: int, out: TextIO, prefix: str) -> None:
    print(
        f"{prefix}stage {stage}: every trial slot is taken; waiting for the running trials "
        f"(a dead worker's trial is failed and rerun after {grace} s without heartbeat)",
        file=out,
        flush=True,
    )


def stage_closed(record: dict[str, Any], *, out: TextIO, prefix: str) -> None:
    best = (
        f"best lambda {record['best_lambda']:.3e}, val {100 * record['best_value']:.2f}% "
        f"(trial #{record['best_trial']})"
        if "best_trial" in record
        else "no completed trial"
    )
    print(f"{prefix}stage {record['stage']} finished: {best}", file=out, flush=True)


def trial_done(
    study: optuna.Study,
    number: int,
    record: dict[str, Any],
    outcome: Outcome,
    *,
    out: TextIO,
    prefix: str,
) -> None:
    """One line: stage, trial, its λ and result, the stage's progress, the best so far."""
    s = record["stage"]
    infos = trial_infos(study)
    finished = sum(1 for t in infos if t.stage == s and t.state in plan.FINISHED)
    trial = outcome.trial
    lam = f"{trial.user_attrs['lambda']:.3e}" if trial and "lambda" in trial.user_attrs else "?"
    if outcome.state == TrialState.COMPLETE:
        what = f"val {100 * outcome.value:.2f}%"
    else:
        what = outcome.state.name.lower() + (f" ({outcome.note})" if outcome.note else "")
    secs = trial.user_attrs.get("seconds") if trial else None
    took = f" in {secs:.1f} s" if secs is not None else ""
    scored = plan.completed(infos)
    best = min(scored, key=lambda t: (-t.value, t.number)) if scored else None
    best_text = (
        f" | best {100 * best.value:.2f}% at lambda {10.0**best.log10_lambda:.3e} (#{best.number})"
        if best is not None
        else ""
    )
    print(
        f"{prefix}stage {s} trial #{number} ({finished}/{record['n_trials']}): "
        f"lambda {lam} {what}{took}{best_text}",
        file=out,
        flush=True,
    )
