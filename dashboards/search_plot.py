"""The search figure: a study's summary drawn with plotly or matplotlib.

The data is the study's :class:`~kmlp.study.summary.StudySummary`, computed once: each
stage's range and its completed trials (``StageSummary.points``), and the study's best
trial. Both drawings show the same thing: one colour per stage, each stage's sampling range
as a shaded band with a bracket above the plot (nested brackets show the narrowing),
completed trials as dots (x: log10 λ, y: validation accuracy in %), the best trial as a star.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kmlp.study.summary import StageSummary, StudySummary

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


def figure_title(summary: StudySummary) -> str:
    """Title shared by both drawings (also what tests look for in the dashboard page)."""
    return f"λ search of {summary.name}: validation accuracy vs log10 λ"


def stage_label(stage: StageSummary) -> str:
    """Legend text, e.g. ``stage 1 [-3.20, -2.10], 12/20 trials`` (done = complete + pruned)."""
    span = f"[{stage.low:.2f}, {stage.high:.2f}]"
    return f"stage {stage.stage} {span}, {stage.done}/{stage.budget} trials"


def points(stage: StageSummary) -> tuple[list[int], list[float], list[float]]:
    """A stage's dots: trial numbers, log10 λ, validation accuracy in %."""
    return (
        [t.number for t in stage.points],
        [float(t.log10_lambda or 0.0) for t in stage.points],
        [100.0 * float(t.value or 0.0) for t in stage.points],
    )


def best_label(summary: StudySummary) -> str:
    b = summary.best
    if b is None:
        return ""
    return f"best: trial {b.number}, λ={b.lam:.3g}, {100 * (b.value or 0):.2f}%"


def search_plotly(summary: StudySummary) -> go.Figure:
    """Interactive search figure (plotly). Hover shows trial number, λ and accuracy."""
    import plotly.graph_objects as go

    fig = go.Figure()
    n = len(summary.stages)
    for s in summary.stages:
        colour = stage_colour(s.stage)
        fig.add_vrect(x0=s.low, x1=s.high, fillcolor=colour, opacity=0.08, line_width=0)
        y = 1.02 + 0.035 * (n - 1 - s.stage)
        fig.add_shape(
            type="line", xref="x", yref="paper", x0=s.low, x1=s.high, y0=y, y1=y,
            line={"color": colour, "width": 4},
        )  # fmt: skip
        numbers, xs, ys = points(s)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=stage_label(s),
                marker={"color": colour, "size": 8, "line": {"width": 0.5, "color": "white"}},
                customdata=[[t, 10.0**x] for t, x in zip(numbers, xs, strict=True)],
                hovertemplate="trial %{customdata[0]}<br>λ=%{customdata[1]:.3g}"
                "<br>log10 λ=%{x:.3f}<br>val acc=%{y:.2f}%<extra></extra>",
            )
        )
    if summary.best is not None:
        b = summary.best
        fig.add_trace(
            go.Scatter(
                x=[b.log10_lambda],
                y=[100.0 * (b.value or 0.0)],
                mode="markers",
                name=best_label(summary),
                marker={"symbol": "star", "size": 18, "color": stage_colour(b.stage or 0),
                        "line": {"width": 1.5, "color": BEST_COLOUR}},
                hoverinfo="name",
            )
        )  # fmt: skip
    fig.update_layout(
        title={"text": figure_title(summary)},
        xaxis_title="log10 λ",
        yaxis_title="validation accuracy (%)",
        legend={"orientation": "h", "yanchor": "top", "y": -0.22},
        margin={"t": 60 + 12 * n},
        template="none",  # the full default template would add ~8 KB to every stored copy
    )
    return fig


def search_matplotlib(summary: StudySummary, path: str | Path, *, dpi: int = 120) -> Path:
    """Write the search figure as a PNG at ``path`` (matplotlib); returns the path."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(8.0, 5.5), dpi=dpi)
    ax = fig.add_subplot()
    n = len(summary.stages)
    for s in summary.stages:
        colour = stage_colour(s.stage)
        ax.axvspan(s.low, s.high, color=colour, alpha=0.08, lw=0)
        y = 1.02 + 0.035 * (n - 1 - s.stage)
        ax.plot([s.low, s.high], [y, y], color=colour, lw=3,
                transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
        _, xs, ys = points(s)
        ax.scatter(
            xs,
            ys,
            s=25,
            color=colour,
            edgecolors="white",
            linewidths=0.5,
            label=stage_label(s),
            zorder=3,
        )
    if summary.best is not None:
        b = summary.best
        ax.scatter([b.log10_lambda], [100.0 * (b.value or 0.0)], marker="*", s=260,
                   color=stage_colour(b.stage or 0), edgecolors=BEST_COLOUR, linewidths=1.2,
                   zorder=4, label=best_label(summary))  # fmt: skip
    ax.set_xlabel("log10 λ")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(figure_title(summary), pad=14 + 10 * n, fontsize=10)
    ax.grid(alpha=0.3)
    if summary.stages:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    return out
