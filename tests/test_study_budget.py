"""Budgets are exact with 1, 2 and 4 workers on SQLite and 2 on PostgreSQL, trials alone
or claimed 3 at a time and trained in lockstep.

The study runs through ``study.launch`` on a small synthetic dataset (each worker process
rebuilds it from a picklable recipe), so that the test exercises the concurrency, not
CIFAR-10. A hook sleeps a little after each trial so that workers overlap.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kmlp.network import TrainConfig
from kmlp.storage import HeartbeatSettings
from kmlp.study import SearchConfig, launch
from tests.helpers.studies import SyntheticSource

PG_URL = os.environ.get("KMLP_TEST_POSTGRES_URL")
CONFIG = TrainConfig(hidden=(10,), n_s=10, cycles=2, checkpoints_per_cycle=4)
SEARCH = SearchConfig(
    stages=3, trials=(6, 5, 4), top_k=3, prune=True, prune_startup=2, prune_warmup_cycles=0.5
)
HEARTBEAT = HeartbeatSettings(interval=1, grace_period=3)


@dataclass(frozen=True)
class TrialLog:
    """on_trial_end hook: appends "<trial number> <pid>" to a file, then sleeps."""

    path: str
    delay: float = 0.0

    def __call__(self, study: optuna.Study, trial: optuna.Trial, result: object) -> None:
        assert isinstance(trial, optuna.Trial)  # the live trial, so it can take artifacts
        with open(self.path, "a") as fh:
            fh.write(f"{trial.number} {os.getpid()}\n")
        time.sleep(self.delay)


@dataclass(frozen=True)
class ToldLog:
    """on_trial_told hook: appends "<trial number> <state>" of each told trial to a file."""

    path: str

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{trial.number} {trial.state.name}\n")


@dataclass(frozen=True)
class StageLog:
    """on_stage_end hook: appends the number of closed stages to a file."""

    path: str

    def __call__(self, study: optuna.Study) -> None:
        closed = sum(bool(s.get("completed")) for s in study.user_attrs["stages"])
        with open(self.path, "a") as fh:
            fh.write(f"{closed}\n")


def run_study(url: str, name: str, workers: int, tmp_path: Path, lockstep: int = 1) -> optuna.Study:
    trial_log, stage_log = tmp_path / "trials.log", tmp_path / "stages.log"
    told_log = tmp_path / "told.log"
    return launch(
        study_name=name,
        storage_url=url,
        train_config=CONFIG,
        search=SEARCH,
        data_source=SyntheticSource(),
        workers=workers,
        blas_threads=1,
        lockstep=lockstep,
        heartbeat=HEARTBEAT,
        on_trial_end=TrialLog(str(trial_log), delay=0.25 if workers > 1 else 0.0),
        on_trial_told=ToldLog(str(told_log)),
        on_stage_end=StageLog(str(stage_log)),
    )


def check_budgets(study: optuna.Study, *, workers: int, tmp_path: Path) -> None:
    trials = study.get_trials()
    stages = study.user_attrs["stages"]
    assert [s["n_trials"] for s in stages] == [6, 5, 4]
    assert all(s.get("completed") for s in stages)
    assert len(trials) == 6 + 5 + 4
    for record in stages:
        mine = [t for t in trials if t.user_attrs["stage"] == record["stage"]]
        finished = [t for t in mine if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == len(mine) == record["n_trials"]
        # every worker drew from the one stored range
        assert all(record["low"] <= t.params["log10_lambda"] <= record["high"] for t in mine)
    # ranges nest (or, extended, reach past one edge), strictly narrower, and each stage
    # started only after the previous one finished
    for before, after in itertools.pairwise(stages):
        assert after["high"] - after["low"] < before["high"] - before["low"]
        if not after["extended"]:
            assert before["low"] <= after["low"] < after["high"] <= before["high"]
        assert after["derived_from"] == "top-k"
        done = max(t.datetime_complete for t in trials if t.user_attrs["stage"] == before["stage"])
        started = min(t.datetime_start for t in trials if t.user_attrs["stage"] == after["stage"])
        assert started >= done
    # hooks: once per trial; stage hook at each closing and at the end
    lines = (tmp_path / "trials.log").read_text().split()
    numbers = sorted(int(n) for n in lines[::2])
    assert numbers == sorted(t.number for t in trials)
    pids = {t.user_attrs["worker"] for t in trials}
    if workers > 1:
        assert len(pids) > 1, "the workers never overlapped"
    # told once each, after the trial finished (so that readers see it finished)
    told = [line.split() for line in (tmp_path / "told.log").read_text().splitlines()]
    assert sorted(int(n) for n, _ in told) == sorted(t.number for t in trials)
    assert {state for _, state in told} <= {"COMPLETE", "PRUNED"}
    closings = [int(x) for x in (tmp_path / "stages.log").read_text().split()]
    assert closings[:3] == [1, 2, 3] and closings[-1] == 3
    # intermediate values: validation accuracy at checkpoint steps (update steps)
    n_s = CONFIG.n_s
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(max(t.intermediate_values) == 2 * n_s * 2 for t in complete)
    for t in trials:
        assert set(t.user_attrs) >= {"stage", "lambda", "val_accuracy", "train_accuracy", "seconds"}
        assert t.user_attrs["lambda"] == pytest.approx(10 ** t.params["log10_lambda"])


@pytest.mark.parametrize("workers, lockstep", [(1, 1), (2, 1), (4, 1), (2, 3)])
def test_budgets_exact_on_sqlite(tmp_path, workers, lockstep):
    study = run_study(f"sqlite:///{tmp_path / 'k.db'}", "budget", workers, tmp_path, lockstep)
    check_budgets(study, workers=workers, tmp_path=tmp_path)
    assert {t.user_attrs["lockstep"] for t in study.trials} <= set(range(1, lockstep + 1))


@pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")
def test_budgets_exact_on_postgres(tmp_path):
    name = f"kmlp-test-budget-{uuid.uuid4().hex[:10]}"
    try:
        study = run_study(PG_URL, name, 2, tmp_path, lockstep=3)
        check_budgets(study, workers=2, tmp_path=tmp_path)
        assert max(t.user_attrs["lockstep"] for t in study.trials) > 1
    finally:
        try:
            optuna.delete_study(study_name=name, storage=PG_URL)
        except KeyError:
            pass


def test_relaunch_of_a_finished_study_adds_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    first = run_study(url, "again", 1, tmp_path)
    numbers = [(t.number, t.state, t.value) for t in first.get_trials()]
    second = run_study(url, "again", 2, tmp_path)
    assert [(t.number, t.state, t.value) for t in second.get_trials()] == numbers


def test_random_draws_do_not_depend_on_worker_count(tmp_path):
    """The λ of the i-th trial of a stage is a function of (seed, stage, i)."""
    one = run_study(f"sqlite:///{tmp_path / 'a.db'}", "a", 1, tmp_path)
    two = run_study(f"sqlite:///{tmp_path / 'b.db'}", "b", 2, tmp_path)

    def stage0(study: optuna.Study) -> list[float]:
        return sorted(t.params["log10_lambda"] for t in study.trials if t.user_attrs["stage"] == 0)

    assert stage0(one) == stage0(two)
