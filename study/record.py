"""The record of a study: what kmlp stores in Optuna, under which names, and the best trial.

Every other module (the worker, the CLI, ``kmlp.dashboards``) reads these names and
types from here; none re-derives them.

Study user attributes:

- ``config``: ``TrainConfig.to_dict()``; its ``lam`` is a placeholder each trial replaces.
- ``data``: n_train, n_val (options, None = all), train_size, val_size, dtype,
  fingerprint (sha256 of the raw files and subset sizes), source (where it was read).
- ``search``: ``SearchConfig.to_dict()``.
- ``stages``: one :class:`StageRecord` dict per stage (see there for its keys).
- ``retrain``: one :class:`RetrainRecord` dict per ``kmlp retrain`` that reached the study.
- ``kmlp_version``, ``created_at``.

The objective is named :data:`METRIC_NAME` (``study.set_metric_names``): the validation
accuracy as a fraction 0..1. Trial user attributes: ``stage``, ``lambda``,
``val_accuracy``, ``train_accuracy``, ``seconds`` (plus ``epochs``, ``steps``,
``worker``, ``blas_threads``, and ``pruned_at_step`` / ``diverged_at_step`` /
``fail_reason``); the parameter is :data:`PARAM`, λ = 10 ** log10_lambda.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kmlp.study.errors import StudyError

PARAM = "log10_lambda"
METRIC_NAME = "validation accuracy"

# How a stage's range was chosen (StageRecord.derived_from).
COARSE, MANUAL, TOP_K = "coarse", "manual", "top-k"


def now() -> str:
    """The time now, as stored in records (UTC, ISO 8601, seconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def name_metric(study: optuna.Study) -> None:
    """Name the objective :data:`METRIC_NAME` (optuna-dashboard shows it), if not yet."""
    if study.metric_names != [METRIC_NAME]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])


# --- trials -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrialInfo:
    """What kmlp needs of a trial; ``stage`` is None for trials kmlp did not create.

    ``value`` is the validation accuracy (fraction) of a finished trial, ``log10_lambda``
    its parameter (None while a queued retry has not started).
    """

    number: int
    stage: int | None
    state: TrialState
    value: float | None = None
    log10_lambda: float | None = None

    @property
    def lam(self) -> float | None:
        """λ = 10 ** log10_lambda, or None."""
        return None if self.log10_lambda is None else 10.0**self.log10_lambda

    @property
    def scored(self) -> bool:
        """A COMPLETE kmlp trial with a finite value and its λ: it can be the best."""
        return (
            self.state == TrialState.COMPLETE
            and self.stage is not None
            and self.value is not None
            and math.isfinite(self.value)
            and self.log10_lambda is not None
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "stage": self.stage,
            "state": self.state.name,
            "value": self.value,
            "log10_lambda": self.log10_lambda,
            "lambda": self.lam,
        }


def trial_info(trial: FrozenTrial) -> TrialInfo:
    stage = trial.user_attrs.get("stage")
    x = trial.params.get(PARAM)
    return TrialInfo(
        number=trial.number,
        stage=int(stage) if isinstance(stage, int | float) else None,
        state=trial.state,
        value=trial.value if trial.values else None,
        log10_lambda=float(x) if x is not None else None,
    )


def trial_infos(study: optuna.Study) -> list[TrialInfo]:
    """Every trial of ``study`` (one read), by number."""
    return [trial_info(t) for t in study.get_trials(deepcopy=False)]


def scored_trials(trials: Iterable[TrialInfo], stage: int | None = None) -> list[TrialInfo]:
    """The trials that can be the best (of ``stage``, or of every stage), by number."""
    return sorted(
        (t for t in trials if t.scored and (stage is None or t.stage == stage)),
        key=lambda t: t.number,
    )


def best_trial(trials: Iterable[TrialInfo], stage: int | None = None) -> TrialInfo | None:
    """The best trial: COMPLETE, highest value, the earliest number on ties; or None.

    The one rule kmlp uses for "best", of one ``stage`` or of the whole study.
    """
    candidates = scored_trials(trials, stage)
    return min(candidates, key=_rank) if candidates else None


def _rank(t: TrialInfo) -> tuple[float, int]:
    return (-(t.value if t.value is not None else -math.inf), t.number)


