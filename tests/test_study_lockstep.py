"""Trials in lockstep: the same λ values and accuracies as alone, exact budgets with a mix
of workers and group sizes, and successive halving within a group.

The first test runs ``kmlp launch`` on a small subset of the real CIFAR-10 ($KMLP_DATA);
the others run ``study.launch`` / ``run_worker`` on a synthetic dataset (the concurrency,
not the data, is under test).
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import threading
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from kmlp.network import TrainConfig
from kmlp.study import SearchConfig, launch, run_worker
from kmlp.study.interrupts import deferred_interrupts
from tests.helpers.studies import DATA, HEARTBEAT, SyntheticSource, kmlp

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
def test_lockstep_stage_equals_lone_trials(tmp_path):
    """One stage, same seed, no pruning: --lockstep 4 and --lockstep 1 draw the same λ
    values and reach the same validation accuracies (within 0.2 points)."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    runs = {}
    for k in ("4", "1"):
        done = kmlp(
            "launch", "--study", f"k{k}", "--storage", url, "--data", str(DATA),
            "--n-train", "2000", "--n-val", "500", "--hidden", "20", "--bn", "--cycles", "1",
            "--stages", "1", "--trials", "4", "--no-prune", "--seed", "3",
            "--workers", "1", "--lockstep", k, "--no-publish", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (f"{k} trials per worker in lockstep" if k == "4" else "no lockstep") in done.stdout
        study = optuna.load_study(study_name=f"k{k}", storage=url)
        trials = sorted(study.trials, key=lambda t: t.number)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        assert {t.user_attrs["lockstep"] for t in trials} == {int(k)}
        runs[k] = trials
    together, alone = runs["4"], runs["1"]
    assert [t.params for t in together] == [t.params for t in alone]
    for a, b in zip(together, alone, strict=True):
        assert abs(a.value - b.value) <= 0.002 + 1e-9, (a.number, a.value, b.value)
        assert a.intermediate_values.keys() == b.intermediate_values.keys()


CONFIG = TrainConfig(hidden=(10,), n_s=10, cycles=2, checkpoints_per_cycle=5)


def test_budgets_exact_with_a_mix_of_workers_and_group_sizes(tmp_path):
    """Two launch workers claiming 3 at a time and a third worker claiming 2 share one
    study: every stage gets exactly its budget, no group crosses a stage, and the λ
    values are those of a lone worker claiming one at a time."""
    search = SearchConfig(stages=2, trials=(5, 5), top_k=2, pruner="none")
    url = f"sqlite:///{tmp_path / 'mix.db'}"
    source = SyntheticSource()
    errors: list[BaseException] = []
    stop = threading.Event()

    def third_worker() -> None:
        try:
            while not stop.is_set():  # until launch has created the study
                try:
                    if "search" in optuna.load_study(study_name="mix", storage=url).user_attrs:
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            run_worker(
                study_name="mix",
                storage_url=url,
                data=source(),
                heartbeat=HEARTBEAT,
                lockstep=2,
                out=io.StringIO(),
                on_trial_end=_slow,
            )
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=third_worker)
    thread.start()
    try:
        study = launch(
            study_name="mix",
            storage_url=url,
            train_config=CONFIG,
            search=search,
            data_source=source,
            workers=2,
            blas_threads=1,
            lockstep=3,
            heartbeat=HEARTBEAT,
            out=io.StringIO(),
            on_trial_end=_slow,
        )
    finally:
        stop.set()
        thread.join(120)
    assert not errors, errors
    trials = study.get_trials()
    stages = study.user_attrs["stages"]
    assert [s["n_trials"] for s in stages] == [5, 5] and all(s["completed"] for s in stages)
    assert Counter(t.user_attrs["stage"] for t in trials if t.state in FINISHED) == {0: 5, 1: 5}
    assert len(trials) == 10
    for before, after in itertools.pairwise(stages):
        done = max(t.datetime_complete for t in trials if t.user_attrs["stage"] == before["stage"])
        started_at = min(
            t.datetime_start for t in trials if t.user_attrs["stage"] == after["stage"]
        )
        assert started_at >= done
    assert {t.user_attrs["lockstep"] for t in trials} <= {1, 2, 3}
    assert max(t.user_attrs["lockstep"] for t in trials) > 1

    lone = launch(
        study_name="lone",
        storage_url=f"sqlite:///{tmp_path / 'lone.db'}",
        train_config=CONFIG,
        search=search,
        data=source(),
        heartbeat=HEARTBEAT,
        out=io.StringIO(),
    )

    def stage0(s: optuna.Study) -> list[float]:
        return sorted(t.params["log10_lambda"] for t in s.trials if t.user_attrs["stage"] == 0)

    assert stage0(study) == stage0(lone)


def _slow(study: optuna.Study, trial: optuna.Trial, result: object) -> None:
    time.sleep(0.1)  # so that the workers overlap


def test_halving_stops_the_worse_half_and_says_why(tmp_path):
    search = SearchConfig(stages=1, trials=(8,), pruner="halving")
    study = launch(
        study_name="h",
        storage_url=f"sqlite:///{tmp_path / 'k.db'}",
        train_config=CONFIG,
        search=search,
        data=SyntheticSource()(),
        heartbeat=HEARTBEAT,
        lockstep=4,
        out=io.StringIO(),
    )
    trials = study.get_trials()
    assert len(trials) == 8
    decision = 2 * CONFIG.n_s  # the first cycle end (warm-up: one cycle)
    pruned_any = 0
    for group in ([t for t in trials if t.number < 4], [t for t in trials if t.number >= 4]):
        assert {t.user_attrs["lockstep"] for t in group} == {4}
        at_decision = sorted((t.intermediate_values[decision] for t in group), reverse=True)
        cut = at_decision[1]  # keep the best half (ties at the cut are all kept)
        pruned = [t for t in group if t.state == TrialState.PRUNED]
        kept = [t for t in group if t.state == TrialState.COMPLETE]
        assert sorted(t.number for t in pruned) == sorted(
            t.number for t in group if t.intermediate_values[decision] < cut
        )
        assert len(kept) >= 2
        pruned_any += len(pruned)
        for t in pruned:
            reason = t.user_attrs["pruned_by"]
            assert reason["rule"] == "halving" and reason["step"] == decision
            assert reason["group"] == 4
            assert reason["value"] == t.intermediate_values[decision]
            assert reason["value"] < reason["threshold"] == cut
            assert t.user_attrs["pruned_at_step"] == decision
            assert max(t.intermediate_values) == decision
        assert all(max(t.intermediate_values) == 2 * CONFIG.n_s * CONFIG.cycles for t in kept)
    assert pruned_any >= 2, "halving stopped (almost) nothing"


def test_an_interrupt_while_a_trial_is_created_is_delivered_after():
    """Ctrl-C inside ``study.ask()`` would leave a trial RUNNING that no one fails: the
    worker holds it until the trial is in its list of claimed trials."""
    reached = []
    # as in a worker (an earlier in-process `kmlp` command may have left SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("end of block")
        assert reached == ["end of block"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
