"""``kmlp report``: the dashboard's figures and summary as files, for reading outside it.

Writes into one folder:

- ``search.png`` (matplotlib) and ``search.html`` (plotly, self-contained: plotly.js inline, so
  it opens with no network), the search figure; ``search.json``, its data;
- ``summary.md``, the same markdown as the study note, plus the list of files;
- ``best-trial-<n>-curves.png`` and ``.csv``, the best trial's training curves, when the trial
  uploaded them to the artifact store.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from kmlp.dashboards.curves import curves_plotly, read_curves_csv
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.publish import curves_filenames, read_trial_artifact
from kmlp.dashboards.search_data import search_figure_data_for
from kmlp.dashboards.search_plot import figure_title, search_matplotlib, search_plotly
from kmlp.dashboards.summary import study_summary_markdown

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def write_report(
    study: optuna.Study,
    *,
    out_dir: str | Path,
    storage_url: str | None,
    artifact_store: ArtifactStore | None,
) -> list[Path]:
    """Write the report files of ``study`` into ``out_dir`` (created); returns their paths.

    Raises:
        DashboardError: ``out_dir`` cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DashboardError(f"cannot create report folder {out}: {exc.strerror}") from exc
    data = search_figure_data_for(study)
    try:
        written = [search_matplotlib(data, out / "search.png")]
        search_json = out / "search.json"
        search_json.write_text(json.dumps(dataclasses.asdict(data), indent=1) + "\n")
        written.append(search_json)
        figures = [search_plotly(data)]
        if data.best is not None and artifact_store is not None:
            curve_files = _best_curves(study, data.best.trial_number, out, artifact_store)
            written += curve_files
            csv_files = [p for p in curve_files if p.suffix == ".csv"]
            if csv_files:
                columns = read_curves_csv(csv_files[0].read_bytes())
                title = f"training curves of the best trial ({data.best.trial_number})"
                figures.append(curves_plotly(columns, title=title))
        html = out / "search.html"
        html.write_text(_html_page(figure_title(data), figures), encoding="utf-8")
        written.append(html)
        body = study_summary_markdown(study, data, storage_url=storage_url, image_url="search.png")
        summary = out / "summary.md"
        files = "\n".join(f"- `{p.name}`" for p in [*written, summary])
        summary.write_text(f"{body}\n## Files\n\n{files}\n", encoding="utf-8")
        written.append(summary)
    except OSError as exc:
        raise DashboardError(f"cannot write report into {out}: {exc.strerror or exc}") from exc
    return written


def _best_curves(
    study: optuna.Study, trial_number: int, out: Path, artifact_store: ArtifactStore
) -> list[Path]:
    """Copy the best trial's curve artifacts (PNG, CSV) into ``out``; redraw a missing PNG."""
    written = []
    png_name, csv_name = curves_filenames(trial_number)
    raw_csv = read_trial_artifact(study, trial_number, csv_name, artifact_store=artifact_store)
    raw_png = read_trial_artifact(study, trial_number, png_name, artifact_store=artifact_store)
    if raw_csv is not None:
        path = out / f"best-{csv_name}"
        path.write_bytes(raw_csv)
        written.append(path)
    if raw_png is not None:
        path = out / f"best-{png_name}"
        path.write_bytes(raw_png)
        written.append(path)
    elif raw_csv is not None:
        from kmlp.network import plot_curves

        path = out / f"best-{png_name}"
        plot_curves(read_curves_csv(raw_csv), path)
        written.append(path)
    return written


def _html_page(title: str, figures: list) -> str:
    """One HTML page with the figures; plotly.js is inlined once (about 4.5 MB)."""
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
        for i, fig in enumerate(figures)
    ]
    body = "\n".join(f'<div class="figure">{p}</div>' for p in parts)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{_escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}.figure{margin-bottom:2em}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