# --- stages -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StageRecord:
    """One stage of a study: the dict stored in the ``stages`` user attribute.

    Written when the stage opens (stage, low, high, n_trials, derived_from, created_at;
    top-k stages add top_k, top_k_trials, top_k_span, margin, capped, extended) and
    rewritten when it closes (completed=True, completed_at and, if a trial completed,
    best_trial, best_value, best_lambda). Keys this version does not know (a newer
    kmlp's) are kept in ``extra`` and written back.

    Attributes:
        low, high: the range of log10 λ the stage samples.
        n_trials: its budget of COMPLETE + PRUNED trials.
        derived_from: "coarse" (the search's coarse range), "manual" (``--ranges``) or
            "top-k" (narrowed from the best trials so far; see :mod:`kmlp.study.narrowing`).
        top_k_trials: numbers of the trials the range spans, best first.
        top_k_span: (min, max) log10 λ of those trials.
        capped: the span was too wide; a window centred on the best trial was used.
        extended: the best trial lay in the outer tenth of the previous range at the
            edge of all ranges searched so far, so this range reaches past that edge
            (it does not nest in the previous one; :mod:`kmlp.study.narrowing`).
    """

    stage: int
    low: float
    high: float
    n_trials: int
    derived_from: str
    top_k: int | None = None
    top_k_trials: tuple[int, ...] | None = None
    top_k_span: tuple[float, float] | None = None
    margin: float | None = None
    capped: bool | None = None
    extended: bool | None = None
    created_at: str | None = None
    completed: bool = False
    completed_at: str | None = None
    best_trial: int | None = None
    best_value: float | None = None
    best_lambda: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stored dict: the keys above that are set (lists for tuples), then ``extra``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None or (f.name == "completed" and not value):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageRecord:
        """Parse a stored stage dict; StudyError if a required key is missing or malformed."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        try:
            fields: dict[str, Any] = {
                "stage": int(data["stage"]),
                "low": float(data["low"]),
                "high": float(data["high"]),
                "n_trials": int(data["n_trials"]),
                "derived_from": str(data.get("derived_from", "unknown")),
            }
            for key in ("top_k", "best_trial"):
                if data.get(key) is not None:
                    fields[key] = int(data[key])
            for key in ("margin", "best_value", "best_lambda"):
                if data.get(key) is not None:
                    fields[key] = float(data[key])
            if data.get("top_k_trials") is not None:
                fields["top_k_trials"] = tuple(int(n) for n in data["top_k_trials"])
            if data.get("top_k_span") is not None:
                low, high = (float(x) for x in data["top_k_span"])
                fields["top_k_span"] = (low, high)
        except (KeyError, TypeError, ValueError) as exc:
            raise StudyError(f"malformed stage record {dict(data)!r}: {exc}") from None
        for key in ("created_at", "completed_at"):
            if data.get(key) is not None:
                fields[key] = str(data[key])
        for key in ("capped", "extended"):
            if data.get(key) is not None:
                fields[key] = bool(data[key])
        fields["completed"] = bool(data.get("completed", False))
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**fields, extra=extra)

    def closed(self, *, best: TrialInfo | None, at: str) -> StageRecord:
        """This record once the stage is finished, with its best trial (None: none completed)."""
        if best is None:
            return dataclasses.replace(self, completed=True, completed_at=at)
        return dataclasses.replace(
            self,
            completed=True,
            completed_at=at,
            best_trial=best.number,
            best_value=best.value,
            best_lambda=best.lam,
        )

    def how(self, previous: StageRecord | None = None) -> str:
        """How the range was chosen, as a sentence (``previous``: the stage before)."""
        if self.derived_from == COARSE:
            return f"the search's coarse range, [{self.low:g}, {self.high:g}] as configured"
        if self.derived_from == MANUAL:
            return "given by hand (--ranges)"
        if self.derived_from != TOP_K or not self.top_k_trials or self.top_k_span is None:
            return f"derived from {self.derived_from!r}"
        return _top_k_how(self, previous)


def _top_k_how(record: StageRecord, previous: StageRecord | None) -> str:
    top, (lo, hi) = record.top_k_trials or (), record.top_k_span or (0.0, 0.0)
    numbers = ", ".join(f"#{n}" for n in top)
    if record.top_k is not None and len(top) < record.top_k:
        trials = f"all {len(top)} completed trials so far ({numbers}; top-k is {record.top_k})"
    elif len(top) > 1:
        trials = f"the best {len(top)} completed trials so far ({numbers})"
    else:
        trials = f"the best completed trial so far ({numbers})"
    before = f"stage {previous.stage}" if previous is not None else "the previous stage"
    if record.extended:
        return _extended_how(record, previous, trials, before)
    if record.capped:
        text = (
            f"{trials} spread over log10 λ {lo:.3f} to {hi:.3f}, too wide to narrow; "
            f"so a window of {record.high - record.low:.3f} centred on the best, #{top[0]}"
        )
        if previous is not None:
            ratio = (record.high - record.low) / (previous.high - previous.low)
            text += f" ({ratio:.0%} of {before}'s width)"
        return text
    text = f"the span of {trials}, log10 λ {lo:.3f} to {hi:.3f}"
    if record.margin is None or previous is None:
        return text
    pad = record.margin * (previous.high - previous.low)
    text += f", widened by {record.margin:g} x {before}'s width ({pad:.3f}) on each side"
    if lo - pad < previous.low or hi + pad > previous.high:
        text += f" and kept inside {before}'s range"
    return text


def _extended_how(
    record: StageRecord, previous: StageRecord | None, trials: str, before: str
) -> str:
    top = record.top_k_trials or ()
    text = (
        f"EXTENDED: {trials}; the best, #{top[0]}, lay in the outer tenth of {before}'s "
        "range at the edge of all ranges searched so far, so the optimum may lie beyond "
        f"it: a window of {record.high - record.low:.3f} centred on #{top[0]}"
    )
    if previous is not None and record.high > previous.high:
        text += f", reaching past log10 λ {previous.high:.3f} to {record.high:.3f}"
    elif previous is not None and record.low < previous.low:
        text += f", reaching past log10 λ {previous.low:.3f} to {record.low:.3f}"
    return text


def stage_records(stored: object) -> list[StageRecord]:
    """The ``stages`` user attribute as records (an absent or non-list one: none)."""
    if not isinstance(stored, list):
        return []
    return [StageRecord.from_dict(d) for d in stored if isinstance(d, Mapping)]


def stages_attr(records: Sequence[StageRecord]) -> list[dict[str, Any]]:
    """What to store as the ``stages`` user attribute."""
    return [r.to_dict() for r in records]


# --- retrains ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetrainRecord:
    """One ``kmlp retrain`` of an exported trial: an entry of the ``retrain`` user attribute.

    Accuracies are fractions 0..1; ``train_size`` / ``val_size`` are the images it trained
    and validated on; the test set is CIFAR-10's 10000 test images. A retrain over several
    seeds (``--seeds N``) records each seed's test accuracy in ``test_accuracies`` (in
    ``seeds`` order); then ``test_accuracy``, ``val_accuracy`` and ``train_accuracy`` are
    means over the seeds and ``test_accuracy_std`` the sample standard deviation (n - 1)
    of the test accuracies (None for one seed).
    """

    trial: int
    lam: float
    cycles: int
    test_accuracy: float
    val_accuracy: float
    train_accuracy: float
    train_size: int
    val_size: int
    seconds: float
    blas_threads: int | None = None
    search_val_accuracy: float | None = None
    at: str | None = None
    seeds: tuple[int, ...] | None = None
    test_accuracies: tuple[float, ...] | None = None
    test_accuracy_std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "lambda": self.lam,
            "log10_lambda": math.log10(self.lam) if self.lam > 0 else None,
            "cycles": self.cycles,
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "train_accuracy": self.train_accuracy,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "seconds": self.seconds,
            "blas_threads": self.blas_threads,
            "search_val_accuracy": self.search_val_accuracy,
            "at": self.at,
            "seeds": list(self.seeds) if self.seeds is not None else None,
            "test_accuracies": (
                list(self.test_accuracies) if self.test_accuracies is not None else None
            ),
            "test_accuracy_mean": self.test_accuracy,
            "test_accuracy_std": self.test_accuracy_std,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainRecord | None:
        """Parse a stored entry; None if it lacks what a retrain always records."""
        try:
            return cls(
                trial=int(data["trial"]),
                lam=float(data["lambda"]),
                cycles=int(data["cycles"]),
                test_accuracy=float(data["test_accuracy"]),
                val_accuracy=float(data["val_accuracy"]),
                train_accuracy=float(data.get("train_accuracy", math.nan)),
                train_size=int(data["train_size"]),
                val_size=int(data["val_size"]),
                seconds=float(data.get("seconds", math.nan)),
                blas_threads=data.get("blas_threads"),
                search_val_accuracy=data.get("search_val_accuracy"),
                at=data.get("at"),
                seeds=_tuple_of(int, data.get("seeds")),
                test_accuracies=_tuple_of(float, data.get("test_accuracies")),
                test_accuracy_std=(
                    float(data["test_accuracy_std"])
                    if data.get("test_accuracy_std") is not None
                    else None
                ),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def n_seeds(self) -> int:
        """How many networks the test accuracy is the mean of (1 for a plain retrain)."""
        return len(self.test_accuracies) if self.test_accuracies else 1

    def test_text(self) -> str:
        """``53.90%``, or ``53.90% ± 0.30 (mean ± sample std of 3 seeds)``."""
        text = f"{100 * self.test_accuracy:.2f}%"
        if self.n_seeds > 1 and self.test_accuracy_std is not None:
            text += (
                f" ± {100 * self.test_accuracy_std:.2f} (mean ± sample std of {self.n_seeds} seeds)"
            )
        return text

    def describe(self) -> str:
        """One line, e.g. ``trial #4, lambda 4.27e-03, 3 cycles on 49000 images: test 53.90%``."""
        return (
            f"trial #{self.trial}, lambda {self.lam:.3e}, "
            f"{self.cycles} cycle{'' if self.cycles == 1 else 's'} on "
            f"{self.train_size} training images: test accuracy {self.test_text()} "
            f"(validation {100 * self.val_accuracy:.2f}% on {self.val_size})"
        )


def _tuple_of(kind: type, values: object) -> tuple | None:
    """A stored list as a tuple of ``kind`` (None if absent)."""
    if values is None:
        return None
    if not isinstance(values, list):
        raise TypeError("not a list")
    return tuple(kind(v) for v in values)


def retrain_records(stored: object) -> list[RetrainRecord]:
    """The ``retrain`` user attribute as records, oldest first (unreadable entries skipped)."""
    if not isinstance(stored, list):
        return []
    parsed = (RetrainRecord.from_dict(d) for d in stored if isinstance(d, Mapping))
    return [r for r in parsed if r is not None]
