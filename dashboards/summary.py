"""Markdown summary of a search: stages, best λ and the command that exports it.

Used both as the study's note in optuna-dashboard and as ``summary.md`` of ``kmlp report``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from kmlp.dashboards.search_data import SearchFigureData
from kmlp.storage import portable_url

HEADING = "# kmlp λ search"
FOOTER = (
    "_Written by kmlp each time a stage ends; edits to this note are replaced then "
    "(write your own notes on trials, or delete the first line to keep this note)._"
)
# Free-text keys of a stage record that explain how its range was chosen.
_HOW_KEYS = ("derived", "how", "reason", "method", "source", "rule")


def export_command(study_name: str, storage_url: str | None) -> str:
    """Shell command that exports the best trial, e.g. ``kmlp export --study s --storage URL``.

    The URL is made portable: absolute SQLite path, no password (PostgreSQL takes it from
    ``~/.pgpass`` or the user adds it back).
    """
    parts = ["kmlp", "export", "--study", shlex.quote(study_name)]
    if storage_url:
        parts += ["--storage", shlex.quote(_shareable_url(storage_url))]
    return " ".join(parts)


def study_summary_markdown(
    study: optuna.Study,
    data: SearchFigureData,
    *,
    storage_url: str | None,
    image_url: str | None = None,
) -> str:
    """``summary_markdown`` with the stages and config read from the study's attributes."""
    stages = study.user_attrs.get("stages")
    config = study.user_attrs.get("config")
    return summary_markdown(
        data,
        storage_url=storage_url,
        stages=stages if isinstance(stages, list) else None,
        config=config if isinstance(config, dict) else None,
        image_url=image_url,
    )


def summary_markdown(
    data: SearchFigureData,
    *,
    storage_url: str | None,
    stages: Sequence[Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    image_url: str | None = None,
) -> str:
    """Markdown text: best trial, a table with one row per stage, the export command.

    Args:
        data: the search data (see :func:`dashboards.search_data.search_figure_data`).
        storage_url: shown in the export command (password hidden); None omits ``--storage``.
        stages: the raw ``stages`` user attribute, for how each range was derived.
        config: the study's ``config`` user attribute (training configuration), shown compactly.
        image_url: where the search figure PNG is (dashboard artifact path or file name).
    """
    lines = [f"{HEADING}: {data.study_name}", ""]
    b = data.best
    if b is None:
        lines.append("No completed trial yet.")
    else:
        lines.append(
            f"**Best so far:** λ = {b.lam:.4g} (log10 λ = {b.log10_lambda:.3f}), "
            f"validation accuracy **{100 * b.val_accuracy:.2f} %** "
            f"(trial {b.trial_number}, stage {b.stage})."
        )
    lines += [
        "",
        "| stage | log10 λ range | budget | complete | pruned | failed | best λ | best val acc |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data.stages:
        rng = f"[{s.low:.3f}, {s.high:.3f}]" if s.low is not None and s.high is not None else "?"
        i = s.best_index
        best_lam = f"{10.0 ** s.log10_lambda[i]:.4g}" if i is not None else "–"
        best_acc = f"{100 * s.val_accuracy[i]:.2f} %" if i is not None else "–"
        budget = str(s.n_trials) if s.n_trials is not None else "?"
        lines.append(
            f"| {s.stage} | {rng} | {budget} | {len(s.trial_numbers)} | {s.n_pruned} "
            f"| {s.n_failed} | {best_lam} | {best_acc} |"
        )
    if image_url:
        lines += ["", f"![search figure]({image_url})"]
    how = _how_lines(stages or [])
    if how:
        lines += ["", "How each range was chosen:", "", *how]
    if config:
        compact = json.dumps(dict(config), sort_keys=True, default=str)
        lines += ["", f"Training configuration: `{compact}`"]
    lines += [
        "",
        "Export the best trial (then `kmlp retrain best.json`):",
        "",
        "```sh",
        export_command(data.study_name, storage_url) + " -o best.json",
        "```",
        "",
        FOOTER,
        "",
    ]
    return "\n".join(lines)


def trial_note_markdown(result: Any, *, image_url: str, csv_name: str, stage: object = None) -> str:
    """A trial's note: final numbers, then its curves image (``result``: network.TrainResult)."""
    where = f"stage {stage} · " if stage is not None else ""
    return "\n".join(
        [
            f"{where}λ = {result.config.lam:.4g} · validation accuracy "
            f"**{100 * result.val_accuracy:.2f} %** · train accuracy "
            f"{100 * result.train_accuracy:.2f} % · {result.seconds:.1f} s"
            f"{' (stopped early)' if result.stopped else ''}",
            "",
            f"![training curves: loss, cost and accuracy against update steps]({image_url})",
            "",
            f"The curves as data: artifact `{csv_name}`.",
            "",
        ]
    )


def _shareable_url(storage_url: str) -> str:
    """Absolute SQLite path, and no password at all (not even ``***``, which breaks the command)."""
    parsed = make_url(portable_url(storage_url))
    if parsed.password is not None:
        parsed = parsed._replace(password=None)  # URL.set(password=None) keeps the old one
    return parsed.render_as_string(hide_password=False)


def is_kmlp_note(body: str) -> bool:
    """True when a note is empty or was written by kmlp (so it may be replaced)."""
    return not body.strip() or body.startswith(HEADING)


def _how_lines(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for k, info in enumerate(stages):
        if not isinstance(info, Mapping):
            continue
        texts = [str(info[key]) for key in _HOW_KEYS if isinstance(info.get(key), str | int)]
        if texts:
            out.append(f"- stage {k}: " + "; ".join(texts))
    return out
