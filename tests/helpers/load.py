"""The load and fault kit: many real kmlp workers on one study, with faults, then a count.

``run_load(...)`` starts ``kmlp launch --workers L`` plus ``extra`` ``kmlp worker``
processes (real processes, tiny trials on a real CIFAR-10 subset) on one study at a
storage URL (SQLite file, PostgreSQL, or ``grpc://`` through ``kmlp storage-proxy``),
injects faults while they run, waits for every process to end, and counts, from the
stored trials alone (``count_trials``):

- ``lost``: budget slots of a stage left without a finished (COMPLETE/PRUNED) trial;
- ``duplicated``: finished trials of one stage with the same λ beyond the first (the
  same slot run to the end twice: λ is drawn per slot index, reruns copy it);
- ``over_budget``: finished trials of a stage beyond its budget;
- ``left_running``: trials still RUNNING or WAITING;
- ``trials_per_minute``: finished trials over first start to last end.

Faults: ``kills`` SIGKILLs of ``kmlp worker`` processes, each while it runs a trial
(its trial must then be failed by another worker's reaper and rerun: ``killed_rerun``
says whether each was); ``cut`` (a ``tcp_proxy.TcpProxy`` the storage URL goes through)
cut for ``cut_seconds`` once ``cut_after`` trials are finished; ``stop`` SIGSTOPs the
``kmlp worker`` that holds the storage lock for ``stop_seconds`` (then SIGCONT).

Used by ``tests/test_load_faults.py`` (short runs) and ``benchmarks/scale.py`` (long ones).
Heartbeat 1 s, grace 3 s unless ``env`` says otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from tests.helpers.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--n-train", "500", "--n-val", "200", "--hidden", "8", "--cycles", "1", "--n-s", "20",
]  # fmt: skip
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HOST = socket.gethostname()


@dataclass
class LoadResult:
    """What a load run left behind (see the module docstring)."""

    budgets: list[int]
    finished: int = 0
    lost: int = 0
    duplicated: int = 0
    over_budget: int = 0
    left_running: int = 0
    failed: int = 0
    trials_per_minute: float = 0.0
    launch_code: int | None = None
    worker_codes: list[int | None] = field(default_factory=list)
    killed_trials: list[int] = field(default_factory=list)
    killed_rerun: list[bool] = field(default_factory=list)
    stderr: str = ""
    seconds: float = 0.0
    done_while_stopped: int | None = None  # trials the others finished during the SIGSTOP

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated, over budget or left running."""
        return not (self.lost or self.duplicated or self.over_budget or self.left_running)

    def line(self) -> str:
        return (
            f"{self.finished} trials, {self.trials_per_minute:.0f}/min; lost {self.lost}, "
            f"duplicated {self.duplicated}, over budget {self.over_budget}, "
            f"left running {self.left_running}; failed {self.failed}; "
            f"killed trials rerun {sum(self.killed_rerun)}/{len(self.killed_rerun)}"
        )


def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KMLP_STORAGE", "KMLP_ARTIFACTS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("KMLP_HEARTBEAT_INTERVAL", "1")
    env.setdefault("KMLP_HEARTBEAT_GRACE", "3")
    return env | (extra or {})


def _kmlp(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kmlp", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def _trials(storage: object, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)  # type: ignore[arg-type]
    except KeyError:
        return []


def run_load(
    *,
    url: str,
    study: str,
    data: str,
    folder: Path,
    trials: tuple[int, ...] = (12, 6),
    launch_workers: int = 2,
    extra: int = 0,
    kills: int = 0,
    cut: TcpProxy | None = None,
    cut_after: int = 3,
    cut_seconds: float = 15.0,
    stop_seconds: float = 0.0,
    seed: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    observer_url: str | None = None,
    publish: bool = False,
    lockstep: int = 1,
) -> LoadResult:
    """Run the study to its end under the faults asked for; count what it left.

    ``url`` is what the kmlp processes use; ``observer_url`` what this process reads
    through (default ``url``; give the direct database URL when ``url`` goes through
    ``cut``, so that the kit keeps watching during the outage). ``publish``: the workers
    publish curves and figures for the dashboard (artifacts in ``folder/artifacts``).
    ``lockstep``: trials each process claims at once (default 1, so that the trials
    spread over every process and each one can be caught holding a trial).
    """
    rng = np.random.default_rng(seed)
    observer: object = None
    environ = env_for(env)
    stages = len(trials)
    common = ["--study", study, "--storage", url, "--data", data, "--lockstep", str(lockstep)]
    common += ["--artifacts", str(folder / "artifacts")] if publish else ["--no-publish"]
    search = ["--stages", str(stages), "--trials", ",".join(map(str, trials)), "--top-k", "2"]
    launch = _kmlp(
        ["launch", *common, *TINY, *search, "--workers", str(launch_workers)], environ, folder
    )
    started = time.monotonic()
    deadline = started + timeout
    procs: list[subprocess.Popen[str]] = []
    result = LoadResult(budgets=list(trials))
    try:
        observer = _open_when_there(observer_url or url, launch, deadline)
        _wait(lambda: bool(_trials(observer, study)) or launch.poll() is not None, deadline)
        procs = [_kmlp(["worker", *common], environ, folder) for _ in range(extra)]
        victims = list(rng.permutation(len(procs))[: min(kills, len(procs))])
        cut_done = False
        while launch.poll() is None or any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"load run not finished after {timeout:g} s")
            current = _trials(observer, study)
            done = sum(t.state in FINISHED for t in current)
            if victims:
                victim = procs[victims[0]]
                owned = _running_of(current, victim.pid)
                if owned and victim.poll() is None and done >= 1:
                    victim.send_signal(signal.SIGKILL)
                    result.killed_trials += owned
                    victims.pop(0)
            if cut is not None and not cut_done and done >= cut_after:
                cut.cut_for(cut_seconds)
                cut_done = True
            if stop_seconds and result.done_while_stopped is None and done >= 2:
                result.done_while_stopped = _stop_lock_holder(observer, study, procs, stop_seconds)
                continue  # try again at once while nobody was caught
            time.sleep(0.1)
    finally:
        for p in [launch, *procs]:
            if p.poll() is None:
                p.kill()
        for p in [launch, *procs]:
            _, err = p.communicate()
            result.stderr += err or ""
    result.seconds = time.monotonic() - started
    result.launch_code = launch.returncode
    result.worker_codes = [p.returncode for p in procs]
    if observer is not None:
        count_trials(_trials(observer, study), result)
        observer.close()  # type: ignore[attr-defined]
    return result


