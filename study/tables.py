"""Text of a summary for the terminal: ``kmlp show``'s stage table and ``kmlp studies``."""

from __future__ import annotations

from collections.abc import Sequence

from kmlp.study.summary import StudySummary


def format_summary(summary: StudySummary) -> str:
    """The stage table, how each range was chosen, the best trial, retrains and progress."""
    header = (
        f"{'stage':>5}  {'log10 lambda range':<22}  {'from':<6}  {'trials':>7}  "
        f"{'pruned':>6}  {'failed':>6}  {'best lambda':>11}  {'best val':>8}  {'trial':>5}"
    )
    lines = [header, "-" * len(header)]
    for s in summary.stages:
        b = s.best
        best_lam = f"{b.lam:.3e}" if b is not None else "-"
        best_val = f"{100 * (b.value or 0):.2f}%" if b is not None else "-"
        best_no = f"#{b.number}" if b is not None else "-"
        span = f"[{s.low:.3f}, {s.high:.3f}]" + (" ext" if s.record.extended else "")
        lines.append(
            f"{s.stage:>5}  {span:<22}  "
            f"{s.record.derived_from:<6}  {f'{s.done}/{s.budget}':>7}  {s.pruned:>6}  "
            f"{s.failed:>6}  {best_lam:>11}  {best_val:>8}  {best_no:>5}"
        )
    if not summary.stages:
        lines.append("(no stage started yet)")
    else:
        lines.append("how each range was chosen:")
        lines += [f"  stage {s.stage}: {s.how}" for s in summary.stages]
    best = summary.best
    if best is not None:
        word = "best" if summary.finished else "best so far"
        lines.append(
            f"{word}: trial #{best.number} (stage {best.stage}), lambda {best.lam:.4e}, "
            f"validation accuracy {100 * (best.value or 0):.2f}%"
        )
    if summary.interval is not None:
        lines.append(summary.interval.describe())
    lines += [f"retrained: {r.describe()}" for r in summary.retrains]
    lines.append(f"progress: {progress_text(summary)}")
    return "\n".join(lines)


def progress_text(summary: StudySummary) -> str:
    """``6/6 trials, 2/2 stages: finished`` (or ``..., 1 running``)."""
    trials = f"{summary.trials_done}/{_or_q(summary.trials_total)} trials"
    stages = f"{summary.stages_done}/{_or_q(summary.stages_total)} stages"
    state = "finished" if summary.finished else "not finished"
    extra = [f"{summary.running} running"] if summary.running else []
    extra += [f"{summary.failed} failed (rerun)"] if summary.failed else []
    return f"{trials}, {stages}: {', '.join([state, *extra])}"


def format_studies(summaries: Sequence[StudySummary]) -> str:
    """One row per study: trials, stages, best λ and validation accuracy, test accuracy."""
    if not summaries:
        return "(no studies)"
    width = max(5, *(len(s.name) for s in summaries))
    header = (
        f"{'study':<{width}}  {'trials':>7}  {'stages':>6}  {'best lambda':>11}  "
        f"{'best val':>8}  {'test':>6}  state"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        b, r = s.best, s.retrain
        lam = f"{b.lam:.3e}" if b is not None else "-"
        val = f"{100 * (b.value or 0):.2f}%" if b is not None else "-"
        test = f"{100 * r.test_accuracy:.2f}%" if r is not None else "-"
        state = "finished" if s.finished else ("running" if s.running else "open")
        if s.stages_total is None:
            state = "not kmlp"
        lines.append(
            f"{s.name:<{width}}  {f'{s.trials_done}/{_or_q(s.trials_total)}':>7}  "
            f"{f'{s.stages_done}/{_or_q(s.stages_total)}':>6}  {lam:>11}  {val:>8}  "
            f"{test:>6}  {state}"
        )
    return "\n".join(lines)


def _or_q(value: int | None) -> str:
    return "?" if value is None else str(value)
