"""Tables of a study: one row per stage, one row per study. Data first, then text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from kmlp.study.plan import TrialInfo, completed, stage_counts
from kmlp.study.records import trial_infos


@dataclass(frozen=True)
class StageRow:
    """A stage's range (log10 λ), budget, trial counts and best completed trial."""

    stage: int
    low: float
    high: float
    derived_from: str
    budget: int
    complete: int
    pruned: int
    failed: int
    running: int
    best_trial: int | None
    best_lambda: float | None
    best_value: float | None


def stage_rows(stages: Sequence[dict[str, Any]], trials: Sequence[TrialInfo]) -> list[StageRow]:
    rows = []
    for record in stages:
        s = int(record["stage"])
        counts = stage_counts(trials, s)
        scored = completed(trials, s)
        best = min(scored, key=lambda t: (-t.value, t.number)) if scored else None
        rows.append(
            StageRow(
                stage=s,
                low=float(record["low"]),
                high=float(record["high"]),
                derived_from=str(record.get("derived_from", "?")),
                budget=int(record["n_trials"]),
                complete=counts.get(TrialState.COMPLETE, 0),
                pruned=counts.get(TrialState.PRUNED, 0),
                failed=counts.get(TrialState.FAIL, 0),
                running=counts.get(TrialState.RUNNING, 0) + counts.get(TrialState.WAITING, 0),
                best_trial=best.number if best else None,
                best_lambda=10.0**best.log10_lambda if best else None,
                best_value=best.value if best else None,
            )
        )
    return rows


def format_stage_table(rows: Sequence[StageRow]) -> str:
    header = (
        f"{'stage':>5}  {'log10 lambda range':<18}  {'from':<6}  {'trials':>7}  "
        f"{'pruned':>6}  {'failed':>6}  {'best lambda':>11}  {'best val':>8}  {'trial':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        done = r.complete + r.pruned
        best_lam = f"{r.best_lambda:.3e}" if r.best_lambda is not None else "-"
        best_val = f"{100 * r.best_value:.2f}%" if r.best_value is not None else "-"
        best_no = f"#{r.best_trial}" if r.best_trial is not None else "-"
        lines.append(
            f"{r.stage:>5}  {f'[{r.low:.3f}, {r.high:.3f}]':<18}  {r.derived_from:<6}  "
            f"{f'{done}/{r.budget}':>7}  {r.pruned:>6}  {r.failed:>6}  {best_lam:>11}  "
            f"{best_val:>8}  {best_no:>5}"
        )
    if not rows:
        lines.append("(no stage started yet)")
    return "\n".join(lines)


def study_table(study: optuna.Study) -> str:
    """The stage table of ``study``, then its best trial."""
    rows = stage_rows(study.user_attrs.get("stages", []), trial_infos(study))
    text = format_stage_table(rows)
    best = best_completed(study)
    if best is not None:
        text += (
            f"\nbest: trial #{best.number} (stage {best.user_attrs.get('stage')}), "
            f"lambda {10.0 ** best.params['log10_lambda']:.4e}, "
            f"val accuracy {100 * best.value:.2f}%"
        )
    return text


def best_completed(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The COMPLETE kmlp trial with the highest value (earliest on ties), or None."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and "log10_lambda" in t.params
    ]
    if not trials:
        return None
    return min(trials, key=lambda t: (-t.value, t.number))


@dataclass(frozen=True)
class StudyRow:
    name: str
    trials: int
    complete: int
    stages_done: int
    stages_total: int | None
    best_value: float | None
    best_lambda: float | None


def study_rows(storage: optuna.storages.BaseStorage) -> list[StudyRow]:
    rows = []
    for frozen in storage.get_all_studies():
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        stages = frozen.user_attrs.get("stages", [])
        search = frozen.user_attrs.get("search") or {}
        best = best_completed(study)
        rows.append(
            StudyRow(
                name=frozen.study_name,
                trials=len(trials),
                complete=sum(t.state == TrialState.COMPLETE for t in trials),
                stages_done=sum(bool(s.get("completed")) for s in stages),
                stages_total=search.get("stages"),
                best_value=best.value if best else None,
                best_lambda=10.0 ** best.params["log10_lambda"] if best else None,
            )
        )
    return rows


def format_study_rows(rows: Sequence[StudyRow]) -> str:
    if not rows:
        return "(no studies)"
    width = max(5, *(len(r.name) for r in rows))
    header = (
        f"{'study':<{width}}  {'trials':>6}  {'complete':>8}  {'stages':>6}  "
        f"{'best lambda':>11}  {'best val':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        stages = f"{r.stages_done}/{r.stages_total}" if r.stages_total else "-"
        lam = f"{r.best_lambda:.3e}" if r.best_lambda is not None else "-"
        val = f"{100 * r.best_value:.2f}%" if r.best_value is not None else "-"
        lines.append(
            f"{r.name:<{width}}  {r.trials:>6}  {r.complete:>8}  {stages:>6}  {lam:>11}  {val:>8}"
        )
    return "\n".join(lines)
