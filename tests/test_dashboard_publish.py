"""The hooks that put curves, the search figure and the note into a study; artifact locations.

``build_study`` makes a small real study (SQLite file, real training on synthetic data, the
hooks called as the study package calls them); the dashboard and report tests reuse it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta

from kmlp.dashboards.artifacts import (
    artifact_store_for,
    artifacts_location,
    default_artifacts_location,
)
from kmlp.dashboards.curves import read_curves_csv
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.hooks import publisher_for
from kmlp.dashboards.publish import (
    CURVES_FIGURE_ID,
    SEARCH_FIGURE_ID,
    make_hooks,
    publish_search,
    stored_figure_json,
)
from kmlp.dashboards.summary import HEADING
from kmlp.network import TrainConfig, curve_data, train
from kmlp.network.data import Dataset, Split

STUDY = "demo"
STAGES = (
    {"low": -5.0, "high": 0.0, "n_trials": 4, "derived": "coarse range"},
    {"low": -3.0, "high": -1.0, "n_trials": 3, "derived": "span of the top 2, widened"},
)


def synthetic_data(*, seed: int = 0, n_train: int = 300, n_val: int = 200, d: int = 32) -> Dataset:
    """Ten Gaussian classes in ``d`` dimensions (float32), a stand-in for CIFAR-10."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))

    def split(n: int) -> Split:
        y = rng.integers(0, 10, size=n)
        x = (centres[y] + 1.2 * rng.normal(size=(n, d))).astype(np.float32)
        return Split(X=x, y=y.astype(np.int64))

    return Dataset(
        train=split(n_train), val=split(n_val), test=split(n_val), fingerprint="synth", source="-"
    )


