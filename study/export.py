"""Exporting a study's best trial, and retraining from an export file."""

from __future__ import annotations

import dataclasses
import platform
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import optuna

from kmlp.network import (
    DEFAULT_BLAS_THREADS,
    Dataset,
    KmlpNetworkError,
    TrainConfig,
    blas_limit,
    load_cifar10,
    save_model,
    train,
)
from kmlp.network.cifar_files import BATCH_ROWS
from kmlp.network.data import N_TRAIN_MAX, N_VAL_MAX
from kmlp.network.persist import check_model_path
from kmlp.network.threads import check_blas_threads
from kmlp.storage import StorageError, open_storage, portable_url, read_export, write_export
from kmlp.storage.failures import storage_failure
from kmlp.storage.urls import parse_url, redact
from kmlp.study.access import load
from kmlp.study.errors import StudyError
from kmlp.study.launch import kmlp_version
from kmlp.study.record import PARAM, RetrainRecord, best_trial, now, trial_infos

# The method's final training holds out this many of the 50000 training-batch images for
# validation and trains on the rest; the search validates on 5000 of them.
FINAL_VAL_SIZE = 1000


def export_content(study: optuna.Study, *, storage_url: str) -> dict[str, Any]:
    """What ``kmlp export`` writes: the best COMPLETE trial and how to redo it."""
    info = best_trial(trial_infos(study))
    if info is None:
        raise StudyError(f"study {study.study_name!r} has no completed trial to export yet")
    best = next(t for t in study.get_trials(deepcopy=False) if t.number == info.number)
    attrs = study.user_attrs
    log10_lambda = float(best.params[PARAM])
    lam = 10.0**log10_lambda
    config = dict(attrs.get("config", {}))
    config["lam"] = lam
    return {
        "study": study.study_name,
        "storage": portable_url(storage_url),
        "trial": best.number,
        "stage": best.user_attrs.get("stage"),
        "lambda": lam,
        "log10_lambda": log10_lambda,
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


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """Accuracies (fractions) of the retrained network and whether the study recorded it.

    ``train_size`` / ``val_size``: the images it trained and validated on (the test set
    is CIFAR-10's 10000 test images).
    """

    export: dict[str, Any]
    config: TrainConfig
    val_accuracy: float
    test_accuracy: float
    train_accuracy: float
    seconds: float
    blas_threads: int | None
    train_size: int
    val_size: int
    recorded: bool
    record_note: str

    def record(self) -> RetrainRecord:
        """The entry appended to the study's ``retrain`` user attribute."""
        return RetrainRecord(
            trial=int(self.export["trial"]),
            lam=self.config.lam,
            cycles=self.config.cycles,
            test_accuracy=self.test_accuracy,
            val_accuracy=self.val_accuracy,
            train_accuracy=self.train_accuracy,
            train_size=self.train_size,
            val_size=self.val_size,
            seconds=self.seconds,
            blas_threads=self.blas_threads,
            search_val_accuracy=self.export.get("val_accuracy"),
            at=now(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.export["study"],
            **self.record().to_dict(),
            "recorded_on_study": self.recorded,
        }


def retrain(
    *,
    export_path: str | Path,
    cycles: int | None = None,
    data_dir: str | None = None,
    data: Dataset | None = None,
    save: str | Path | None = None,
    storage_url: str | None = None,
    blas_threads: int | None = None,
    n_train: int | None = None,
    val_size: int | None = None,
    as_searched: bool = False,
    progress: bool = False,
    err: TextIO | None = None,
) -> RetrainResult:
    """Train the exported configuration with its λ; score validation and test sets.

    The data, by default the method's final step: hold out the last ``val_size`` (1000)
    of the 50000 training-batch images for validation and train on the first ``n_train``
    of the rest (default all: 49000), whatever subset the search used. ``as_searched``
    instead repeats the study's own data (its n_train, n_val and 5000-image validation
    pool), so that the retrained network repeats the trial's validation accuracy.

    Trains with ``blas_threads`` BLAS threads, by default as many as the exported trial
    used: float32 results depend on it. Prints one line to ``err`` saying what it trains
    on before it starts.

    The result is appended to the study's ``retrain`` user attribute when the study's
    storage (``storage_url``, else the export's) is reachable; otherwise a warning says
    why and the result is still returned.
    """
    err = err or sys.stderr
    if as_searched and (n_train is not None or val_size is not None):
        raise StudyError("--as-searched uses the study's own data: drop --n-train / --val-size")
    export = read_export(export_path)
    try:
        config = TrainConfig.from_dict(export["config"])
    except KmlpNetworkError as exc:
        raise StudyError(f"{export_path}: bad training configuration: {exc}") from None
    if cycles is not None:
        try:
            config = dataclasses.replace(config, cycles=cycles)
        except KmlpNetworkError as exc:
            raise StudyError(f"--cycles {cycles}: {exc}") from None
    # Everything else decidable before the data is read and a step taken: threads,
    # memory, the model path, the data's place, the storage to record on.
    threads = blas_threads or export.get("blas_threads") or DEFAULT_BLAS_THREADS
    try:
        check_blas_threads(threads)
    except KmlpNetworkError as exc:
        if blas_threads is None:  # the exported trial ran on a bigger machine
            raise StudyError(f"{export_path} asks for {exc}; pass --blas-threads N") from None
        raise
    if data is None:  # (load_cifar10 checks the sizes and the data's place before reading)
        config.check_memory(n_images=N_TRAIN_MAX + N_VAL_MAX + BATCH_ROWS)
    if save is not None:
        check_model_path(save, name="--save")
    if storage_url is not None:
        parse_url(storage_url)  # a malformed --storage is refused now, not after training
    stored = export.get("data") or {}
    if data is None:
        if as_searched:
            options = {"n_train": stored.get("n_train"), "n_val": stored.get("n_val")}
        else:
            options = {"n_train": n_train, "val_pool": val_size or FINAL_VAL_SIZE}
        data = load_cifar10(data_dir=data_dir, dtype=config.dtype, **options)
    if as_searched and stored.get("fingerprint") and stored["fingerprint"] != data.fingerprint:
        print(
            "kmlp: warning: this data differs from the study's (fingerprint mismatch)",
            file=err,
            flush=True,
        )
    print(
        f"kmlp retrain: trial #{export['trial']} of {export['study']}, lambda {config.lam:.4e}, "
        f"{config.cycles} cycle{'' if config.cycles == 1 else 's'} on {len(data.train.y)} "
        "training images "
        f"({'as searched' if as_searched else 'full training set'}; validation "
        f"{len(data.val.y)}, test {len(data.test.y)})",
        file=err,
        flush=True,
    )
    result = train(data=data, config=config, progress=progress, blas_threads=int(threads))
    with blas_limit(int(threads)):
        test_accuracy = float(result.net.accuracy(data.test.X, data.test.y))
    if save is not None:
        save_model(result.net, save, config=config)
    outcome = RetrainResult(
        export=export,
        config=config,
        val_accuracy=float(result.val_accuracy),
        test_accuracy=test_accuracy,
        train_accuracy=float(result.train_accuracy),
        seconds=float(result.seconds),
        blas_threads=result.blas_threads,
        train_size=len(data.train.y),
        val_size=len(data.val.y),
        recorded=False,
        record_note="",
    )
    recorded, note = _record(outcome, storage_url or export.get("storage"))
    if not recorded:
        print(f"kmlp: warning: result not recorded on the study: {note}", file=err, flush=True)
    return dataclasses.replace(outcome, recorded=recorded, record_note=note)


def _record(outcome: RetrainResult, storage_url: str | None) -> tuple[bool, str]:
    if not storage_url:
        return False, "the export names no storage"
    try:
        study = load(outcome.export["study"], storage=open_storage(storage_url, create=False))
        entry = outcome.record().to_dict()
        study.set_user_attr("retrain", [*study.user_attrs.get("retrain", []), entry])
    except (StorageError, StudyError) as exc:
        return False, str(exc)
    except Exception as exc:  # a lost connection must not lose the result
        lost = storage_failure(exc, storage_url)
        return False, str(lost) if lost else redact(f"{type(exc).__name__}: {exc}", url=storage_url)
    return True, ""
