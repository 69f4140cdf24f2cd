"""Coarse-to-fine narrowing of the log10 λ range: a pure function of the trials so far.

The next stage's range is the span of log10 λ of the top-k completed trials, widened on
each side by ``margin`` times the previous width, clipped to the previous range. If that
is not at most ``max_ratio`` of the previous width (the top trials are spread over the
whole range), a window of exactly ``max_ratio`` of the width is centred on the best trial
and shifted inside the previous range. So whatever the trials:

- the new range lies inside the previous one and is strictly narrower, and
- it contains the best completed trial (which lies in the previous range, since the
  ranges nest and every trial of a stage was drawn from its range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kmlp.study.errors import StudyError

MAX_RATIO = 0.8


@dataclass(frozen=True)
class Scored:
    """A completed trial: its number, log10 λ and validation accuracy (higher is better)."""

    number: int
    log10_lambda: float
    value: float


@dataclass(frozen=True)
class Narrowed:
    """A derived range and how it was derived.

    Attributes:
        low, high: the new range of log10 λ.
        top: numbers of the top-k trials, best first.
        span: (min, max) log10 λ of those trials.
        capped: True if the span (plus margin) was too wide and the max_ratio window
            centred on the best trial was used instead.
    """

    low: float
    high: float
    top: tuple[int, ...]
    span: tuple[float, float]
    capped: bool


def rank(trials: Sequence[Scored]) -> list[Scored]:
    """Trials best first; ties go to the earlier trial number."""
    return sorted(trials, key=lambda t: (-t.value, t.number))


def narrow(
    *,
    low: float,
    high: float,
    trials: Sequence[Scored],
    top_k: int,
    margin: float,
    max_ratio: float = MAX_RATIO,
) -> Narrowed:
    """The next range after [low, high], from all completed trials so far.

    ``trials`` may include trials of earlier, wider stages; the best of them must lie in
    [low, high] (it does in a real study). Raises StudyError if there is no trial to
    narrow from.
    """
    if not low < high:
        raise StudyError(f"range {low:g},{high:g}: low must be < high")
    if not (0 < margin and 0 < max_ratio < 1 and top_k >= 1):
        raise ValueError("need margin > 0, 0 < max_ratio < 1 and top_k >= 1")
    if not trials:
        raise StudyError("no completed trial to narrow the range from (all pruned or failed?)")
    ranked = rank(trials)
    top = ranked[:top_k]
    best = top[0].log10_lambda
    if not low <= best <= high:
        raise StudyError(f"best trial's log10 lambda {best:g} lies outside {low:g},{high:g}")
    width = high - low
    span = (min(t.log10_lambda for t in top), max(t.log10_lambda for t in top))
    new_low = max(low, span[0] - margin * width)
    new_high = min(high, span[1] + margin * width)
    capped = new_high - new_low > max_ratio * width
    if capped:
        window = max_ratio * width
        new_low = best - window / 2
        new_high = new_low + window
        if new_low < low:
            new_low, new_high = low, low + window
        elif new_high > high:
            new_low, new_high = high - window, high
    return Narrowed(
        low=new_low,
        high=new_high,
        top=tuple(t.number for t in top),
        span=span,
        capped=capped,
    )
