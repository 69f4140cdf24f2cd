"""The hooks that put curves, the search figure and the note into a study; artifact locations.

The studies are launched with the library on synthetic data, with the hooks the CLI wires in
(``tests.helpers.studies.launch_published``); the dashboard and report tests read the same one.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import optuna
import PIL.Image
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
    PLACEHOLDER_PNG,
    SEARCH_FIGURE_ID,
    make_hooks,
    publish_search,
    stored_figure_json,
)
from kmlp.dashboards.summary import HEADING
from kmlp.study import launch, study_summary
from tests.helpers.studies import (
    DEMO_CONFIG,
    DEMO_SEARCH,
    HEARTBEAT,
    STUDY,
    SyntheticSource,
    launch_published,
    shared_study,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return shared_study(tmp_path_factory)


def note_of(study: optuna.Study) -> str:
    from optuna_dashboard import get_note

    return get_note(study)


def test_each_trial_has_curves_as_image_and_data(built: tuple[str, Path]) -> None:
    url, folder = built
    study = optuna.load_study(study_name=STUDY, storage=url)
    store = FileSystemArtifactStore(folder / "kmlp-artifacts")
    trials = study.get_trials()
    assert len(trials) == sum(DEMO_SEARCH.trials)
    for trial in trials:
        metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=study._storage)}
        png, csv = f"trial-{trial.number}-curves.png", f"trial-{trial.number}-curves.csv"
        assert set(metas) == {png, csv}
        assert metas[png].mimetype == "image/png" and metas[csv].mimetype == "text/csv"
        with store.open_reader(metas[png].artifact_id) as fh:
            image_bytes = fh.read()
        assert image_bytes[:8] == b"\x89PNG\r\n\x1a\n"
        # the drawn curves (15 x 4.2 in at 100 dpi), not the placeholder they replace
        assert image_bytes != PLACEHOLDER_PNG
        assert PIL.Image.open(io.BytesIO(image_bytes)).size == (1500, 420)
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
    summary = study_summary(study)
    search = json.loads(stored_figure_json(study, SEARCH_FIGURE_ID) or "null")
    assert search["layout"]["title"]["text"].startswith("λ search of demo")
    names = [t["name"] for t in search["data"]]
    assert names[0].startswith("stage 0 [-5.00, -1.00], 4/4") and names[-1].startswith("best:")
    curves = json.loads(stored_figure_json(study, CURVES_FIGURE_ID) or "null")
    assert f"({study.best_trial.number})" in curves["layout"]["title"]["text"]
    # one snapshot per stage end (the launch's own end adds none: nothing changed)
    snapshots = sorted(m.filename for m in get_all_artifact_meta(study))
    assert snapshots == ["search-stage0-4trials.png", "search-stage1-7trials.png"]
    note = note_of(study)
    best = study.best_trial
    assert note.startswith(f"{HEADING}: demo")
    assert f"**Best: λ = {10 ** best.params['log10_lambda']:.4g}" in note
    assert "Best so far" not in note
    assert f"kmlp export --study demo --storage {url} -o best.json" in note
    # how each range was chosen, as the study recorded it
    records = study.user_attrs["stages"]
    assert "- stage 0: the search's coarse range, [-5, -1] as configured" in note
    top = ", ".join(f"#{n}" for n in records[1]["top_k_trials"])
    assert f"- stage 1: {summary.stages[1].how}" in note and f"({top})" in note
    assert "widened by" in note or "too wide" in note


def test_figure_and_note_refresh_after_every_trial(tmp_path: Path) -> None:
    """Mid-run the page shows every finished trial, not the state of the last stage end."""
    seen: list[tuple[int, int, int, str]] = []

    def observe(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        figure = json.loads(stored_figure_json(study, SEARCH_FIGURE_ID) or "null")
        points = sum(len(t["x"]) for t in figure["data"] if t["name"].startswith("stage"))
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        seen.append((trial.number, points, done, note_of(study)))

    url = launch_published(tmp_path, name="live", after_told=observe)
    assert [n for n, *_ in seen] == list(range(sum(DEMO_SEARCH.trials)))
    for number, points, done, note in seen:
        assert points == done == number + 1  # no pruning: every trial is a point
        assert f"{done}/7 trials" in note and "Best so far" in note
    # once the last stage is closed the note no longer says "so far"
    final = note_of(optuna.load_study(study_name="live", storage=url))
    assert "**Best: λ" in final and "Best so far" not in final and ": finished." in final


def test_publishing_again_is_idempotent_and_keeps_a_hand_written_note(
    built: tuple[str, Path], tmp_path: Path
) -> None:
    url, folder = built
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    url = f"sqlite:///{copy / 'kmlp.db'}"
    study = optuna.load_study(study_name=STUDY, storage=url)
    store = artifact_store_for(url)
    before = sorted(m.filename for m in get_all_artifact_meta(study))
    figure = stored_figure_json(study, SEARCH_FIGURE_ID)
    publish_search(study, artifact_store=store)
    publish_search(study, artifact_store=store)
    assert sorted(m.filename for m in get_all_artifact_meta(study)) == before
    assert stored_figure_json(study, SEARCH_FIGURE_ID) == figure
    from optuna_dashboard import save_note

    save_note(study, "my own notes")
    publish_search(study, artifact_store=store)
    assert note_of(study) == "my own notes"


def test_hooks_never_fail_a_trial(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    missing = FileSystemArtifactStore(tmp_path / "gone")  # folder never created: writes fail
    with caplog.at_level(logging.WARNING):
        study = launch(
            study_name="s",
            storage_url=url,
            train_config=DEMO_CONFIG,
            search=DEMO_SEARCH,
            data=SyntheticSource(n_train=100, n_val=50)(),
            heartbeat=HEARTBEAT,
            out=io.StringIO(),
            **make_hooks(missing)._asdict(),
        )
    assert "could not upload curves of trial 0" in caplog.text
    assert len(study.get_trials()) == 7 and study_summary(study).finished
    # no artifacts possible, but the figure and note still go in
    assert stored_figure_json(study, SEARCH_FIGURE_ID) is not None
    assert note_of(study).startswith(HEADING)


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
