"""The search figure draws the study's summary: the data is the summary, tests check it.

The study is launched with the library (synthetic data, 2 stages); the figure's traces,
bands and best star must be the summary's points, ranges and best trial.
"""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest

from kmlp.dashboards.search_plot import (
    INTERVAL_COLOUR,
    search_matplotlib,
    search_plotly,
    stage_colour,
)
from kmlp.dashboards.summary import is_kmlp_note, summary_markdown
from kmlp.network import TrainConfig
from kmlp.study import SearchConfig, StudySummary, launch, study_summary
from kmlp.study.commands import export_command
from tests.helpers.studies import HEARTBEAT, SyntheticSource


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> StudySummary:
    folder = tmp_path_factory.mktemp("figure")
    study = launch(
        study_name="fig",
        storage_url=f"sqlite:///{folder / 'k.db'}",
        train_config=TrainConfig(hidden=(10,), n_s=10, cycles=2, checkpoints_per_cycle=4),
        search=SearchConfig(stages=2, trials=(6, 4), top_k=2, prune_startup=2),
        data=SyntheticSource()(),
        heartbeat=HEARTBEAT,
        out=io.StringIO(),
    )
    return study_summary(study)


def test_plotly_drawing_follows_the_summary(summary: StudySummary) -> None:
    fig = search_plotly(summary)
    stage_traces = [t for t in fig.data if t.name.startswith("stage")]
    assert [len(t.x) for t in stage_traces] == [len(s.points) for s in summary.stages]
    assert [t.marker.color for t in stage_traces] == [stage_colour(0), stage_colour(1)]
    for trace, stage in zip(stage_traces, summary.stages, strict=True):
        assert list(trace.x) == [p.log10_lambda for p in stage.points]
        assert list(trace.y) == pytest.approx([100 * (p.value or 0) for p in stage.points])
        assert trace.name == (
            f"stage {stage.stage} [{stage.low:.2f}, {stage.high:.2f}], "
            f"{stage.done}/{stage.budget} trials"
        )
    (best,) = [t for t in fig.data if t.name.startswith("best")]
    assert summary.best is not None
    assert best.marker.symbol == "star" and list(best.x) == [summary.best.log10_lambda]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    bands = [b for b in rects if b.fillcolor != INTERVAL_COLOUR]
    assert sorted((b.x0, b.x1) for b in bands) == sorted((s.low, s.high) for s in summary.stages)
    # the interval of λ within noise of the best: a shaded band, with the fitted curve
    interval = summary.interval
    assert interval is not None
    (band,) = [b for b in rects if b.fillcolor == INTERVAL_COLOUR]
    assert (band.x0, band.x1) == (interval.log10_low, interval.log10_high)
    assert band.x0 <= summary.best.log10_lambda <= band.x1
    (fit,) = [t for t in fig.data if t.name.startswith("GP fit")]
    assert list(fit.x) == list(interval.curve.x) and len(fit.y) == len(interval.curve.mean)
    assert f"λ {interval.low:.3g} to {interval.high:.3g}" in fit.name
    assert fig.layout.title.text == "λ search of fig: validation accuracy vs log10 λ"


def test_matplotlib_drawing_writes_a_png(summary: StudySummary, tmp_path: Path) -> None:
    path = search_matplotlib(summary, tmp_path / "search.png")
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 700
    assert pixels[..., :3].std() > 0.05  # something drawn


def test_summary_markdown_names_stages_how_best_and_export_command(summary) -> None:
    url = "postgresql://kmlp:hunter2@db.example:5432/kmlp"
    text = summary_markdown(summary, storage_url=url)
    best = summary.best
    assert best is not None
    assert f"Best: λ = {best.lam:.4g} (log10 λ = {best.log10_lambda:.3f})" in text
    assert "Best so far" not in text  # the study has ended
    interval = summary.interval
    assert interval is not None
    assert f"λ within noise of the best: {interval.low:.4g} to {interval.high:.4g}" in text
    for s in summary.stages:
        extended = " (extended)" if s.record.extended else ""
        cell = f"[{s.low:.3f}, {s.high:.3f}]{extended}"
        assert f"| {s.stage} | {cell} | {s.done}/{s.budget} |" in text
        assert f"- stage {s.stage}: {s.how}" in text
    assert "hunter2" not in text and "password is left out" in text
    cmd = export_command("my study", url)
    assert cmd == (
        "kmlp export --study 'my study' --storage postgresql://kmlp@db.example:5432/kmlp "
        "-o best.json"
    )
    assert export_command("fig", url) in text
    assert is_kmlp_note(text) and not is_kmlp_note("mine")


def test_a_study_with_no_trial_draws_empty(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'e.db'}")
    empty = study_summary(study)
    fig = search_plotly(empty)
    assert [t for t in fig.data] == [] and empty.best is None
    assert "No completed trial yet." in summary_markdown(empty, storage_url=None)
