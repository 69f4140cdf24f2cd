"""A reproduction's measurements, read back from the storage by what they measure.

:func:`collect` reads each study of a reproduction once: the fixed runs by their run key
(``record.RUN_KEY``), the searches' summaries (``kmlp.study.summary``), the retrains of
each search's best λ, the gradient-check cases. :mod:`kmlp.study.reproduce.compare`
sets them beside the published figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from kmlp.storage import open_storage
from kmlp.study.reproduce import published as pub
from kmlp.study.reproduce.gradients import GradcheckCase, recorded_cases
from kmlp.study.reproduce.plan import GRADCHECK, INIT, NETWORKS, RETRAIN, SEARCHES, Plan
from kmlp.study.reproduce.record import finished_runs, load_if_exists
from kmlp.study.reproduce.searches import search_summary
from kmlp.study.summary import StudySummary


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A finished fixed run as stored; accuracies are fractions (None if it diverged)."""

    figure: str
    label: str
    study: str
    trial: int
    lam: float
    init: str
    cycles: int
    test_accuracy: float | None
    val_accuracy: float | None
    seconds: float | None
    test_size: int | None
    train_size: int | None
    train_loss_first: float | None
    train_loss_last: float | None
    diverged_at_step: int | None

    @classmethod
    def from_trial(cls, trial: FrozenTrial, study: str) -> RunRecord:
        a = trial.user_attrs
        data = a.get("data") or {}
        return cls(
            figure=str(a.get("figure", "")),
            label=str(a.get("label", "")),
            study=study,
            trial=trial.number,
            lam=float(trial.params.get("lambda", math.nan)),
            init=str(trial.params.get("init", "")),
            cycles=int(trial.params.get("cycles", 0)),
            test_accuracy=_number(a.get("test_accuracy")),
            val_accuracy=_number(a.get("val_accuracy")),
            seconds=_number(a.get("seconds")),
            test_size=data.get("test_size"),
            train_size=data.get("train_size"),
            train_loss_first=_number(a.get("train_loss_first")),
            train_loss_last=_number(a.get("train_loss_last")),
            diverged_at_step=a.get("diverged_at_step"),
        )


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """Everything a reproduction measured, by what it measures.

    ``networks`` / ``init``: figure key -> run; ``retrains``: (search kind, architecture)
    -> run; ``searches``: search kind -> summary; ``gradcheck``: (layers, BN) -> case.
    A missing entry was not run (yet).
    """

    plan: Plan
    networks: Mapping[str, RunRecord]
    init: Mapping[str, RunRecord]
    searches: Mapping[str, StudySummary]
    retrains: Mapping[tuple[str, str], RunRecord]
    gradcheck: Mapping[tuple[int, bool], GradcheckCase]

    @property
    def complete(self) -> bool:
        return (
            len(self.networks) == len(self.plan.networks)
            and len(self.init) == len(self.plan.init)
            and all(k in self.searches and self.searches[k].finished for k in SEARCHES)
            and len(self.retrains) == len(SEARCHES) * len(pub.ARCHITECTURES)
            and len(self.gradcheck) == len(self.plan.gradcheck.cases())
        )


def collect(*, storage: str | optuna.storages.BaseStorage, plan: Plan) -> Measurements:
    """Read a reproduction's measurements from ``storage`` (one read per study)."""
    rdb = storage if isinstance(storage, optuna.storages.BaseStorage) else open_storage(storage)

    def runs(kind: str, specs: Any) -> dict[str, RunRecord]:
        name = plan.study_name(kind)
        done = finished_runs(load_if_exists(rdb, name))
        return {
            s.figure: RunRecord.from_trial(done[s.key()], name) for s in specs if s.key() in done
        }

    searches = {}
    for kind in SEARCHES:
        summary = search_summary(rdb, plan.study_name(kind))
        if summary is not None:
            searches[kind] = summary
    retrain_name = plan.study_name(RETRAIN)
    retrained = finished_runs(load_if_exists(rdb, retrain_name))
    retrains = {}
    for kind, summary in searches.items():
        if summary.best is None or summary.best.lam is None:
            continue
        for arch in pub.ARCHITECTURES:
            spec = plan.retrain(arch, summary.best.lam)
            if spec.key() in retrained:
                retrains[(kind, arch)] = RunRecord.from_trial(retrained[spec.key()], retrain_name)
    gradcheck = recorded_cases(load_if_exists(rdb, plan.study_name(GRADCHECK)), plan.gradcheck)
    return Measurements(
        plan=plan,
        networks=runs(NETWORKS, plan.networks),
        init=runs(INIT, plan.init),
        searches=searches,
        retrains=retrains,
        gradcheck=gradcheck,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
