"""The two coarse-to-fine searches of a reproduction, run by ``kmlp.study.launch``.

:func:`run_search` is the one place a reproduction calls ``launch``: trials in lockstep
(the study workers' ``lockstep=K``) switch on here.
"""

from __future__ import annotations

from typing import Any, TextIO

import optuna

from kmlp.network import DEFAULT_BLAS_THREADS, Dataset
from kmlp.storage import HeartbeatSettings
from kmlp.study.launch import launch
from kmlp.study.reproduce.plan import SearchSpec
from kmlp.study.reproduce.record import load_if_exists
from kmlp.study.summary import StudySummary, study_summary
from kmlp.study.worker import DEFAULT_LOCKSTEP


def run_search(
    *,
    spec: SearchSpec,
    study_name: str,
    storage_url: str,
    data: Dataset,
    hooks: dict[str, Any],
    heartbeat: HeartbeatSettings,
    out: TextIO,
    blas_threads: int = DEFAULT_BLAS_THREADS,
) -> optuna.Study:
    """Run (or continue) the search ``spec`` as the kmlp study ``study_name``, in this
    process (``hooks``: launch's on_trial_end / on_trial_told / on_stage_end), with
    DEFAULT_LOCKSTEP trials trained together."""
    return launch(
        study_name=study_name,
        storage_url=storage_url,
        train_config=spec.config,
        search=spec.search,
        data=data,
        data_options={"n_train": spec.data.n_train, "n_val": spec.data.n_val},
        workers=1,
        blas_threads=blas_threads,
        lockstep=DEFAULT_LOCKSTEP,
        heartbeat=heartbeat,
        out=out,
        **hooks,
    )


def search_summary(storage: optuna.storages.BaseStorage, name: str) -> StudySummary | None:
    """The summary of the search study ``name``, or None if it does not exist yet."""
    study = load_if_exists(storage, name)
    return study_summary(study) if study is not None else None
