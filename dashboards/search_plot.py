"""The search figure: a study's summary drawn with plotly or matplotlib.

The data is the study's :class:`~kmlp.study.summary.StudySummary`, computed once: each
stage's range and its completed trials (``StageSummary.points``), and the study's best
trial. Both drawings show the same thing: one colour per stage, each stage's sampling range
as a shaded band with a bracket above the plot (nested brackets show the narrowing),
completed trials as dots (x: log10 λ, y: validation accuracy in %), the best trial as a star,
and the interval of λ within noise of the best (``StudySummary.interval``) as a grey shaded
band with the fitted curve through it (a dashed line).
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
INTERVAL_COLOUR = "#555555"


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


def interval_label(summary: StudySummary) -> str:
    """Legend text of the band, e.g. ``within noise of the best: λ 2.1e-03 to 1.2e-02``."""
    i = summary.interval
    return "" if i is None else f"within noise of the best: λ {i.low:.3g} to {i.high:.3g}"


def interval_band(summary: StudySummary) -> tuple[float, float] | None:
    """(low, high) log10 λ of the band, or None: the data the band is drawn from."""
    i = summary.interval
    return None if i is None else (i.log10_low, i.log10_high)


def fitted_curve(summary: StudySummary) -> tuple[list[float], list[float]]:
    """The fitted curve: log10 λ and accuracy in % (empty without an interval)."""
    i = summary.interval
    if i is None:
        return [], []
    return list(i.curve.x), [100.0 * m for m in i.curve.mean]


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
    band = interval_band(summary)
    if band is not None:
        fig.add_vrect(x0=band[0], x1=band[1], fillcolor=INTERVAL_COLOUR, opacity=0.18,
                      line={"color": INTERVAL_COLOUR, "width": 1, "dash": "dot"})  # fmt: skip
        xs, ys = fitted_curve(summary)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"GP fit; band: {interval_label(summary)}",
                line={"color": INTERVAL_COLOUR, "dash": "dash", "width": 1.5},
                hoverinfo="skip",
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
    band = interval_band(summary)
    if band is not None:
        ax.axvspan(band[0], band[1], facecolor=INTERVAL_COLOUR, alpha=0.18, hatch="//",
                   edgecolor=INTERVAL_COLOUR, lw=0, label=interval_label(summary))  # fmt: skip
        xs, ys = fitted_curve(summary)
        ax.plot(xs, ys, color=INTERVAL_COLOUR, ls="--", lw=1.2, label="Gaussian-process fit")
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
