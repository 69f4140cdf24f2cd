"""The figures of ``kmlp reproduce``'s report, from data computed once, drawn with
matplotlib (PNG) and plotly (the HTML page).

- the four networks' training curves: loss, cost and accuracy against update steps,
  training solid and validation dashed (columns of ``network.curve_data``, read back
  from each trial's CSV artifact);
- the init study's loss curves: one panel per network (3- / 9-layer, BN / no BN), one
  colour per σ, training loss solid and validation loss dashed;
- the gradient norms per layer at initialisation: ||dJ/dW_l|| against l on a log scale,
  one colour per init, solid without BN and dashed with BN, one panel per depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from kmlp.dashboards.curves import read_curves_csv
from kmlp.dashboards.publish import curves_filenames, read_trial_artifact
from kmlp.study.reproduce.gradients import GradcheckCase
from kmlp.study.reproduce.results import RunRecord

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.artifacts._protocol import ArtifactStore

Columns = Mapping[str, Sequence[float]]
CURVE_PANELS = (("loss", "loss"), ("cost", "cost"), ("accuracy", "accuracy (%)"))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
INIT_PANELS = (
    ("3-layer-bn", "3-layer, BN"),
    ("9-layer-bn", "9-layer, BN"),
    ("3-layer", "3-layer, no BN"),
    ("9-layer", "9-layer, no BN"),
)


def run_curves(
    storage: optuna.storages.BaseStorage,
    runs: Iterable[RunRecord],
    *,
    artifact_store: ArtifactStore | None,
) -> dict[str, dict[str, list[float]]]:
    """Figure key -> the run's curve columns, from its trial's CSV artifact (runs without
    one are left out)."""
    if artifact_store is None:
        return {}
    studies: dict[str, optuna.Study] = {}
    out = {}
    for run in runs:
        if run.study not in studies:
            studies[run.study] = optuna.load_study(study_name=run.study, storage=storage)
        raw = read_trial_artifact(
            studies[run.study],
            run.trial,
            curves_filenames(run.trial)[1],
            artifact_store=artifact_store,
        )
        if raw is not None:
            out[run.figure] = read_curves_csv(raw)
    return out


def _scale(quantity: str) -> float:
    return 100.0 if quantity == "accuracy" else 1.0


def networks_png(curves: Mapping[str, Columns], titles: Mapping[str, str], path: Path) -> Path:
    """One row per network (``titles``: figure key -> title), three panels each."""
    from matplotlib.figure import Figure

    keys = [k for k in titles if k in curves]
    fig = Figure(figsize=(13, 3.0 * max(1, len(keys))), dpi=100)
    axes = fig.subplots(max(1, len(keys)), 3, squeeze=False)
    for row, key in enumerate(keys):
        c = curves[key]
        for col, (quantity, label) in enumerate(CURVE_PANELS):
            ax = axes[row][col]
            for split, style, name in (("train", "-", "training"), ("val", "--", "validation")):
                ax.plot(
                    c["step"],
                    [_scale(quantity) * v for v in c[f"{split}_{quantity}"]],
                    style,
                    label=name,
                )
            ax.set_title(f"{titles[key]}: {label}", fontsize=9)
            ax.set_xlabel("update step", fontsize=8)
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def networks_plotly(curves: Mapping[str, Columns], titles: Mapping[str, str]) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = [k for k in titles if k in curves]
    fig = make_subplots(
        rows=max(1, len(keys)),
        cols=3,
        subplot_titles=[f"{titles[k]}: {label}" for k in keys for _, label in CURVE_PANELS],
        vertical_spacing=0.08,
    )
    for row, key in enumerate(keys, start=1):
        c = curves[key]
        for col, (quantity, _) in enumerate(CURVE_PANELS, start=1):
            for split, colour, dash in (
                ("train", COLOURS[0], "solid"),
                ("val", COLOURS[1], "dash"),
            ):
                fig.add_trace(
                    go.Scatter(
                        x=list(c["step"]),
                        y=[_scale(quantity) * v for v in c[f"{split}_{quantity}"]],
                        mode="lines",
                        name="training" if split == "train" else "validation",
                        line={"color": colour, "dash": dash},
                        legendgroup=split,
                        showlegend=row == 1 and col == 1,
                    ),
                    row=row,
                    col=col,
                )
    fig.update_layout(
        title={"text": "The four networks: training curves"},
        template="none",
        height=280 * max(1, len(keys)) + 80,
    )
    return fig


def _init_series(
    curves: Mapping[str, Columns], runs: Mapping[str, RunRecord], panel: str
) -> list[tuple[str, Columns]]:
    """(σ label, columns) of the init runs of one panel (``3-layer-bn``, ...), in order."""
    return [
        (f"σ = {run.init.removeprefix('sigma=')}", curves[key])
        for key, run in runs.items()
        if key.split("/")[1] == panel and key in curves
    ]


def init_png(curves: Mapping[str, Columns], runs: Mapping[str, RunRecord], path: Path) -> Path:
    """Loss curves of the init study: 2 x 2 panels, one colour per σ."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), dpi=100)
    axes = fig.subplots(2, 2, squeeze=False)
    for i, (panel, title) in enumerate(INIT_PANELS):
        ax = axes[i // 2][i % 2]
        for j, (label, c) in enumerate(_init_series(curves, runs, panel)):
            colour = COLOURS[j % len(COLOURS)]
            ax.plot(c["step"], c["train_loss"], "-", color=colour, label=f"{label} training")
            ax.plot(c["step"], c["val_loss"], "--", color=colour, label=f"{label} validation")
        ax.set_title(title)
        ax.set_xlabel("update step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Sensitivity to initialisation: loss, weights N(0, σ²)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def init_plotly(curves: Mapping[str, Columns], runs: Mapping[str, RunRecord]) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in INIT_PANELS])
    for i, (panel, _) in enumerate(INIT_PANELS):
        for j, (label, c) in enumerate(_init_series(curves, runs, panel)):
            colour = COLOURS[j % len(COLOURS)]
            for split, dash in (("train", "solid"), ("val", "dash")):
                fig.add_trace(
                    go.Scatter(
                        x=list(c["step"]),
                        y=list(c[f"{split}_loss"]),
                        mode="lines",
                        name=f"{label} {'training' if split == 'train' else 'validation'}",
                        line={"color": colour, "dash": dash},
                        legendgroup=label,
                        showlegend=i == 0,
                    ),
                    row=i // 2 + 1,
                    col=i % 2 + 1,
                )
    fig.update_layout(
        title={"text": "Sensitivity to initialisation: loss"}, template="none", height=700
    )
    return fig


def _norm_series(cases: Mapping[tuple[int, bool], GradcheckCase], layers: int):
    for bn in (False, True):
        case = cases.get((layers, bn))
        if case is None:
            continue
        for j, (init, norms) in enumerate(case.gradient_norms.items()):
            name = "He" if init == "he" else f"σ = {init.removeprefix('sigma=')}"
            yield f"{name}{', BN' if bn else ''}", COLOURS[j % len(COLOURS)], bn, norms


def gradient_norms_png(cases: Mapping[tuple[int, bool], GradcheckCase], path: Path) -> Path:
    """||dJ/dW_l|| per layer l at initialisation: one panel per depth (3 and 9 layers)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4.5), dpi=100)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, layers in zip(axes, (3, 9), strict=True):
        for label, colour, bn, norms in _norm_series(cases, layers):
            ax.semilogy(
                range(1, len(norms) + 1),
                norms,
                "--" if bn else "-",
                marker="o",
                color=colour,
                label=label,
            )
        ax.set_title(
            f"{layers}-layer network: gradient norm per layer at initialisation", fontsize=9
        )
        ax.set_xlabel("layer l")
        ax.set_xticks(range(1, layers + 1))
        ax.set_ylabel("‖∂J/∂W_l‖ (100 training images)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    return path


def gradient_norms_plotly(cases: Mapping[tuple[int, bool], GradcheckCase]) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["3-layer network", "9-layer network"])
    for col, layers in enumerate((3, 9), start=1):
        for label, colour, bn, norms in _norm_series(cases, layers):
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(norms) + 1)),
                    y=list(norms),
                    mode="lines+markers",
                    name=label,
                    line={"color": colour, "dash": "dash" if bn else "solid"},
                    legendgroup=label,
                    showlegend=col == 2,
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(type="log", title_text="‖∂J/∂W_l‖", row=1, col=col)
        fig.update_xaxes(title_text="layer l", row=1, col=col)
    fig.update_layout(
        title={"text": "Gradient norm per layer at initialisation"}, template="none", height=450
    )
    return fig