def count_trials(trials: list[optuna.trial.FrozenTrial], result: LoadResult) -> None:
    """Fill ``result``'s counts from the stored trials (see the module docstring)."""
    finished = [t for t in trials if t.state in FINISHED]
    result.finished = len(finished)
    result.failed = sum(t.state == TrialState.FAIL for t in trials)
    result.left_running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    for stage, budget in enumerate(result.budgets):
        mine = [t for t in finished if t.user_attrs.get("stage") == stage]
        result.lost += max(0, budget - len(mine))
        result.over_budget += max(0, len(mine) - budget)
        same = Counter(t.params.get("log10_lambda") for t in mine)
        result.duplicated += sum(n - 1 for n in same.values())
    if finished:
        start = min(t.datetime_start for t in finished if t.datetime_start)
        end = max(t.datetime_complete for t in finished if t.datetime_complete)
        result.trials_per_minute = 60 * len(finished) / max(1e-9, (end - start).total_seconds())
    by_number = {t.number: t for t in trials}
    for number in result.killed_trials:
        # a rerun's retry_history lists every trial it reruns (a rerun of a rerun too)
        reruns = [t for t in finished if number in t.system_attrs.get("retry_history", [])]
        result.killed_rerun.append(by_number[number].state == TrialState.FAIL and len(reruns) == 1)


def _running_of(trials: list[optuna.trial.FrozenTrial], pid: int | None) -> list[int]:
    me = f"{HOST}:{pid}"
    return [
        t.number
        for t in trials
        if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == me
    ]


def _stop_lock_holder(
    storage: object, study: str, procs: list[subprocess.Popen[str]], seconds: float
) -> int | None:
    """SIGSTOP a ``kmlp worker`` that holds (or queues for) the study's lock, ``seconds``.

    Returns the trials the others finished while it was stopped, or None when no worker
    was caught with a live ticket (try again).
    """
    from kmlp.storage.locks import OWNER, lock_study_name

    def owners() -> set[str]:
        tickets = _trials(storage, lock_study_name(study))
        return {str(t.system_attrs.get(OWNER)) for t in tickets if t.state == TrialState.RUNNING}

    for p in procs:
        if p.poll() is not None or f"{HOST}:{p.pid}" not in owners():
            continue
        before = sum(t.state in FINISHED for t in _trials(storage, study))
        p.send_signal(signal.SIGSTOP)
        # Resumed by a timer, not after our reads: a process stopped inside a SQLite write
        # holds the file's lock, and a read waiting on it must not keep it stopped forever.
        resume = threading.Timer(seconds, p.send_signal, (signal.SIGCONT,))
        resume.start()
        try:
            if f"{HOST}:{p.pid}" not in owners():  # released meanwhile
                resume.cancel()
                p.send_signal(signal.SIGCONT)
                continue
            time.sleep(max(0.0, seconds - 1.0))
            after = sum(t.state in FINISHED for t in _trials(storage, study))
        finally:
            resume.join()
        return after - before
    return None


def _open_when_there(url: str, launch: subprocess.Popen[str], deadline: float) -> object:
    """The storage at ``url`` once the launch has made it (the kit only reads it)."""
    from kmlp.storage import StorageError, open_storage

    while True:
        try:
            return open_storage(url, create=False)
        except StorageError:
            if time.monotonic() > deadline or launch.poll() is not None:
                raise
            time.sleep(0.2)


def _wait(predicate: object, deadline: float) -> None:
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the study was not created in time")
        time.sleep(0.1)
