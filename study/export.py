"""Exporting a study's best trial: the file ``kmlp retrain`` reads (:mod:`kmlp.study.retrain`)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from kmlp.storage import open_storage, portable_url, write_export
from kmlp.study.access import load
from kmlp.study.errors import StudyError
from kmlp.study.launch import kmlp_version
from kmlp.study.record import PARAM, now
from kmlp.study.summary import study_summary


def export_content(study: optuna.Study, *, storage_url: str) -> dict[str, Any]:
    """What ``kmlp export`` writes: the best COMPLETE trial and how to redo it, with the
    interval of λ within noise of the best (``StudySummary.interval``; it contains λ)."""
    summary = study_summary(study)
    info = summary.best
    if info is None:
        raise StudyError(f"study {study.study_name!r} has no completed trial to export yet")
    best = next(t for t in study.get_trials(deepcopy=False) if t.number == info.number)
    attrs = study.user_attrs
    log10_lambda = float(best.params[PARAM])
    lam = 10.0**log10_lambda
    config = dict(attrs.get("config", {}))
    config["lam"] = lam
    interval = summary.interval
    return {
        "study": study.study_name,
        "storage": portable_url(storage_url),
        "trial": best.number,
        "stage": best.user_attrs.get("stage"),
        "lambda": lam,
        "log10_lambda": log10_lambda,
        "lambda_interval": [interval.low, interval.high] if interval else None,
        "interval": interval.to_dict() if interval else None,
        "val_accuracy": float(best.value),
        "train_accuracy": best.user_attrs.get("train_accuracy"),
        "blas_threads": best.user_attrs.get("blas_threads"),
        # trained in a lockstep group of this size: retrain matches it up to rounding
        "lockstep": best.user_attrs.get("lockstep", 1),
        "config": config,
        "data": attrs.get("data", {}),
        "search": attrs.get("search", {}),
        "stages": attrs.get("stages", []),
        "versions": {
            "kmlp": kmlp_version(),
            "optuna": optuna.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "exported_at": now(),
    }


def export_best(
    *, study_name: str, storage_url: str | None = None, path: str | Path = "best.json"
) -> dict[str, Any]:
    """Write the best trial of ``study_name`` to ``path``; return what was written."""
    rdb = open_storage(storage_url, create=False)
    study = load(study_name, storage=rdb)
    content = export_content(study, storage_url=rdb.url)
    write_export(path, content)
    return content
