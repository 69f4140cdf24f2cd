"""``kmlp reproduce``'s report: the published figures beside kmlp's, as files to share.

Writes into one folder, everything drawn from the reproduction's measurements and their
comparison (``kmlp.study.reproduce.results``):

- ``results.json``: one row per published figure (name, metric, published, measured,
  gap, spread, note, ...), the comparison as data;
- ``report.md`` and ``report.html`` (one self-contained page, plotly.js inline): a
  verdict up front, then per part of the published report a table with the published
  value, kmlp's, the gap, the spread and the verdict, and the figures;
- the figures as PNG: ``gradient-norms.png``, ``networks.png``, ``search-published.png``,
  ``search-auto.png``, ``init-loss.png``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from kmlp.dashboards import reproduce_figures as figs
from kmlp.dashboards.errors import DashboardError
from kmlp.dashboards.search_plot import search_matplotlib, search_plotly
from kmlp.dashboards.summary import stage_table_rows
from kmlp.study.reproduce.plan import SEARCHES
from kmlp.study.reproduce.results import Measurements
from kmlp.study.reproduce.rows import ResultRow

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

SECTIONS = (
    "Gradient check",
    "Test accuracy",
    "Coarse-to-fine search",
    "Sensitivity to initialisation",
)
FAR_POINTS = 1.5  # the bar: an accuracy further off than this must be explained
SEARCH_TITLES = {SEARCHES[0]: "the published stages", SEARCHES[1]: "kmlp's automatic narrowing"}


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """How the report was made: the command to rerun it, the storage (as shown to
    people), seconds this reproduction took, the runs it trained and reused, the load
    average at its end."""

    command: str
    storage: str
    seconds: float | None = None
    ran: int = 0
    reused: int = 0
    load: str = ""


def check_out_dir(path: str | Path) -> Path:
    """``path`` created and writable, else DashboardError (call it before any work)."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".kmlp-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise DashboardError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    return out


def write_report(
    m: Measurements,
    rows: list[ResultRow],
    *,
    out_dir: str | Path,
    storage: optuna.storages.BaseStorage,
    artifact_store: ArtifactStore | None,
    info: RunInfo,
) -> list[Path]:
    """Write the report files into ``out_dir``; returns their paths."""
    out = check_out_dir(out_dir)
    curves = figs.run_curves(
        storage, [*m.networks.values(), *m.init.values()], artifact_store=artifact_store
    )
    titles = {s.figure: s.label for s in m.plan.networks}
    try:
        written = [out / "results.json"]
        written[0].write_text(
            json.dumps([r.to_dict() for r in rows], indent=1, default=_json) + "\n",
            encoding="utf-8",
        )
        pngs = {
            "gradient-norms.png": lambda p: figs.gradient_norms_png(m.gradcheck, p),
            "networks.png": lambda p: figs.networks_png(curves, titles, p),
            "init-loss.png": lambda p: figs.init_png(curves, m.init, p),
        }
        for kind, summary in m.searches.items():
            pngs[f"{kind}.png"] = lambda p, s=summary: search_matplotlib(s, p)
        for name, draw in pngs.items():
            written.append(draw(out / name))
        md = out / "report.md"
        md.write_text(report_markdown(m, rows, info=info), encoding="utf-8")
        page = out / "report.html"
        page.write_text(
            report_html(m, rows, info=info, curves=curves, titles=titles), encoding="utf-8"
        )
        written += [md, page]
    except OSError as exc:
        raise DashboardError(f"cannot write report into {out}: {exc.strerror or exc}") from exc
    return written


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else str(value)


# --- cells --------------------------------------------------------------------------


