"""Interrupted launches resume exactly; a worker killed mid-trial has its slot run again.

These run ``kmlp launch`` as a subprocess on a small subset of the real CIFAR-10
($KMLP_DATA; skipped without it), with a 1 s heartbeat and a 3 s grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

DATA = os.environ.get("KMLP_DATA")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def launch_args(
    url: str, name: str, *, workers: int, trials: str = "6,3", n_s: int = 100
) -> list[str]:
    return [
        sys.executable, "-m", "kmlp", "launch",
        "--study", name, "--storage", url, "--data", str(DATA),
        "--n-train", "1000", "--n-val", "300", "--hidden", "10",
        "--cycles", "1", "--n-s", str(n_s),
        "--stages", "2", "--trials", trials, "--top-k", "3",
        "--no-publish", "--workers", str(workers),
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KMLP_HEARTBEAT_INTERVAL": "1",
        "KMLP_HEARTBEAT_GRACE": "3",
    }


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials()
    except (KeyError, Exception):  # not created yet, or the database is busy being created
        return []


def wait_for(predicate, *, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"launch ended early (code {proc.returncode}): {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the study")


def check_budgets(trials: list[optuna.trial.FrozenTrial], budgets: list[int]) -> None:
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counts = Counter(t.user_attrs["stage"] for t in trials if t.state in FINISHED)
    assert [counts[s] for s in range(len(budgets))] == budgets


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 2), (signal.SIGINT, 1)])
def test_resume_after_interrupt_keeps_trials_and_budget(tmp_path, sig, workers):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen(
        launch_args(url, "r", workers=workers),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def mid_stage() -> bool:
        trials = trials_of(url, "r")
        finished = sum(t.state in FINISHED for t in trials)
        return finished >= 3 and any(t.state == TrialState.RUNNING for t in trials)

    wait_for(mid_stage, timeout=120, proc=proc)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # it says how to continue: the same command, copyable
    resume = f"To continue, rerun kmlp launch --study r --storage {url} --data {DATA} "
    assert resume in err, err
    before = trials_of(url, "r")
    # the interrupted trials were failed at once, nothing is left running
    assert not [t for t in before if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    kept = {t.number: (t.state, t.value, t.params) for t in before if t.state in FINISHED}
    assert len(kept) >= 3

    done = subprocess.run(
        launch_args(url, "r", workers=1), cwd=tmp_path, env=env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = trials_of(url, "r")
    assert {t.number: (t.state, t.value, t.params) for t in after if t.number in kept} == kept
    check_budgets(after, [6, 3])
    assert "stage" in done.stdout and "best:" in done.stdout


def test_sigkilled_worker_slots_are_run_again(tmp_path):
    """A worker training a lockstep group is SIGKILLed: every trial it claimed is failed
    (stale heartbeat) and run again once, and the budgets stay exact."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen(
        # 4 trials per group: the in-process worker claims 0-3, and trials long enough
        # (about 1 s) that the spawned worker, slower to start, surely gets a group too
        [*launch_args(url, "k", workers=2, trials="10,2", n_s=500), "--lockstep", "4"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim: dict[str, int] = {}

    def child_training() -> bool:
        for t in trials_of(url, "k"):
            pid = int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            # training has begun (a checkpoint reported): the group is fully claimed
            if t.state == TrialState.RUNNING and pid not in (0, proc.pid):
                if t.intermediate_values:
                    victim.update(pid=pid)
                    return True
        return False

    wait_for(child_training, timeout=120, proc=proc)
    os.kill(victim["pid"], signal.SIGKILL)
    claimed = [
        t.number
        for t in trials_of(url, "k")
        if t.user_attrs.get("worker", "").endswith(f":{victim['pid']}")
        and t.state == TrialState.RUNNING
    ]
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = trials_of(url, "k")
    assert len(claimed) >= 2, "the killed worker was not training a group"
    for number in claimed:
        killed = next(t for t in trials if t.number == number)
        assert killed.state == TrialState.FAIL
        assert killed.user_attrs["lockstep"] == len(claimed)
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1 and retries[0].state in FINISHED
        assert retries[0].params == killed.params
        assert retries[0].user_attrs["stage"] == killed.user_attrs["stage"]
    check_budgets(trials, [10, 2])
    assert "exited with code -9" in err


def test_cli_worker_joins_a_running_launch(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen(
        # pairs for the launch, one at a time for the joining worker; trials long enough
        # (n_s 300) that the worker, a few seconds to start, joins while they run
        [*launch_args(url, "j", workers=1, trials="6,3", n_s=300), "--lockstep", "2"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: len(trials_of(url, "j")) >= 1, timeout=120, proc=proc)
    worker = subprocess.run(
        [sys.executable, "-m", "kmlp", "worker", "--study", "j", "--storage", url,
         "--data", str(DATA), "--no-publish", "--blas-threads", "1", "--lockstep", "1"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = trials_of(url, "j")
    check_budgets(trials, [6, 3])
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert worker.stdout.strip().splitlines()[-1].startswith("worker done:")
