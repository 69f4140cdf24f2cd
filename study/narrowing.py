"""Coarse-to-fine narrowing of the log10 λ range: a pure function of the trials so far.

The next stage's range is the span of log10 λ of the top-k completed trials, widened on
each side by ``margin`` times the previous width, clipped to the previous range. If that
is not at most ``max_ratio`` of the previous width (the top trials are spread over the
whole range), a window of exactly ``max_ratio`` of the width is centred on the best trial
and shifted inside the previous range. So whatever the trials (unless extended, below):

- the new range lies inside the previous one and is strictly narrower, and
- it contains the best completed trial (which lies in the previous range, since the
  ranges nest and every trial of a stage was drawn from its range).

Extension past the searched edge. A coarse range can exclude the optimum; the best trial
then sits at its edge. So, given ``searched`` = (lowest low, highest high) of all stages
so far (the current one included), when the best completed trial lies in the *outer
tenth* of the current range on a side (within ``OUTER_FRACTION`` of its width from that
edge, edge included) and that side is *at the searched edge* (the current range's edge
on that side is the outermost searched there: ``high >= searched[1]``, resp. ``low <=
searched[0]``; for the first narrowing ``searched`` is the coarse range itself, so
either side qualifies), the next range is *extended*: the ``max_ratio`` window centred
on the best trial, as the capped rule uses, but not shifted back inside. It stays as
wide as the rules allow (the optimum may lie beyond the edge, so the range keeps room to
find it rather than closing in on the edge), is strictly narrower, contains the best
trial, reaches past that edge by 0.3 to 0.4 of the current width (at most half its own
width), and its other side stays inside the current range. It is flagged ``extended``.

Which edge counts after an extension: an extended stage's outer edge becomes the searched
edge on that side (it is the highest high, resp. lowest low, so far), so a next stage
whose best trial is again in that outer tenth extends again, in steps that shrink with
the ranges. A side of the current range that lies inside the searched extent (a wider
stage went further that way) never extends: there the optimum was already looked for,
and the range nests as before. Without ``searched`` nothing extends (ranges only nest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kmlp.study.errors import StudyError

MAX_RATIO = 0.8
OUTER_FRACTION = 0.1  # the outer tenth of a range, where a best trial can trigger extension


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
        extended: True if the range reaches past the searched edge (module docstring);
            then it does not nest in the previous range.
    """

    low: float
    high: float
    top: tuple[int, ...]
    span: tuple[float, float]
    capped: bool
    extended: bool = False


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
    searched: tuple[float, float] | None = None,
) -> Narrowed:
    """The next range after [low, high], from all completed trials so far.

    ``trials`` may include trials of earlier stages; the best of them must lie in [low,
    high] (it does in a real study: every range contains the best trial so far).
    ``searched`` is the (lowest low, highest high) of all stages so far, the current one
    included; with it, a best trial in the outer tenth at the searched edge extends the
    range past that edge (module docstring). Raises StudyError if there is no trial to
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
    if searched is not None and _at_searched_edge(best, low, high, searched):
        window = max_ratio * width
        return Narrowed(
            low=best - window / 2,
            high=best + window / 2,
            top=tuple(t.number for t in top),
            span=span,
            capped=False,
            extended=True,
        )
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


def _at_searched_edge(best: float, low: float, high: float, searched: tuple[float, float]) -> bool:
    """True if ``best`` is in the outer tenth of [low, high] on a side at the searched edge."""
    if searched[0] > low or searched[1] < high:
        raise StudyError(
            f"searched extent {searched[0]:g},{searched[1]:g} does not contain the current "
            f"range {low:g},{high:g}"
        )
    outer = OUTER_FRACTION * (high - low)
    return (best >= high - outer and high >= searched[1]) or (
        best <= low + outer and low <= searched[0]
    )