def fmt(row: ResultRow, value: float | str | None, *, what: str) -> str:
    """A published or measured value, or the gap or spread, as the table shows it."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    kind = row.metric
    if what in ("gap", "spread"):
        if kind == "λ" or row.figure.startswith("gradcheck/"):
            return f"{value:+.2f} decades" if what == "gap" else f"±{value:.2f} decades"
        return f"{value:+.2f} points" if what == "gap" else f"±{value:.2f} points"
    if kind.endswith("(%)"):
        return f"{value:g}%" if what == "published" else f"{value:.2f}%"
    if kind == "λ":
        return f"{value:.4g}"
    return f"{value:.1e}" if what == "measured" else f"{value:g}"


def table_cells(rows: list[ResultRow]) -> list[list[str]]:
    """Header and one row per result: figure, published, measured, gap, spread, verdict."""
    cells = [["figure", "published", "kmlp", "gap", "spread", "verdict"]]
    for r in rows:
        cells.append(
            [
                r.name,
                fmt(r, r.published, what="published"),
                fmt(r, r.measured, what="measured"),
                fmt(r, r.gap, what="gap"),
                fmt(r, r.spread, what="spread") if r.spread is not None else "–",
                r.verdict,
            ]
        )
    return cells


def verdict_lines(rows: list[ResultRow]) -> list[str]:
    """The plain verdict: counts, then every figure that differs, with its note."""
    judged = [r for r in rows if r.within is not None]
    differ = [r for r in judged if not r.within]
    lines = [
        f"{len(rows)} published figures compared: {len(judged) - len(differ)} within the "
        f"run-to-run spread, {len(differ)} differ, {len(rows) - len(judged)} not judged "
        "(claims in words, or not measured)."
    ]
    far = [
        r
        for r in judged
        if r.metric.endswith("(%)") and r.gap is not None and abs(r.gap) > FAR_POINTS
    ]
    lines.append(
        f"{len(far)} accuracy figure(s) more than {FAR_POINTS:g} points from the published "
        + (f"value ({'; '.join(r.name for r in far)}); each note says why." if far else "value.")
    )
    lines += [f"{r.name}: {r.note}" for r in differ]
    return lines


def gradcheck_cells(m: Measurements) -> list[list[str]]:
    cells = [["layers", "BN", "largest relative error", "W_1 … W_k relative errors"]]
    for (layers, bn), case in sorted(m.gradcheck.items()):
        errs = " ".join(f"{e:.0e}" for e in case.weight_errors())
        cells.append([str(layers), "yes" if bn else "no", f"{case.largest_error:.1e}", errs])
    return cells


def norm_cells(m: Measurements, layers: int) -> list[list[str]]:
    cells = [["init", "BN", *(f"W{i}" for i in range(1, layers + 1))]]
    for bn in (False, True):
        case = m.gradcheck.get((layers, bn))
        if case is None:
            continue
        for init, norms in case.gradient_norms.items():
            cells.append([init, "yes" if bn else "no", *(f"{v:.1e}" for v in norms)])
        eps = m.plan.gradcheck.small_eps
        for init, norms in case.small_eps_norms.items():
            cells.append([init, f"yes, ε = {eps:g}", *(f"{v:.1e}" for v in norms)])
    return cells


# --- markdown -----------------------------------------------------------------------


def _md_table(cells: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells[1:]]


def report_markdown(m: Measurements, rows: list[ResultRow], *, info: RunInfo) -> str:
    lines = ["# kmlp reproduce: the published report, side by side", ""]
    lines += [*_intro(m, info), ""]
    lines += ["## Verdict", ""] + [f"- {v}" for v in verdict_lines(rows)] + [""]
    lines += ["How to read the tables: " + _spreads(), ""]
    for section in SECTIONS:
        mine = [r for r in rows if r.section == section]
        lines += [f"## {section}", "", *_md_table(table_cells(mine)), ""]
        lines += [f"- **{r.name}**: {r.note}" for r in mine] + [""]
        if section == "Gradient check":
            lines += [*_md_table(gradcheck_cells(m)), ""]
            lines += ["Gradient norms ‖∂J/∂W_l‖ at initialisation, 9-layer network:", ""]
            lines += [*_md_table(norm_cells(m, 9)), "", "![gradient norms](gradient-norms.png)", ""]
        elif section == "Test accuracy":
            lines += ["![training curves of the four networks](networks.png)", ""]
        elif section == "Coarse-to-fine search":
            for kind, summary in m.searches.items():
                lines += [f"Search with {SEARCH_TITLES[kind]} (study `{summary.name}`):", ""]
                lines += [*_md_table(stage_table_rows(summary)), ""]
                lines += [f"![search: {SEARCH_TITLES[kind]}]({kind}.png)", ""]
        elif section == "Sensitivity to initialisation":
            lines += ["![loss curves of the init study](init-loss.png)", ""]
    return "\n".join(lines)


def _intro(m: Measurements, info: RunInfo) -> list[str]:
    mode = (
        "quick: 1000 training images, 500 validation, one cycle; the numbers are not "
        "comparable with the published ones"
        if m.plan.quick
        else "full: the published setup (45000 / 5000 / 10000 images, n_s 2250, 2 cycles; "
        "retrains on 49000 images for 3 cycles)"
    )
    if info.ran:
        took = (
            f" This reproduction trained {info.ran} runs"
            + (f" and reused {info.reused} finished earlier" if info.reused else "")
            + (f" in {info.seconds / 60:.1f} min" if info.seconds is not None else "")
            + (f" (load average {info.load} at the end)" if info.load else "")
            + "."
        )
    else:
        took = f" Every run was finished earlier ({info.reused}): this report reused them."
    return [
        f"Mode: {mode}. Every run is an Optuna trial in {info.storage}, studies "
        f"`{m.plan.prefix}/*`.{took}",
        "",
        f"Reproduce it: `{info.command}` (rerunning reuses every finished run).",
    ]


def _spreads() -> str:
    return (
        "gap = kmlp - published (points; decades of λ or of the error bound); the spread "
        "of an accuracy is 2 binomial standard errors of an accuracy p on the n images "
        "scored, 2·sqrt(p(1-p)/n), about ±1.0 point on the 10000 test images; the spread "
        "of a best λ is the interval of λ whose validation accuracy is within that spread "
        "of the best. A figure differs when the gap exceeds its spread."
    )


# --- HTML ---------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em}table{border-collapse:collapse;margin:1em 0}
th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.differs{color:#b00;font-weight:bold}
.ok{color:#070}.muted{color:#666}.notes li{margin:.3em 0}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em}
.pair>div{min-width:0;overflow:hidden}code{background:#f5f5f5}
"""


