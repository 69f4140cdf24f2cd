"""The data of the search figure: log10 λ against validation accuracy, per stage, best marked.

Computed once by a pure function from a study's trials and its ``stages`` user attribute, then
drawn by :mod:`dashboards.search_plot` with plotly or matplotlib. Names follow the study package:
parameter ``log10_lambda``; trial user attrs ``stage``, ``lambda``; study user attr ``stages``
(one dict per stage with ``low`` and ``high`` in log10 λ and ``n_trials``, the budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

PARAM = "log10_lambda"


@dataclass(frozen=True, kw_only=True)
class StageSeries:
    """One stage of the search.

    Attributes:
        stage: 0 for the coarse stage, then 1, 2, ...
        low, high: the stage's sampling range in log10 λ (None when the study did not record it).
        n_trials: the stage's trial budget (None when not recorded).
        trial_numbers: Optuna trial numbers of the stage's completed trials, ascending.
        log10_lambda: their log10 λ, same order.
        val_accuracy: their validation accuracy as a fraction in 0..1, same order.
        n_pruned, n_failed: trials of the stage that were pruned / failed.
    """

    stage: int
    low: float | None
    high: float | None
    n_trials: int | None
    trial_numbers: tuple[int, ...]
    log10_lambda: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    n_pruned: int = 0
    n_failed: int = 0

    @property
    def best_index(self) -> int | None:
        """Index (into this stage's tuples) of its highest validation accuracy, or None."""
        if not self.val_accuracy:
            return None
        return max(range(len(self.val_accuracy)), key=lambda i: (self.val_accuracy[i], -i))


@dataclass(frozen=True, kw_only=True)
class BestPoint:
    """The best completed trial of the study (highest validation accuracy).

    Attributes:
        stage: its stage; index: its position in that stage's tuples.
        lam: λ = 10 ** log10_lambda; val_accuracy: fraction 0..1.
    """

    trial_number: int
    stage: int
    index: int
    log10_lambda: float
    lam: float
    val_accuracy: float


@dataclass(frozen=True, kw_only=True)
class SearchFigureData:
    """Everything the search figure and the summary show, as plain values."""

    study_name: str
    stages: tuple[StageSeries, ...]
    best: BestPoint | None

    @property
    def n_complete(self) -> int:
        """Number of completed trials drawn."""
        return sum(len(s.trial_numbers) for s in self.stages)


def search_figure_data(
    *,
    study_name: str,
    trials: Sequence[FrozenTrial],
    stages: Sequence[Mapping[str, Any]] | None,
) -> SearchFigureData:
    """Collect the points and ranges of a coarse-to-fine λ search (pure; no storage access).

    Args:
        study_name: shown in titles.
        trials: the study's trials, any states; completed trials with a finite value become
            points (value = validation accuracy, fraction); pruned / failed ones are counted.
        stages: the study's ``stages`` user attribute (position = stage number) or None.

    Returns:
        A SearchFigureData with one StageSeries per recorded stage or stage seen on a trial.
    """
    recorded = list(stages or [])
    points: dict[int, list[tuple[int, float, float]]] = {}
    pruned: dict[int, int] = {}
    failed: dict[int, int] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        stage = _stage_of(trial)
        if trial.state == TrialState.PRUNED:
            pruned[stage] = pruned.get(stage, 0) + 1
        elif trial.state == TrialState.FAIL:
            failed[stage] = failed.get(stage, 0) + 1
        elif trial.state == TrialState.COMPLETE:
            x = _log10_lambda_of(trial)
            y = trial.value
            if x is not None and y is not None and math.isfinite(y):
                points.setdefault(stage, []).append((trial.number, x, float(y)))
    n_stages = max([len(recorded), *(s + 1 for s in (*points, *pruned, *failed))])
    series = []
    for stage in range(n_stages):
        info = recorded[stage] if stage < len(recorded) else {}
        rows = points.get(stage, [])
        series.append(
            StageSeries(
                stage=stage,
                low=_float_or_none(info.get("low")),
                high=_float_or_none(info.get("high")),
                n_trials=_int_or_none(info.get("n_trials")),
                trial_numbers=tuple(r[0] for r in rows),
                log10_lambda=tuple(r[1] for r in rows),
                val_accuracy=tuple(r[2] for r in rows),
                n_pruned=pruned.get(stage, 0),
                n_failed=failed.get(stage, 0),
            )
        )
    return SearchFigureData(study_name=study_name, stages=tuple(series), best=_best(series))


def search_figure_data_for(study: optuna.Study) -> SearchFigureData:
    """:func:`search_figure_data` of a loaded study (reads its trials and ``stages``)."""
    stages = study.user_attrs.get("stages")
    return search_figure_data(
        study_name=study.study_name,
        trials=study.get_trials(deepcopy=False),
        stages=stages if isinstance(stages, list) else None,
    )


def _best(series: Sequence[StageSeries]) -> BestPoint | None:
    candidates = [
        (s.val_accuracy[i], -s.trial_numbers[i], s, i)
        for s in series
        for i in range(len(s.trial_numbers))
    ]
    if not candidates:
        return None
    _, _, s, i = max(candidates, key=lambda c: (c[0], c[1]))
    return BestPoint(
        trial_number=s.trial_numbers[i],
        stage=s.stage,
        index=i,
        log10_lambda=s.log10_lambda[i],
        lam=10.0 ** s.log10_lambda[i],
        val_accuracy=s.val_accuracy[i],
    )


def _stage_of(trial: FrozenTrial) -> int:
    stage = _int_or_none(trial.user_attrs.get("stage"))
    return stage if stage is not None and stage >= 0 else 0


def _log10_lambda_of(trial: FrozenTrial) -> float | None:
    x = _float_or_none(trial.params.get(PARAM))
    if x is not None:
        return x
    lam = _float_or_none(trial.user_attrs.get("lambda"))
    return math.log10(lam) if lam is not None and lam > 0 else None


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
