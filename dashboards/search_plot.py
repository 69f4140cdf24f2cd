"""Draw :class:`~dashboards.search_data.SearchFigureData` with plotly or matplotlib.

Both drawings show the same thing: one colour per stage, each stage's sampling range as a shaded
band with a bracket above the plot (nested brackets show the narrowing), completed trials as
dots (x: log10 λ, y: validation accuracy in %), and the best trial as a star.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kmlp.dashboards.search_data import SearchFigureData, StageSeries

if TYPE_CHECKING:
    import plotly.graph_objects as go

# matplotlib's tab10, so that both libraries colour stages alike.
STAGE_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BEST_COLOUR = "#000000"


def stage_colour(stage: int) -> str:
    """Hex colour of a stage (cycles after ten stages)."""
    return STAGE_COLOURS[stage % len(STAGE_COLOURS)]


def figure_title(data: SearchFigureData) -> str:
    """Title shared by both drawings (also what tests look for in the dashboard page)."""
    return f"λ search of {data.study_name}: validation accuracy vs log10 λ"


def stage_label(series: StageSeries) -> str:
    """Legend text, e.g. ``stage 1 [-3.20, -2.10], 12/20 trials``."""
    text = f"stage {series.stage}"
    if series.low is not None and series.high is not None:
        text += f" [{series.low:.2f}, {series.high:.2f}]"
    done = len(series.trial_numbers)
    text += f", {done}/{series.n_trials} trials" if series.n_trials else f", {done} trials"
    return text


def search_plotly(data: SearchFigureData) -> go.Figure:
    """Interactive search figure (plotly). Hover shows trial number, λ and accuracy."""
    import plotly.graph_objects as go

    fig = go.Figure()
    n = len(data.stages)
    for s in data.stages:
        colour = stage_colour(s.stage)
        if s.low is not None and s.high is not None:
            fig.add_vrect(x0=s.low, x1=s.high, fillcolor=colour, opacity=0.08, line_width=0)
            y = 1.02 + 0.035 * (n - 1 - s.stage)
            fig.add_shape(
                type="line", xref="x", yref="paper", x0=s.low, x1=s.high, y0=y, y1=y,
                line={"color": colour, "width": 4},
            )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=list(s.log10_lambda),
                y=[100.0 * v for v in s.val_accuracy],
                mode="markers",
                name=stage_label(s),
                marker={"color": colour, "size": 8, "line": {"width": 0.5, "color": "white"}},
                customdata=[
                    [t, 10.0**x] for t, x in zip(s.trial_numbers, s.log10_lambda, strict=True)
                ],
                hovertemplate="trial %{customdata[0]}<br>λ=%{customdata[1]:.3g}"
                "<br>log10 λ=%{x:.3f}<br>val acc=%{y:.2f}%<extra></extra>",
            )
        )
    if data.best is not None:
        b = data.best
        fig.add_trace(
            go.Scatter(
                x=[b.log10_lambda],
                y=[100.0 * b.val_accuracy],
                mode="markers",
                name=f"best: trial {b.trial_number}, λ={b.lam:.3g}, {100 * b.val_accuracy:.2f}%",
                marker={"symbol": "star", "size": 18, "color": stage_colour(b.stage),
                        "line": {"width": 1.5, "color": BEST_COLOUR}},
                hoverinfo="name",
            )
        )  # fmt: skip
    fig.update_layout(
        title={"text": figure_title(data)},
        xaxis_title="log10 λ",
        yaxis_title="validation accuracy (%)",
        legend={"orientation": "h", "yanchor": "top", "y": -0.22},
        margin={"t": 60 + 12 * n},
        template="none",  # the full default template would add ~8 KB to every stored copy
    )
    return fig


def search_matplotlib(data: SearchFigureData, path: str | Path, *, dpi: int = 120) -> Path:
    """Write the search figure as a PNG at ``path`` (matplotlib); returns the path."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(8.0, 5.5), dpi=dpi)
    ax = fig.add_subplot()
    n = len(data.stages)
    for s in data.stages:
        colour = stage_colour(s.stage)
        if s.low is not None and s.high is not None:
            ax.axvspan(s.low, s.high, color=colour, alpha=0.08, lw=0)
            y = 1.02 + 0.035 * (n - 1 - s.stage)
            ax.plot([s.low, s.high], [y, y], color=colour, lw=3,
                    transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
        ax.scatter(
            s.log10_lambda,
            [100.0 * v for v in s.val_accuracy],
            s=25,
            color=colour,
            edgecolors="white",
            linewidths=0.5,
            label=stage_label(s),
            zorder=3,
        )
    if data.best is not None:
        b = data.best
        ax.scatter([b.log10_lambda], [100.0 * b.val_accuracy], marker="*", s=260,
                   color=stage_colour(b.stage), edgecolors=BEST_COLOUR, linewidths=1.2, zorder=4,
                   label=f"best: trial {b.trial_number}, λ={b.lam:.3g}, "
                   f"{100 * b.val_accuracy:.2f}%")  # fmt: skip
    ax.set_xlabel("log10 λ")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(figure_title(data), pad=14 + 10 * n, fontsize=10)
    ax.grid(alpha=0.3)
    if data.stages:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out
