"""Training curves: the data of a history, and the report's three panels drawn from it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from kmlp.network import checks
from kmlp.network.errors import ConfigError, DataError
from kmlp.network.training import Checkpoint

_PANELS = (("loss", "loss"), ("cost", "cost"), ("accuracy", "accuracy"))


def curve_data(history: Sequence[Checkpoint]) -> dict[str, list[float]]:
    """Columns of the history: step, epoch, eta, train_/val_ loss, cost and accuracy."""
    names = [f.name for f in fields(Checkpoint)]
    rows = [asdict(point) for point in history]
    return {name: [row[name] for row in rows] for name in names}


def image_formats() -> tuple[str, ...]:
    """File suffixes (without the dot) ``plot_curves`` can write: matplotlib's list."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted(FigureCanvasBase.get_supported_filetypes()))


def check_plot_path(path: str | Path, *, name: str = "plot path") -> Path:
    """``path`` if a figure can be written there in a format its suffix names (none means
    PNG); ConfigError (naming the setting ``name``) otherwise. Call it before training."""
    suffix = Path(os.fspath(path)).suffix.lower().removeprefix(".")
    formats = image_formats()
    if suffix and suffix not in formats:
        raise ConfigError(
            f"{name} {checks.show_path(path)}: unknown image format {suffix!r} "
            f"(use one of {', '.join(formats)})"
        )
    return checks.writable_file(name, path)


def plot_curves(
    history: Sequence[Checkpoint] | dict[str, list[float]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Draw loss, cost and accuracy (train and validation) against update step to an image
    file (PNG unless the suffix names another format). DataError if it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = history if isinstance(history, dict) else curve_data(history)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (key, label) in zip(axes, _PANELS, strict=True):
        ax.plot(data["step"], data[f"train_{key}"], label="training")
        ax.plot(data["step"], data[f"val_{key}"], label="validation")
        ax.set_xlabel("update step")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:  # ValueError: a format matplotlib cannot write
        raise DataError(f"cannot write the plot {checks.show_path(path)}: {exc}") from None
    finally:
        plt.close(fig)
    return path