def _html_table(cells: list[list[str]], *, verdict_col: int | None = None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cells[0])
    body = ""
    for row in cells[1:]:
        tds = []
        for i, c in enumerate(row):
            cls = ""
            if i == verdict_col:
                cls = (
                    " class='differs'" if c == "DIFFERS" else " class='ok'" if "within" in c else ""
                )
            tds.append(f"<td{cls}>{e(c)}</td>")
        body += f"<tr>{''.join(tds)}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def report_html(
    m: Measurements,
    rows: list[ResultRow],
    *,
    info: RunInfo,
    curves: dict[str, dict[str, list[float]]],
    titles: dict[str, str],
) -> str:
    e = html.escape
    plotly_done = False

    def figure(fig: Any) -> str:
        nonlocal plotly_done
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=not plotly_done,
            default_width="100%",
            config={"responsive": True},
        )
        plotly_done = True
        return f"<div>{div}</div>"

    parts = ["<h1>kmlp reproduce: the published report, side by side</h1>"]
    parts += [f"<p class='muted'>{e(p)}</p>" for p in _intro(m, info) if p]
    verdict = verdict_lines(rows)
    parts += ["<h2>Verdict</h2>", f"<p><b>{e(verdict[0])}</b></p>"]
    if verdict[1:]:
        parts.append(
            "<ul class='notes'>" + "".join(f"<li>{e(v)}</li>" for v in verdict[1:]) + "</ul>"
        )
    parts.append(f"<p class='muted'>{e(_spreads())}</p>")
    for section in SECTIONS:
        mine = [r for r in rows if r.section == section]
        parts += [f"<h2>{e(section)}</h2>", _html_table(table_cells(mine), verdict_col=5)]
        parts.append(
            "<ul class='notes'>"
            + "".join(f"<li><b>{e(r.name)}</b>: {e(r.note)}</li>" for r in mine)
            + "</ul>"
        )
        if section == "Gradient check":
            parts.append(_html_table(gradcheck_cells(m)))
            parts.append("<p>Gradient norms ‖∂J/∂W_l‖ at initialisation, 9-layer network:</p>")
            parts.append(_html_table(norm_cells(m, 9)))
            parts.append(figure(figs.gradient_norms_plotly(m.gradcheck)))
        elif section == "Test accuracy" and curves:
            parts.append(figure(figs.networks_plotly(curves, titles)))
        elif section == "Coarse-to-fine search":
            cols = []
            for kind, summary in m.searches.items():
                cols.append(
                    f"<div><h3>{e(SEARCH_TITLES[kind])}</h3>"
                    + _html_table(stage_table_rows(summary))
                    + figure(search_plotly(summary))
                    + "</div>"
                )
            parts.append(f"<div class='pair'>{''.join(cols)}</div>")
        elif section == "Sensitivity to initialisation" and curves:
            parts.append(figure(figs.init_plotly(curves, m.init)))
    title = "kmlp reproduce"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
