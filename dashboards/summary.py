"""Markdown of a study's summary: the study note in optuna-dashboard and ``summary.md``.

Everything shown is read from :class:`kmlp.study.summary.StudySummary`; nothing is
re-derived from the trials here.
"""

from __future__ import annotations

import json
from typing import Any

from kmlp.study.commands import export_command, has_password
from kmlp.study.summary import StudySummary

HEADING = "# kmlp λ search"
FOOTER = (
    "_Written by kmlp after every finished trial; edits to this note are replaced then "
    "(write your own notes on trials, or delete the first line to keep this note)._"
)


def cycles(n: int) -> str:
    return f"{n} cycle" if n == 1 else f"{n} cycles"


def best_sentence(summary: StudySummary) -> str:
    """``Best λ = ...`` (``Best so far`` while the study runs), or that none completed."""
    b = summary.best
    if b is None:
        return "No completed trial yet."
    word = "Best" if summary.finished else "Best so far"
    return (
        f"{word}: λ = {b.lam:.4g} (log10 λ = {b.log10_lambda:.3f}), "
        f"validation accuracy {100 * (b.value or 0):.2f} % (trial {b.number}, stage {b.stage})."
    )


def interval_sentence(summary: StudySummary) -> str | None:
    """The λ values within noise of the best (``StudySummary.interval``), or None."""
    i = summary.interval
    if i is None:
        return None
    text = (
        f"λ within noise of the best: {i.low:.4g} to {i.high:.4g} "
        f"(log10 λ {i.log10_low:.3f} to {i.log10_high:.3f}; a Gaussian-process fit of "
        f"{i.n_trials} trials, accuracy within {100 * (i.fitted_accuracy - i.threshold):.2f} "
        f"points of its peak {100 * i.fitted_accuracy:.2f} %)."
    )
    if i.at_edge:
        text += " It reaches the edge of the searched span: the optimum may lie beyond."
    return text


def retrain_sentence(summary: StudySummary) -> str | None:
    """The retrained test accuracy of the best trial (or the latest retrain), or None."""
    r = summary.retrain
    if r is None:
        return None
    return (
        f"Retrained (trial {r.trial}, λ = {r.lam:.4g}, {cycles(r.cycles)} on "
        f"{r.train_size} training images): test accuracy {r.test_text().replace('%', ' %')} "
        f"(validation {100 * r.val_accuracy:.2f} % on {r.val_size} images)."
    )


def progress_sentence(summary: StudySummary) -> str:
    state = "finished" if summary.finished else "running or interrupted"
    total = summary.trials_total if summary.trials_total is not None else "?"
    stages = summary.stages_total if summary.stages_total is not None else "?"
    return (
        f"{summary.trials_done}/{total} trials in {summary.stages_done}/{stages} stages: {state}."
    )


def stage_table_rows(summary: StudySummary) -> list[list[str]]:
    """The stage table's cells (header first), shared by markdown and HTML."""
    rows = [["stage", "log10 λ range", "trials", "pruned", "failed", "best λ", "best val acc"]]
    for s in summary.stages:
        b = s.best
        rows.append(
            [
                str(s.stage),
                f"[{s.low:.3f}, {s.high:.3f}]" + (" (extended)" if s.record.extended else ""),
                f"{s.done}/{s.budget}",
                str(s.pruned),
                str(s.failed),
                f"{b.lam:.4g}" if b is not None else "–",
                f"{100 * (b.value or 0):.2f} %" if b is not None else "–",
            ]
        )
    return rows


def summary_markdown(
    summary: StudySummary,
    *,
    storage_url: str | None,
    image_url: str | None = None,
    note: bool = True,
) -> str:
    """Markdown: best λ, retrained test accuracy, the stage table, how each range was
    chosen, the search figure, the training configuration and the export command.

    Args:
        storage_url: shown in the export command (portable, no password); None omits it.
        image_url: where the search figure PNG is (dashboard artifact path or file name).
        note: end with the study note's footer (kmlp rewrites the note; edits are lost).
    """
    lines = [f"{HEADING}: {summary.name}", "", f"**{best_sentence(summary)}**"]
    interval = interval_sentence(summary)
    if interval:
        lines += ["", interval]
    retrained = retrain_sentence(summary)
    if retrained:
        lines += ["", f"**{retrained}**"]
    lines += ["", progress_sentence(summary), ""]
    table = stage_table_rows(summary)
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|---:|:---|" + "---:|" * (len(table[0]) - 2))
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if summary.stages:
        lines += ["", "How each range was chosen:", ""]
        lines += [f"- stage {s.stage}: {s.how}" for s in summary.stages]
    if image_url:
        lines += ["", f"![search figure]({image_url})"]
    if summary.config:
        compact = json.dumps(dict(summary.config), sort_keys=True, default=str)
        lines += ["", f"Training configuration: `{compact}`"]
    lines += [
        "",
        "Export the best trial (then `kmlp retrain best.json`):",
        "",
        "```sh",
        export_command(summary.name, storage_url),
        "```",
    ]
    if has_password(storage_url):
        lines += ["", "(The storage password is left out: add it back, or use `~/.pgpass`.)"]
    lines += ["", FOOTER, ""] if note else [""]
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


def is_kmlp_note(body: str) -> bool:
    """True when a note is empty or was written by kmlp (so it may be replaced)."""
    return not body.strip() or body.startswith(HEADING)
