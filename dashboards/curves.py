"""Training curves as data: CSV round trip and a plotly drawing of the three panels.

The columns are those of ``network.curve_data(history)``: ``step`` (update steps), ``epoch``,
``eta`` (learning rate), ``train_loss``, ``train_cost``, ``train_accuracy``, ``val_loss``,
``val_cost``, ``val_accuracy`` (accuracies as fractions 0..1). One row per checkpoint.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

Columns = Mapping[str, Sequence[float]]
PANELS = (("loss", "loss"), ("cost", "cost (loss + λ‖W‖²)"), ("accuracy", "accuracy (%)"))


def write_curves_csv(columns: Columns, path: str | Path) -> Path:
    """Write curve columns as CSV (header = column names, one row per checkpoint)."""
    names = list(columns)
    n_rows = len(columns[names[0]]) if names else 0
    out = Path(path)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for i in range(n_rows):
            writer.writerow([repr(float(columns[name][i])) for name in names])
    return out


def read_curves_csv(data: bytes | str) -> dict[str, list[float]]:
    """Parse what :func:`write_curves_csv` wrote back to ``{column: values}``."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    names = rows[0]
    return {name: [float(row[j]) for row in rows[1:]] for j, name in enumerate(names)}


def curves_plotly(columns: Columns, *, title: str) -> go.Figure:
    """Loss, cost and accuracy (train solid, validation dashed) against update steps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=[label for _, label in PANELS])
    steps = list(columns.get("step", []))
    for col, (quantity, _) in enumerate(PANELS, start=1):
        scale = 100.0 if quantity == "accuracy" else 1.0
        for split, colour, dash in (("train", "#1f77b4", "solid"), ("val", "#ff7f0e", "dash")):
            values = columns.get(f"{split}_{quantity}")
            if values is None:
                continue
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[scale * v for v in values],
                    mode="lines",
                    name="train" if split == "train" else "validation",
                    line={"color": colour, "dash": dash},
                    legendgroup=split,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="update step", row=1, col=col)
    fig.update_layout(
        title={"text": title},
        template="none",
        margin={"t": 80},
        legend={"orientation": "h", "yanchor": "top", "y": -0.25},
    )
    return fig


def draw_curves_png(columns: Mapping[str, Sequence[float]], title: str) -> bytes:
    """The PNG bytes of a trial's three curve panels (``network.plot_curves``).

    A module-level function of plain data, so that a drawing process can run it.
    """
    import tempfile

    from kmlp.network import plot_curves

    with tempfile.TemporaryDirectory(prefix="kmlp-curves-") as tmp:
        path = Path(tmp) / "curves.png"
        plot_curves({k: list(v) for k, v in columns.items()}, path, title=title)
        return path.read_bytes()