def build_study(folder: Path, *, name: str = STUDY) -> str:
    """A 2-stage study in ``folder/kmlp.db``, trained and published like ``kmlp launch``.

    Returns the storage URL; artifacts go to the default ``folder/kmlp-artifacts``.
    """
    url = f"sqlite:///{folder / 'kmlp.db'}"
    study = optuna.create_study(
        study_name=name,
        storage=url,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    config = TrainConfig(hidden=(16,), cycles=1, n_s=15, batch_size=50)
    study.set_user_attr("config", config.to_dict())
    study.set_user_attr("stages", [dict(s) for s in STAGES])
    # As a worker process receives them: pickled (multiprocessing spawn).
    publisher = pickle.loads(pickle.dumps(publisher_for(url)))
    on_trial_end, on_stage_end = publisher.on_trial_end, publisher.on_stage_end
    data = synthetic_data()
    for stage, info in enumerate(STAGES):
        dist = optuna.distributions.FloatDistribution(info["low"], info["high"])
        for _ in range(info["n_trials"]):
            trial = study.ask({"log10_lambda": dist})
            lam = 10.0 ** trial.params["log10_lambda"]

            def report(point, trial=trial) -> None:
                trial.report(point.val_accuracy, point.step)

            result = train(data=data, config=dataclasses.replace(config, lam=lam), callback=report)
            attrs = {"stage": stage, "lambda": lam, "val_accuracy": result.val_accuracy}
            attrs |= {"train_accuracy": result.train_accuracy, "seconds": result.seconds}
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            on_trial_end(study, trial, result)
            study.tell(trial, result.val_accuracy)
        on_stage_end(study)
    return url


_SHARED: dict[str, tuple[str, Path]] = {}


def shared_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(storage URL, folder) of one :func:`build_study` per test session; tests only read it."""
    if "study" not in _SHARED:
        folder = tmp_path_factory.mktemp("shared-study")
        _SHARED["study"] = (build_study(folder), folder)
    return _SHARED["study"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return shared_study(tmp_path_factory)


def test_each_trial_has_curves_as_image_and_data(built: tuple[str, Path]) -> None:
    url, folder = built
    study = optuna.load_study(study_name=STUDY, storage=url)
    store = FileSystemArtifactStore(folder / "kmlp-artifacts")
    trials = study.get_trials()
    assert len(trials) == sum(s["n_trials"] for s in STAGES)
    for trial in trials:
        metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=study._storage)}
        png, csv = f"trial-{trial.number}-curves.png", f"trial-{trial.number}-curves.csv"
        assert set(metas) == {png, csv}
        assert metas[png].mimetype == "image/png" and metas[csv].mimetype == "text/csv"
        with store.open_reader(metas[png].artifact_id) as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        with store.open_reader(metas[csv].artifact_id) as fh:
            columns = read_curves_csv(fh.read())
        # The data artifact holds what the intermediate values hold, and more columns.
        steps = [int(s) for s in columns["step"]]
        assert steps == sorted(trial.intermediate_values)
        assert columns["val_accuracy"] == pytest.approx(
            [trial.intermediate_values[s] for s in steps]
        )
        assert {"train_loss", "val_loss", "train_cost", "val_cost", "train_accuracy"} <= set(
            columns
        )
        # The trial's note shows the image at full width, served by the dashboard.
        from optuna_dashboard import get_note

        image = f"(/artifacts/{study._study_id}/{trial._trial_id}/{metas[png].artifact_id})"
        note = get_note(optuna.trial.Trial(study, trial._trial_id))
        assert image in note and f"stage {trial.user_attrs['stage']} · λ = " in note


def test_study_carries_search_figure_curves_snapshots_and_note(built: tuple[str, Path]) -> None:
    url, _ = built
    study = optuna.load_study(study_name=STUDY, storage=url)
    search = json.loads(stored_figure_json(study, SEARCH_FIGURE_ID) or "null")
    assert search["layout"]["title"]["text"].startswith("λ search of demo")
    names = [t["name"] for t in search["data"]]
    assert names[0].startswith("stage 0 [-5.00, 0.00], 4/4") and names[-1].startswith("best:")
    curves = json.loads(stored_figure_json(study, CURVES_FIGURE_ID) or "null")
    assert str(study.best_trial.number) in curves["layout"]["title"]["text"]
    snapshots = sorted(m.filename for m in get_all_artifact_meta(study))
    assert snapshots == ["search-stage0-4trials.png", "search-stage1-7trials.png"]
    from optuna_dashboard import get_note

    note = get_note(study)
    best = study.best_trial
    assert note.startswith(f"{HEADING}: demo")
    assert f"λ = {10 ** best.params['log10_lambda']:.4g}" in note
    assert f"kmlp export --study demo --storage {url} -o best.json" in note
    assert "span of the top 2, widened" in note
    snapshot = next(m for m in get_all_artifact_meta(study) if "stage1" in m.filename)
    assert f"![search figure](/artifacts/{study._study_id}/{snapshot.artifact_id})" in note


def test_publishing_again_is_idempotent_and_keeps_a_hand_written_note(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    dist = {"log10_lambda": optuna.distributions.FloatDistribution(-4, -1)}
    for x, v in ((-3.0, 0.4), (-2.0, 0.5)):
        study.add_trial(
            optuna.trial.create_trial(params={"log10_lambda": x}, distributions=dist, value=v)
        )
    store = artifact_store_for(url)
    publish_search(study, artifact_store=store)
    publish_search(study, artifact_store=store)
    assert [m.filename for m in get_all_artifact_meta(study)] == ["search-stage0-2trials.png"]
    first = json.loads(stored_figure_json(study, SEARCH_FIGURE_ID) or "null")
    assert first["layout"]["title"]["text"] == "λ search of s: validation accuracy vs log10 λ"
    from optuna_dashboard import get_note, save_note

    save_note(study, "my own notes")
    publish_search(study, artifact_store=store)
    assert get_note(study) == "my own notes"


def test_hooks_never_fail_a_trial(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    missing = FileSystemArtifactStore(tmp_path / "gone")  # folder never created: writes fail
    on_trial_end, on_stage_end = make_hooks(missing)
    trial = study.ask({"log10_lambda": optuna.distributions.FloatDistribution(-4, -1)})
    config = TrainConfig(hidden=(8,), cycles=1, n_s=5, batch_size=50)
    result = train(data=synthetic_data(n_train=100, n_val=50), config=config)
    with caplog.at_level(logging.WARNING):
        on_trial_end(study, trial, result)
    assert "could not upload curves of trial 0" in caplog.text
    study.tell(trial, result.val_accuracy)
    assert len(curve_data(result.history)["step"]) == len(result.history)
    on_stage_end(study)  # no artifacts possible, but the figure and note still go in
    assert stored_figure_json(study, SEARCH_FIGURE_ID) is not None


def test_artifact_location_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMLP_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "runs" / "exp1.db"
    assert default_artifacts_location(f"sqlite:///{db}") == tmp_path / "runs" / "exp1-artifacts"
    assert default_artifacts_location("sqlite:///kmlp.db") == tmp_path / "kmlp-artifacts"
    pg = "postgresql+psycopg2://u:secret@db.example/kmlp"
    assert default_artifacts_location(pg) == tmp_path / "kmlp-artifacts"
    monkeypatch.setenv("KMLP_ARTIFACTS", str(tmp_path / "shared"))
    assert artifacts_location(pg) == str(tmp_path / "shared")
    assert artifacts_location(pg, "flagged") == str(tmp_path / "flagged")  # flag beats env
    store = artifact_store_for(pg)
    assert isinstance(store, FileSystemArtifactStore) and (tmp_path / "shared").is_dir()
    with pytest.raises(DashboardError, match="unsupported artifact location"):
        artifact_store_for(pg, "ftp://host/x")
    with pytest.raises(DashboardError, match="no bucket"):
        artifact_store_for(pg, "s3:///prefix")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DashboardError, match="cannot create artifact folder"):
        publisher_for(pg, str(tmp_path / "a-file" / "sub"))


def test_s3_location_needs_boto3_or_gives_a_prefixed_store(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(DashboardError, match="needs boto3"):
            artifact_store_for("sqlite:///k.db", "s3://bucket/kmlp/runs")
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from kmlp.dashboards.artifacts import PrefixedArtifactStore

    store = artifact_store_for("sqlite:///k.db", "s3://bucket/kmlp/runs")
    assert isinstance(store, PrefixedArtifactStore)
