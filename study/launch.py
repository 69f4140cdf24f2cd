"""Launching a study: create or resume it, run N local workers, print the stage table.

``launch`` records the configuration in the study (or checks it against the stored one
on resume), then runs workers: itself, plus ``workers - 1`` spawned processes, each
limited to ``blas_threads`` BLAS threads (default one). An interrupt
(SIGINT, SIGTERM) fails the running trials, which frees their budget slots, stops the
other workers the same way, and re-raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

import optuna

from kmlp.network import DEFAULT_BLAS_THREADS, Dataset, KmlpNetworkError, TrainConfig
from kmlp.network.threads import check_blas_threads
from kmlp.storage import HeartbeatSettings, StorageError, open_storage, storage_lock
from kmlp.storage.failures import file_identity, storage_failure
from kmlp.storage.urls import redact
from kmlp.study.config import SearchConfig
from kmlp.study.data import DataSource, data_record
from kmlp.study.errors import StudyError
from kmlp.study.objective import TrialHook
from kmlp.study.progress import Clock
from kmlp.study.record import name_metric, now
from kmlp.study.resume import check_same, existing, same_data_options
from kmlp.study.summary import study_summary
from kmlp.study.tables import format_summary
from kmlp.study.worker import StageHook, ToldHook, run_worker

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# One worker per core with one BLAS thread each: on 2 cores, 2 workers x 1 thread ran a
# launch 1.5-2.2x faster than 1 worker x 2 threads (BLAS threads gain little on batches of
# 100, and lose a lot when anything else runs). At most 4: each worker holds the data
# (about 0.75 GB in float32).
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))


def kmlp_version() -> str:
    try:
        return importlib.metadata.version("kmlp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def prepare_study(
    *,
    study_name: str,
    rdb: optuna.storages.RDBStorage,
    train_config: TrainConfig,
    search: SearchConfig,
    data: dict[str, Any],
) -> optuna.Study:
    """Create ``study_name`` with its records, or check a stored one matches (resume)."""
    if not study_name or not study_name.strip():
        raise StudyError("a study needs a non-empty name (--study NAME)")
    given = {"config": train_config.to_dict(), "data": data, "search": search.to_dict()}
    with storage_lock(rdb, name=study_name):
        study = optuna.create_study(
            study_name=study_name, storage=rdb, direction="maximize", load_if_exists=True
        )
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise StudyError(f"study {study_name!r} exists and minimises: not a kmlp study")
        attrs = study.user_attrs
        if "search" not in attrs:
            if study.get_trials(deepcopy=False):
                raise StudyError(f"study {study_name!r} exists and was not created by kmlp")
            for key, value in given.items():
                study.set_user_attr(key, value)
            study.set_user_attr("stages", [])
            study.set_user_attr("kmlp_version", kmlp_version())
            study.set_user_attr("created_at", now())
        else:
            check_same(study_name, attrs, given)
        name_metric(study)  # also on studies made before kmlp named it
    return study


def launch(
    *,
    study_name: str,
    storage_url: str | None = None,
    train_config: TrainConfig,
    search: SearchConfig,
    data_source: DataSource | None = None,
    data: Dataset | None = None,
    data_options: dict[str, Any] | None = None,
    workers: int = 1,
    blas_threads: int = DEFAULT_BLAS_THREADS,
    lockstep: int = 1,
    heartbeat: HeartbeatSettings | None = None,
    on_trial_end: TrialHook | None = None,
    on_trial_told: ToldHook | None = None,
    on_stage_end: StageHook | None = None,
    artifact_store: Any = None,
    out: TextIO | None = None,
) -> optuna.Study:
    """Run (or continue) the coarse-to-fine search ``study_name`` to its end.

    Args:
        data / data_source: the data, or a picklable recipe each worker process calls
            (needed when workers > 1).
        data_options: n_train / n_val as given (recorded; None = all).
        workers: processes on this machine (this one plus workers - 1 spawned); the CLI
            defaults to DEFAULT_WORKERS.
        blas_threads: BLAS threads per worker (default one: parallelism comes from workers).
        lockstep: trials each worker claims at once and trains together (1: alone; the
            CLI and reproductions use DEFAULT_LOCKSTEP).
        on_trial_end, on_trial_told, on_stage_end, artifact_store: see the ``study``
            package docstring; with workers > 1 they must be picklable (module-level
            functions).
    Returns the study, all stages finished. A study that is already finished (and given
    the same settings) is reported at once: no data is loaded, no worker started.
    """
    if workers < 1:
        raise StudyError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and data_source is None:
        raise StudyError("workers > 1 need a data_source each worker process can call")
    out = out or sys.stdout
    heartbeat = heartbeat or HeartbeatSettings.from_env()
    threads = check_blas_threads(blas_threads)
    rdb = open_storage(storage_url, heartbeat=heartbeat)
    options = data_options or {}
    # Before loading data (seconds) and starting workers: a wrong flag or a finished
    # study is reported at once.
    known = {"config": train_config.to_dict(), "search": search.to_dict()}
    study = existing(rdb, study_name, known)
    if study is not None and same_data_options(study.user_attrs.get("data") or {}, options):
        summary = study_summary(study)
        if summary.finished:
            print(
                f"study {study_name!r} is already finished ({summary.trials_done} trials, "
                f"{summary.stages_done} stages); nothing to run",
                file=out,
                flush=True,
            )
            print(format_summary(summary), file=out, flush=True)
            return study
    if data is None:
        assert data_source is not None
        data = data_source()
    record = data_record(data, n_train=options.get("n_train"), n_val=options.get("n_val"))
    study = prepare_study(
        study_name=study_name, rdb=rdb, train_config=train_config, search=search, data=record
    )
    worker_kwargs: dict[str, Any] = {
        "study_name": study_name,
        "storage_url": rdb.url,
        "heartbeat": heartbeat,
        "on_trial_end": on_trial_end,
        "on_trial_told": on_trial_told,
        "on_stage_end": on_stage_end,
        "artifact_store": artifact_store,
        "clock": Clock.start(study_summary(study).trials_done),
        "lockstep": lockstep,
    }
    print(
        f"{lockstep} trials per worker in lockstep"
        if lockstep > 1
        else "1 trial per worker at a time (no lockstep)",
        file=out,
        flush=True,
    )
    label = "w0" if workers > 1 else ""
    with _interrupt_on_sigterm(), _children(workers - 1, worker_kwargs, data_source, threads):
        run_worker(data=data, label=label, out=out, blas_threads=threads, **worker_kwargs)
    print(format_summary(study_summary(study)), file=out, flush=True)
    if on_stage_end is not None:
        on_stage_end(study)
    return study


@contextlib.contextmanager
def _children(
    n: int, kwargs: dict[str, Any], data_source: DataSource | None, threads: int
) -> Iterator[list[multiprocessing.process.BaseProcess]]:
    """Spawn ``n`` worker processes; on exit wait for them (or stop them on an error).

    The children ignore SIGINT from their first instruction: a Ctrl-C in the terminal
    reaches the whole process group, and a child still importing NumPy would print a
    traceback. This process stops them with SIGTERM instead, which
    ``child_main`` turns into failing the running trial.
    """
    ctx = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        with spawn_env({k: str(threads) for k in BLAS_ENV}), _sigint_ignored():
            for i in range(1, n + 1):
                p = ctx.Process(
                    target=child_main,
                    kwargs={
                        **kwargs,
                        "data_source": data_source,
                        "label": f"w{i}",
                        "threads": threads,
                    },
                    name=f"kmlp-worker-{i}",
                )
                p.start()
                procs.append(p)
        yield procs
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the child fails its running trial and exits
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        raise
    for p in procs:
        p.join()
        if p.exitcode not in (0, None):
            print(
                f"kmlp: warning: worker {p.name} exited with code {p.exitcode}",
                file=sys.stderr,
                flush=True,
            )


@contextlib.contextmanager
def spawn_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for spawned interpreters (read before NumPy loads its
    BLAS), restoring them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while processes are spawned, so that they start ignoring it (an
    ignored signal stays ignored across exec, and Python then leaves it so). Blocking it
    instead would not do: multiprocessing unblocks SIGINT when it starts its resource
    tracker. A Ctrl-C in the milliseconds of the spawning is dropped; the next one works."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def child_main(*, threads: int, **kwargs: Any) -> None:
    """Entry point of a spawned worker process: errors are one line, never a traceback."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    label = kwargs.get("label")
    identity = file_identity(kwargs.get("storage_url"))
    try:
        run_worker(blas_threads=threads, **kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except (StudyError, StorageError, KmlpNetworkError) as exc:
        print(f"kmlp: error: [{label}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:
        lost = storage_failure(exc, kwargs.get("storage_url"), identity=identity)
        if lost is None:
            print(
                f"kmlp: internal error: [{label}] {type(exc).__name__}: "
                f"{redact(str(exc), url=kwargs.get('storage_url'))}",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)
        print(f"kmlp: error: [{label}] {lost}", file=sys.stderr, flush=True)
        sys.exit(2)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while launching (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
