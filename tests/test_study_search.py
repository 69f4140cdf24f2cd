"""Search variants on synthetic data, one worker: manual ranges, TPE, pruning, divergence."""

from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from kmlp.network import TrainConfig
from kmlp.storage import HeartbeatSettings, open_storage
from kmlp.study import SearchConfig, StudyError, launch, run_worker
from kmlp.study.launch import prepare_study
from tests.helpers.studies import SyntheticSource

CONFIG = TrainConfig(hidden=(10,), n_s=10, cycles=2, checkpoints_per_cycle=5)
HEARTBEAT = HeartbeatSettings(interval=1, grace_period=3)


def run(tmp_path, search: SearchConfig, config: TrainConfig = CONFIG, name: str = "s"):
    out = io.StringIO()
    study = launch(
        study_name=name,
        storage_url=f"sqlite:///{tmp_path / 'k.db'}",
        train_config=config,
        search=search,
        data=SyntheticSource()(),
        heartbeat=HEARTBEAT,
        out=out,
    )
    return study, out.getvalue()


def test_manual_ranges_are_used_as_given(tmp_path):
    ranges = ((-5.0, -1.0), (-3.0, -1.0), (-3.0, -2.0))
    study, out = run(tmp_path, SearchConfig(ranges=ranges, trials=(3, 2, 2), prune=False))
    stages = study.user_attrs["stages"]
    assert [(s["low"], s["high"]) for s in stages] == list(ranges)
    assert [s["derived_from"] for s in stages] == ["manual"] * 3
    for t in study.trials:
        low, high = ranges[t.user_attrs["stage"]]
        assert low <= t.params["log10_lambda"] <= high
    assert "range: given by hand (--ranges)" in out and out.count("finished: best lambda") == 3


def test_tpe_sampler_stays_in_each_stage_range(tmp_path):
    search = SearchConfig(stages=2, trials=(5, 4), top_k=2, sampler="tpe", prune=False)
    study, _ = run(tmp_path, search)
    stages = study.user_attrs["stages"]
    assert len(study.trials) == 9
    for t in study.trials:
        record = stages[t.user_attrs["stage"]]
        assert record["low"] <= t.params["log10_lambda"] <= record["high"]
    assert stages[1]["derived_from"] == "top-k"
    assert stages[1]["high"] - stages[1]["low"] < 4.0


def test_pruning_stops_trials_below_the_stage_median(tmp_path):
    search = SearchConfig(
        stages=1, trials=(10,), prune=True, prune_startup=2, prune_warmup_cycles=0.5
    )
    study, out = run(tmp_path, search)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned, "nothing was pruned"
    assert len(pruned) + len(complete) == 10
    last = 2 * CONFIG.n_s * CONFIG.cycles
    for t in pruned:
        step = t.user_attrs["pruned_at_step"]
        # decision points: the first checkpoint (every 4 steps) at or after the warm-up end
        # (10) and a cycle (20) later; never the last checkpoint
        assert step in (12, 32) and step < last
        assert max(t.intermediate_values) == step
        assert t.value == t.intermediate_values[step]
    assert "pruned (pruned at step" in out


def test_no_prune_completes_every_trial(tmp_path):
    search = SearchConfig(stages=1, trials=(6,), prune=False)
    study, _ = run(tmp_path, search)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6


def test_diverging_trials_are_pruned_and_counted(tmp_path):
    config = TrainConfig(hidden=(10,), n_s=10, cycles=1, eta_min=1e3, eta_max=1e4)
    study, out = run(tmp_path, SearchConfig(stages=1, trials=(3,), prune=False), config)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3
    assert all("diverged_at_step" in t.user_attrs for t in study.trials)
    assert "diverged at step" in out


def test_worker_refuses_other_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    prepare_study(
        study_name="d",
        rdb=open_storage(url),
        train_config=CONFIG,
        search=SearchConfig(),
        data={"fingerprint": "not-this-data"},
    )
    with pytest.raises(StudyError, match="data differs"):
        run_worker(study_name="d", storage_url=url, data=SyntheticSource()())
    assert optuna.load_study(study_name="d", storage=url).trials == []


def test_worker_on_unknown_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    open_storage(url)
    with pytest.raises(StudyError, match="no study named 'x'"):
        run_worker(study_name="x", storage_url=url, data=SyntheticSource()())
