"""The study's user attributes: reading trials for planning, and checking a resume.

Study user attributes (names dashboards and scripts rely on):

- ``config``: ``TrainConfig.to_dict()``; its ``lam`` is a placeholder each trial replaces.
- ``data``: n_train, n_val (options, None = all), train_size, val_size, dtype,
  fingerprint (sha256 of the raw files and subset sizes), source (where it was read).
- ``search``: ``SearchConfig.to_dict()``.
- ``stages``: one dict per stage, written before the stage starts: stage, low, high
  (log10 λ), n_trials, derived_from ("coarse" | "manual" | "top-k"; top-k ones add
  top_k, top_k_trials, top_k_span, margin, capped), created_at; when finished also
  completed=True, completed_at, best_trial, best_value, best_lambda.
- ``kmlp_version``, ``created_at``; ``retrain``: list of retrain results.

Trial user attributes: stage, lambda, val_accuracy, train_accuracy, seconds (plus
epochs, steps, worker, blas_threads, pruned_at_step or diverged_at_step).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from kmlp.study.plan import TrialInfo

PARAM = "log10_lambda"
# Keys that may differ on resume: the stored lambda is a placeholder; the data may be
# read from another folder.
IGNORED_ON_RESUME = ("config.lam", "data.source", "data.n_train", "data.n_val")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def trial_info(trial: FrozenTrial) -> TrialInfo:
    stage = trial.user_attrs.get("stage")
    return TrialInfo(
        number=trial.number,
        stage=int(stage) if stage is not None else None,
        state=trial.state,
        value=trial.value if trial.values else None,
        log10_lambda=trial.params.get(PARAM),
    )


def trial_infos(study: optuna.Study) -> list[TrialInfo]:
    return [trial_info(t) for t in study.get_trials(deepcopy=False)]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and tuples compare as lists."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Descriptions "key: stored X, given Y" of the keys on which two records differ."""
    a, b = flatten(stored), flatten(given)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_ON_RESUME:
            continue
        if _normal(a.get(key)) != _normal(b.get(key)):
            out.append(f"{key}: stored {a.get(key)!r}, given {b.get(key)!r}")
    return out


def _normal(value: Any) -> Any:
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
