"""A study's summary, computed once from its record and trials, then shown many ways.

:func:`study_summary` reads a study once (user attributes, trials) and
:func:`summarize` (pure) turns that into a :class:`StudySummary`: each stage's range,
budget, trial counts, best trial and how its range was chosen; the overall best; the
retrain results; the totals; the interval of λ within noise of the best
(:attr:`StudySummary.interval`). ``kmlp show`` / ``kmlp studies`` (text and ``--json``), the
progress lines, the dashboard note, the search figure and ``kmlp report`` all draw it;
none of them looks at the trials again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import optuna
from optuna.trial import TrialState

from kmlp.study.config import SearchConfig
from kmlp.study.errors import StudyError
from kmlp.study.interval import LambdaInterval, lambda_interval
from kmlp.study.narrowing import Scored
from kmlp.study.record import (
    METRIC_NAME,
    RetrainRecord,
    StageRecord,
    TrialInfo,
    best_trial,
    retrain_records,
    scored_trials,
    stage_records,
    trial_infos,
)


@dataclass(frozen=True, kw_only=True)
class StageSummary:
    """One stage: its record, how its range was chosen, its trials counted, its best.

    ``points`` are the stage's COMPLETE trials (by number): the dots of the search figure.
    ``running`` counts RUNNING and WAITING (queued retry) trials.
    """

    record: StageRecord
    how: str
    complete: int
    pruned: int
    failed: int
    running: int
    best: TrialInfo | None
    points: tuple[TrialInfo, ...]

    @property
    def stage(self) -> int:
        return self.record.stage

    @property
    def low(self) -> float:
        return self.record.low

    @property
    def high(self) -> float:
        return self.record.high

    @property
    def budget(self) -> int:
        return self.record.n_trials

    @property
    def done(self) -> int:
        """Trials that count against the budget: COMPLETE + PRUNED."""
        return self.complete + self.pruned

    @property
    def finished(self) -> bool:
        return self.record.completed

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "low": self.low,
            "high": self.high,
            "budget": self.budget,
            "derived_from": self.record.derived_from,
            "extended": bool(self.record.extended),
            "how": self.how,
            "done": self.done,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "running": self.running,
            "finished": self.finished,
            "best": self.best.to_dict() if self.best else None,
            "trials": [
                {"trial": t.number, "log10_lambda": t.log10_lambda, "value": t.value}
                for t in self.points
            ],
            "record": self.record.to_dict(),
        }


@dataclass(frozen=True, kw_only=True)
class StudySummary:
    """What a study found and how far it is. Values are fractions 0..1, λ in natural units.

    Attributes:
        stages: one per stage started, in order.
        best: the best trial of the study (:func:`kmlp.study.record.best_trial`).
        retrains: ``kmlp retrain`` results recorded on the study, oldest first.
        stages_total, trials_total: what the search plans (None: not a kmlp study).
        trials_done: COMPLETE + PRUNED trials of all stages; failed, running likewise.
        config, data, search: the study's stored configuration (dicts).
    """

    name: str
    stages: tuple[StageSummary, ...]
    best: TrialInfo | None
    retrains: tuple[RetrainRecord, ...]
    stages_total: int | None
    trials_total: int | None
    trials_done: int
    failed: int
    running: int
    config: Mapping[str, Any]
    data: Mapping[str, Any]
    search: Mapping[str, Any]
    created_at: str | None = None
    kmlp_version: str | None = None

    @property
    def stages_done(self) -> int:
        return sum(s.finished for s in self.stages)

    @property
    def finished(self) -> bool:
        """Every planned stage is closed: nothing is left to run."""
        return self.stages_total is not None and self.stages_done >= self.stages_total

    @cached_property
    def interval(self) -> LambdaInterval | None:
        """The λ values whose fitted accuracy is within noise of the best, or None.

        A Gaussian-process fit of validation accuracy against log10 λ over every completed
        trial of every stage (:mod:`kmlp.study.interval`: why a GP, how noise is
        estimated), containing the best trial's λ. Computed here, from the same trials
        as :attr:`best`, and not stored on the study: it is a function of the trials, so
        a stored copy could only go stale (a resumed study adds trials), and the fit
        takes milliseconds. None without a completed trial or a known validation size.
        """
        n_val = self.data.get("val_size")
        if self.best is None or self.best.log10_lambda is None or not isinstance(n_val, int):
            return None
        trials = [
            Scored(t.number, t.log10_lambda, t.value)  # type: ignore[arg-type]  (scored)
            for s in self.stages
            for t in s.points
        ]
        if not trials:
            return None
        try:
            span = (min(s.low for s in self.stages), max(s.high for s in self.stages))
            return lambda_interval(
                trials=trials, n_val=n_val, best_log10_lambda=self.best.log10_lambda, span=span
            )
        except StudyError:
            return None

    @property
    def retrain(self) -> RetrainRecord | None:
        """The latest retrain of the best trial (else the latest retrain), or None."""
        if not self.retrains:
            return None
        of_best = [r for r in self.retrains if self.best and r.trial == self.best.number]
        return (of_best or list(self.retrains))[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what ``kmlp show --json`` prints."""
        best = self.best.to_dict() if self.best else None
        retrain = self.retrain
        interval = self.interval
        return {
            "study": self.name,
            "metric": METRIC_NAME,
            "finished": self.finished,
            "best": best,
            "best_lambda": self.best.lam if self.best else None,
            "best_value": self.best.value if self.best else None,
            "lambda_interval": [interval.low, interval.high] if interval else None,
            "interval": interval.to_dict() if interval else None,
            "test_accuracy": retrain.test_accuracy if retrain else None,
            "progress": {
                "trials_done": self.trials_done,
                "trials_total": self.trials_total,
                "stages_done": self.stages_done,
                "stages_total": self.stages_total,
                "failed": self.failed,
                "running": self.running,
            },
            "stages": [s.to_dict() for s in self.stages],
            "retrain": [r.to_dict() for r in self.retrains],
            "config": dict(self.config),
            "data": dict(self.data),
            "search": dict(self.search),
            "created_at": self.created_at,
            "kmlp_version": self.kmlp_version,
        }


