"""The search figure's data (computed once), its two drawings, and the markdown summary."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from kmlp.dashboards.search_data import search_figure_data, search_figure_data_for
from kmlp.dashboards.search_plot import search_matplotlib, search_plotly, stage_colour
from kmlp.dashboards.summary import export_command, is_kmlp_note, summary_markdown

STAGES = [
    {"low": -5.0, "high": -1.0, "n_trials": 4, "derived": "coarse"},
    {"low": -3.0, "high": -2.0, "n_trials": 3, "derived": "top-2 span"},
]
# (stage, log10 λ, validation accuracy or None, state)
ROWS = [
    (0, -4.5, 0.40, TrialState.COMPLETE),
    (0, -2.5, 0.52, TrialState.COMPLETE),
    (0, -1.5, 0.47, TrialState.COMPLETE),
    (0, -2.2, None, TrialState.PRUNED),
    (1, -2.6, 0.55, TrialState.COMPLETE),
    (1, -2.1, 0.55, TrialState.COMPLETE),  # ties with the one before: the earlier trial wins
    (1, -2.4, None, TrialState.FAIL),
]


def make_trials() -> list[optuna.trial.FrozenTrial]:
    dist = {"log10_lambda": FloatDistribution(-5.0, -1.0)}
    trials = []
    for number, (stage, x, value, state) in enumerate(ROWS):
        trial = create_trial(
            params={"log10_lambda": x},
            distributions=dist,
            value=value,
            state=state,
            user_attrs={"stage": stage, "lambda": 10.0**x},
            intermediate_values={10: 0.3} if state == TrialState.PRUNED else None,
        )
        trial.number = number
        trials.append(trial)
    return trials


def test_points_ranges_and_best_per_stage() -> None:
    data = search_figure_data(study_name="s", trials=make_trials(), stages=STAGES)
    s0, s1 = data.stages
    assert (s0.low, s0.high, s0.n_trials) == (-5.0, -1.0, 4)
    assert (s1.low, s1.high, s1.n_trials) == (-3.0, -2.0, 3)
    assert s0.trial_numbers == (0, 1, 2) and s0.log10_lambda == (-4.5, -2.5, -1.5)
    assert s0.val_accuracy == (0.40, 0.52, 0.47)
    assert (s0.n_pruned, s0.n_failed, s1.n_pruned, s1.n_failed) == (1, 0, 0, 1)
    assert s1.trial_numbers == (4, 5)
    assert s0.best_index == 1 and s1.best_index == 0
    best = data.best
    assert best is not None
    assert (best.trial_number, best.stage, best.index) == (4, 1, 0)
    assert best.lam == pytest.approx(10**-2.6) and best.val_accuracy == 0.55
    assert data.n_complete == 5


def test_missing_stage_records_and_lambda_only_trials() -> None:
    # A trial without the parameter (e.g. enqueued by hand) is placed by its lambda attr; a stage
    # not in the ``stages`` attribute still gets a series, with an unknown range.
    trial = create_trial(value=0.5, user_attrs={"stage": 2, "lambda": 1e-3})
    trial.number = 0
    data = search_figure_data(study_name="s", trials=[trial], stages=None)
    assert [s.stage for s in data.stages] == [0, 1, 2]
    assert data.stages[2].log10_lambda == pytest.approx((-3.0,))
    assert data.stages[2].low is None and data.stages[0].trial_numbers == ()
    assert data.best is not None and data.best.stage == 2
    empty = search_figure_data(study_name="s", trials=[], stages=STAGES)
    assert empty.best is None and [len(s.trial_numbers) for s in empty.stages] == [0, 0]


def test_data_from_a_stored_study(tmp_path: Path) -> None:
    study = optuna.create_study(
        study_name="stored", storage=f"sqlite:///{tmp_path / 'k.db'}", direction="maximize"
    )
    study.set_user_attr("stages", STAGES)
    study.add_trials(make_trials())
    data = search_figure_data_for(study)
    assert data.study_name == "stored"
    assert [len(s.trial_numbers) for s in data.stages] == [3, 2]
    assert data.best is not None and data.best.trial_number == study.best_trial.number


def test_plotly_drawing_follows_the_data() -> None:
    data = search_figure_data(study_name="s", trials=make_trials(), stages=STAGES)
    fig = search_plotly(data)
    stage_traces = [t for t in fig.data if t.name.startswith("stage")]
    assert [len(t.x) for t in stage_traces] == [3, 2]
    assert [t.marker.color for t in stage_traces] == [stage_colour(0), stage_colour(1)]
    assert list(stage_traces[1].y) == pytest.approx([55.0, 55.0])  # percent
    (best,) = [t for t in fig.data if t.name.startswith("best")]
    assert best.marker.symbol == "star" and list(best.x) == [-2.6]
    bands = [s for s in fig.layout.shapes if s.type == "rect"]
    assert sorted((b.x0, b.x1) for b in bands) == [(-5.0, -1.0), (-3.0, -2.0)]
    assert fig.layout.title.text == "λ search of s: validation accuracy vs log10 λ"


def test_matplotlib_drawing_writes_a_png(tmp_path: Path) -> None:
    data = search_figure_data(study_name="s", trials=make_trials(), stages=STAGES)
    path = search_matplotlib(data, tmp_path / "search.png")
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 700
    assert pixels[..., :3].std() > 0.05  # something drawn


def test_summary_markdown_names_stages_best_and_export_command() -> None:
    data = search_figure_data(study_name="my study", trials=make_trials(), stages=STAGES)
    url = "postgresql+psycopg2://kmlp:hunter2@db.example:5432/kmlp"
    text = summary_markdown(data, storage_url=url, stages=STAGES, config={"hidden": [50, 50]})
    assert "λ = 0.002512 (log10 λ = -2.600), validation accuracy **55.00 %**" in text
    assert "| 0 | [-5.000, -1.000] | 4 | 3 | 1 | 0 | 0.003162 | 52.00 % |" in text
    assert "| 1 | [-3.000, -2.000] | 3 | 2 | 0 | 1 | 0.002512 | 55.00 % |" in text
    assert "- stage 1: top-2 span" in text
    assert "hunter2" not in text
    cmd = export_command("my study", url)
    assert cmd == (
        "kmlp export --study 'my study' --storage postgresql+psycopg2://kmlp@db.example:5432/kmlp"
    )
    assert cmd in text and is_kmlp_note(text) and not is_kmlp_note("mine")
    assert math.isclose(data.best.lam, 10**-2.6)  # type: ignore[union-attr]
