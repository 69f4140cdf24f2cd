"""Published figures beside kmlp's: one :class:`ResultRow` per published figure (and per
search, for the figures both searches measure), and the spread a gap is judged against.

The spread a difference is judged against, by kind of figure:

- a test or validation accuracy: 2 binomial standard errors of an accuracy p measured
  on n images, 2 * sqrt(p (1 - p) / n) (about 1.0 point at 50% on 10000 test images):
  the sampling noise of the images scored, at 95%. Seeds move kmlp's test accuracy by
  about as much (measured for issue 7: seeds 0-3 of the 3-layer BN network, 53.02-53.62%);
- a best λ: the interval of log10 λ over the search's completed trials whose validation
  accuracy is within that spread of the best (the curve is flat there);
- a gradient-check bound: none (float64 and a fixed seed: it is deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kmlp.study.reproduce.results import Measurements

SPREAD_SE = 2.0  # standard errors in a spread
ACCURACY_SPREAD = "2 binomial standard errors on {n} {what} images"


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """A published figure beside kmlp's measurement of it.

    ``published`` / ``measured``: numbers in the figure's unit (percent, λ, relative
    error), or words for a claim; ``gap`` measured - published (points; for λ and bounds
    in decades, log10 measured / published); ``spread``: the run-to-run spread in the
    gap's unit (see the module docstring; None when there is none); ``within``: |gap|
    within the spread (λ: the published λ in the flat interval; bounds: measured below
    the bound), None when not judged; ``note``: the plain-words verdict and, where the
    two differ, the measurement that explains it.
    """

    key: str
    figure: str
    name: str
    section: str
    metric: str
    published: float | str | None
    measured: float | str | None
    gap: float | None
    spread: float | None
    spread_kind: str
    within: bool | None
    note: str
    study: str | None = None
    trial: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def pending(
        cls,
        *,
        key: str,
        figure: str,
        name: str,
        section: str,
        metric: str,
        published: float | str | None,
        note: str,
        study: str | None = None,
        trial: int | None = None,
    ) -> ResultRow:
        """A row whose measurement is not there (yet): ``note`` says why."""
        return cls(
            key=key,
            figure=figure,
            name=name,
            section=section,
            metric=metric,
            published=published,
            measured=None,
            gap=None,
            spread=None,
            spread_kind="",
            within=None,
            note=note,
            study=study,
            trial=trial,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "published": self.published,
            "measured": self.measured,
            "gap": self.gap,
            "spread": self.spread,
            "note": self.note,
            "within_spread": self.within,
            "spread_kind": self.spread_kind,
            "key": self.key,
            "section": self.section,
            "study": self.study,
            "trial": self.trial,
            **dict(self.extra),
        }

    @property
    def verdict(self) -> str:
        if self.within is None:
            return "not judged" if self.measured is not None else "not measured"
        return "within the spread" if self.within else "DIFFERS"


def binomial_spread(p: float, n: int) -> float:
    """SPREAD_SE binomial standard errors of an accuracy p (fraction) on n images, in points."""
    return 100.0 * SPREAD_SE * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def quick_note(m: Measurements) -> str:
    if not m.plan.quick:
        return ""
    return "Quick run (small data, one cycle): not comparable with the published setup. "


def accuracy_note(
    measured: float, published: float, gap: float, spread: float, within: bool, n: int, what: str
) -> str:
    if within:
        return (
            f"Within the spread: {gap:+.2f} points, spread ±{spread:.2f} "
            f"(2 binomial SE on {n} {what} images)."
        )
    return (
        f"Differs: kmlp measured {measured:.2f}% where the report has {published:g}% "
        f"({gap:+.2f} points), more than the spread ±{spread:.2f} (2 binomial SE on {n} "
        f"{what} images)."
    )


def renamed(row: ResultRow, name: str) -> ResultRow:
    return replace(row, name=name)


def init_name(init: str) -> str:
    return "He init" if init == "he" else f"σ = {init.removeprefix('sigma=')}"
