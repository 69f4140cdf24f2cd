"""``kmlp report``: a study's result as files to read and share outside the dashboard.

Writes into one folder, everything drawn from the study's summary (``kmlp.study.summary``):

- ``report.html``: one self-contained page (plotly.js inline, so it opens with no network):
  title, best λ and the λ values within noise of it, retrained test accuracy, the stage
  table with how each range was chosen,
  the search figure and the best trial's training curves;
- ``summary.md``, the same markdown as the study note, plus the list of files;
  ``summary.json``, the summary as data (what ``kmlp show --json`` prints);
- ``search.png`` (matplotlib), the search figure;
- ``best-trial-<n>-curves.png`` and ``.csv``, the best trial's training curves, when the trial
  uploaded them to the artifact store.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from kmlp.dashboards.curves import curves_plotly, read_curves_csv
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.publish import best_curves_title, curves_filenames, read_trial_artifact
from kmlp.dashboards.search_plot import search_matplotlib, search_plotly
from kmlp.dashboards.summary import (
    best_sentence,
    interval_sentence,
    progress_sentence,
    retrain_sentence,
    stage_table_rows,
    summary_markdown,
)
from kmlp.study.commands import export_command
from kmlp.study.summary import StudySummary, study_summary

if TYPE_CHECKING:
    import plotly.graph_objects as go
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
    summary = study_summary(study)
    try:
        written = [search_matplotlib(summary, out / "search.png")]
        data = out / "summary.json"
        data.write_text(json.dumps(summary.to_dict(), indent=1) + "\n", encoding="utf-8")
        written.append(data)
        figures = [search_plotly(summary)]
        if summary.best is not None and artifact_store is not None:
            curve_files = _best_curves(study, summary.best.number, out, artifact_store)
            written += curve_files
            csv_files = [p for p in curve_files if p.suffix == ".csv"]
            if csv_files:
                columns = read_curves_csv(csv_files[0].read_bytes())
                title = best_curves_title(summary.best.number)
                figures.append(curves_plotly(columns, title=title))
        page = out / "report.html"
        page.write_text(report_html(summary, figures, storage_url=storage_url), encoding="utf-8")
        written.append(page)
        body = summary_markdown(
            summary, storage_url=storage_url, image_url="search.png", note=False
        )
        md = out / "summary.md"
        files = "\n".join(f"- `{p.name}`" for p in [*written, md])
        md.write_text(f"{body}\n## Files\n\n{files}\n", encoding="utf-8")
        written.append(md)
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


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em}
.result{font-size:1.15em;margin:.3em 0}.muted{color:#666}
table{border-collapse:collapse;margin:1em 0}th,td{padding:.3em .8em;border-bottom:1px solid #ddd}
td{text-align:right;white-space:nowrap}td.left,th.left{text-align:left}
td.how{text-align:left;white-space:normal}code,pre{background:#f5f5f5}
pre{padding:.6em;white-space:pre-wrap;word-break:break-all}.figure{margin:1em 0 2em}
"""


def report_html(summary: StudySummary, figures: list[go.Figure], *, storage_url: str | None) -> str:
    """One self-contained HTML page of the summary and ``figures`` (plotly.js inlined once)."""
    e = html.escape
    title = f"kmlp λ search: {summary.name}"
    parts = [f"<h1>{e(title)}</h1>", f'<p class="result"><b>{e(best_sentence(summary))}</b></p>']
    interval = interval_sentence(summary)
    if interval:
        parts.append(f'<p class="result">{e(interval)}</p>')
    retrained = retrain_sentence(summary)
    parts.append(
        f'<p class="result"><b>{e(retrained)}</b></p>'
        if retrained
        else '<p class="muted">Not retrained yet: <code>kmlp export</code>, then '
        "<code>kmlp retrain best.json</code> records its test accuracy here.</p>"
    )
    parts.append(f'<p class="muted">{e(progress_sentence(summary))}</p>')
    rows = stage_table_rows(summary)
    head = "".join(
        f"<th{' class=left' if i == 1 else ''}>{e(c)}</th>" for i, c in enumerate(rows[0])
    )
    head += '<th class="left">how the range was chosen</th>'
    body = ""
    for stage, row in zip(summary.stages, rows[1:], strict=True):
        cells = "".join(
            f"<td{' class=left' if i == 1 else ''}>{e(c)}</td>" for i, c in enumerate(row)
        )
        body += f'<tr>{cells}<td class="how">{e(stage.how)}</td></tr>'
    parts += ["<h2>Stages</h2>", f"<table><tr>{head}</tr>{body}</table>"]
    parts.append("<h2>Search and the best trial</h2>")
    for i, fig in enumerate(figures):
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
        parts.append(f'<div class="figure">{div}</div>')
    if summary.config:
        config = json.dumps(dict(summary.config), sort_keys=True, default=str)
        parts += ["<h2>Training configuration</h2>", f"<pre>{e(config)}</pre>"]
    parts += [
        "<h2>Export the best trial</h2>",
        f"<pre>{e(export_command(summary.name, storage_url))}</pre>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + f"\n<p class='muted'>Written by kmlp {e(summary.kmlp_version or '')}.</p>"
        + "\n</body></html>\n"
    )