def summarize(
    *, name: str, user_attrs: Mapping[str, Any], trials: Sequence[TrialInfo]
) -> StudySummary:
    """The summary of a study with these user attributes and trials (pure)."""
    records = stage_records(user_attrs.get("stages"))
    stages = []
    for i, record in enumerate(records):
        mine = [t for t in trials if t.stage == record.stage]
        count = {state: sum(t.state == state for t in mine) for state in TrialState}
        stages.append(
            StageSummary(
                record=record,
                how=record.how(records[i - 1] if i > 0 else None),
                complete=count[TrialState.COMPLETE],
                pruned=count[TrialState.PRUNED],
                failed=count[TrialState.FAIL],
                running=count[TrialState.RUNNING] + count[TrialState.WAITING],
                best=best_trial(mine, record.stage),
                points=tuple(scored_trials(mine, record.stage)),
            )
        )
    search = user_attrs.get("search")
    search = search if isinstance(search, Mapping) else {}
    stages_total, trials_total = _planned(search)
    return StudySummary(
        name=name,
        stages=tuple(stages),
        best=best_trial(trials),
        retrains=tuple(retrain_records(user_attrs.get("retrain"))),
        stages_total=stages_total,
        trials_total=trials_total,
        trials_done=sum(s.done for s in stages),
        failed=sum(s.failed for s in stages),
        running=sum(s.running for s in stages),
        config=_mapping(user_attrs.get("config")),
        data=_mapping(user_attrs.get("data")),
        search=search,
        created_at=_text(user_attrs.get("created_at")),
        kmlp_version=_text(user_attrs.get("kmlp_version")),
    )


def study_summary(study: optuna.Study) -> StudySummary:
    """The summary of a loaded study (reads its attributes and trials once)."""
    return summarize(name=study.study_name, user_attrs=study.user_attrs, trials=trial_infos(study))


def storage_summaries(storage: optuna.storages.BaseStorage) -> list[StudySummary]:
    """The summary of every study in ``storage``, by name."""
    out = []
    for frozen in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        out.append(study_summary(study))
    return out


def _planned(search: Mapping[str, Any]) -> tuple[int | None, int | None]:
    if not search:
        return None, None
    try:
        config = SearchConfig.from_dict(dict(search))
    except (StudyError, TypeError, ValueError):
        return None, None
    return config.stages, sum(config.budget(s) for s in range(config.stages))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
