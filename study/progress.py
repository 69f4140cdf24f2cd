"""Progress lines a worker prints: a stage opens or closes, it waits, a trial ends.

Every line reads the study's summary (:mod:`kmlp.study.summary`). Lines start with
``[w<i>] `` when several workers share the terminal. A trial's line ends with the whole
study's progress: trials done of planned, time elapsed and the estimated time left, from
the rate at which trials finished since this launch (or worker) started, whichever
workers finished them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from optuna.trial import TrialState

from kmlp.study.objective import Outcome
from kmlp.study.summary import StageSummary, StudySummary


@dataclass(frozen=True)
class Clock:
    """When a launch started (seconds since the epoch) and how many trials were done then.

    Picklable, so that a launch hands its start to the worker processes it spawns.
    """

    started: float
    done_at_start: int

    @classmethod
    def start(cls, done: int) -> Clock:
        return cls(started=time.time(), done_at_start=done)

    def elapsed(self) -> float:
        return max(0.0, time.time() - self.started)

    def eta(self, *, done: int, total: int | None) -> float | None:
        """Seconds left at the rate trials finished since the start; None if unknown."""
        ran = done - self.done_at_start
        if total is None or ran <= 0:
            return None
        return max(0, total - done) * self.elapsed() / ran


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def overall(summary: StudySummary, clock: Clock | None) -> str:
    """``7/9 trials, 42 s elapsed, ETA 12 s`` (without times if ``clock`` is None)."""
    total = summary.trials_total
    text = f"{summary.trials_done}/{total if total is not None else '?'} trials"
    if clock is None:
        return text
    text += f", {format_duration(clock.elapsed())} elapsed"
    eta = clock.eta(done=summary.trials_done, total=total)
    if summary.finished:
        return text
    return text + (f", ETA {format_duration(eta)}" if eta is not None else "")


def stage_opened(stage: StageSummary, *, out: TextIO, prefix: str) -> None:
    print(
        f"{prefix}stage {stage.stage}: log10 lambda in [{stage.low:.3f}, {stage.high:.3f}], "
        f"{stage.budget} trials; range: {stage.how}",
        file=out,
        flush=True,
    )


def waiting(stage: int, running: int, *, out: TextIO, prefix: str) -> None:
    trials = "trial" if running == 1 else "trials"
    print(
        f"{prefix}waiting for {running} running {trials} of stage {stage} to finish",
        file=out,
        flush=True,
    )


def stage_closed(stage: StageSummary, *, out: TextIO, prefix: str) -> None:
    best = stage.best
    text = (
        f"best lambda {best.lam:.3e}, val {100 * (best.value or 0):.2f}% (trial #{best.number})"
        if best is not None
        else "no completed trial"
    )
    counts = f"{stage.complete} complete, {stage.pruned} pruned, {stage.failed} failed"
    print(f"{prefix}stage {stage.stage} finished: {text}; {counts}", file=out, flush=True)


def trial_done(
    summary: StudySummary,
    stage: int,
    number: int,
    outcome: Outcome,
    *,
    clock: Clock | None,
    out: TextIO,
    prefix: str,
) -> None:
    """One line: stage, trial, its λ and result, the stage's progress, the best, overall."""
    mine = next((s for s in summary.stages if s.stage == stage), None)
    done = f"{mine.done}/{mine.budget}" if mine else "?"
    trial = outcome.trial
    lam = f"{trial.user_attrs['lambda']:.3e}" if trial and "lambda" in trial.user_attrs else "?"
    if outcome.state == TrialState.COMPLETE and outcome.value is not None:
        what = f"val {100 * outcome.value:.2f}%"
    else:
        what = outcome.state.name.lower() + (f" ({outcome.note})" if outcome.note else "")
    secs = trial.user_attrs.get("seconds") if trial else None
    took = f" in {secs:.1f} s" if secs is not None else ""
    best = summary.best
    best_text = (
        f" | best {100 * (best.value or 0):.2f}% at lambda {best.lam:.3e} (#{best.number})"
        if best is not None
        else ""
    )
    print(
        f"{prefix}stage {stage} trial #{number} ({done}): lambda {lam} {what}{took}"
        f"{best_text} | {overall(summary, clock)}",
        file=out,
        flush=True,
    )
