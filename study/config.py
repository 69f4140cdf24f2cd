"""The search configuration: stage ranges and budgets, sampler, pruning, seed."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from kmlp.network.checks import show
from kmlp.study.errors import StudyError

SAMPLERS = ("random", "tpe")
# median: the per-stage median rule at cycle ends (study.pruning.StageMedianPruner);
# halving: successive halving within a lockstep group (study.pruning.halving_rule);
# none: every trial runs to its end; auto: halving for a lockstep group, the median rule for
# a trial trained alone (measured in benchmarks/pruning.py: halving did 0.75 of the work
# with a best within noise in 9 of 9 stages; the median rule in groups only 0.84-1.00, and
# a group of one has nobody to halve against).
PRUNERS = ("auto", "median", "halving", "none")
# Bounds of what a search can be asked for; beyond them a value is a typo, not a plan.
# log10 lambda: 10**x must stay a normal, positive float32 and its L2 term finite.
LOG10_LAMBDA_LIMITS = (-30.0, 10.0)
MAX_STAGES = 100
MAX_TRIALS = 100_000  # per stage


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """How a study searches log10 λ.

    Attributes:
        coarse: (low, high) of log10 λ for stage 0.
        stages: number of stages (coarse + refinements).
        trials: trial budget, one number for every stage or one per stage.
        top_k: how many best completed trials span the next stage's range.
        margin: widening of that span on each side, as a fraction of the previous width.
        ranges: stages given by hand, (low, high) each; replaces coarse/stages/top_k.
        sampler: "random" (uniform in the stage range, the method's own search) or "tpe".
        prune: stop trials early (False is ``pruner="none"``; kept for stored studies).
        pruner: "auto" (halving for lockstep groups, median for lone trials), "median"
            (below the stage's median at a cycle end), "halving" (the worse half of a
            lockstep group at each cycle end) or "none".
        prune_startup: completed trials a stage needs before it prunes anything.
        prune_warmup_cycles: learning-rate cycles every trial runs before it can be pruned.
        seed: seed of the λ draws (random) or of the sampler (tpe).
    """

    coarse: tuple[float, float] = (-5.0, -1.0)
    stages: int = 3
    trials: tuple[int, ...] = (20,)
    top_k: int = 5
    margin: float = 0.1
    ranges: tuple[tuple[float, float], ...] | None = None
    sampler: str = "random"
    prune: bool = True
    pruner: str = "auto"
    prune_startup: int = 5
    prune_warmup_cycles: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "coarse", _range(self.coarse, "coarse range"))
        if isinstance(self.trials, int):
            object.__setattr__(self, "trials", (self.trials,))
        object.__setattr__(self, "trials", tuple(int(t) for t in self.trials))
        if self.ranges is not None:
            ranges = tuple(_range(r, f"range {i}") for i, r in enumerate(self.ranges))
            if not ranges:
                raise StudyError("--ranges needs at least one range")
            object.__setattr__(self, "ranges", ranges)
            object.__setattr__(self, "stages", len(ranges))
            object.__setattr__(self, "coarse", ranges[0])
        if not 1 <= self.stages <= MAX_STAGES:
            raise StudyError(f"stages must be from 1 to {MAX_STAGES}, got {show(self.stages)}")
        if len(self.trials) not in (1, self.stages):
            raise StudyError(
                f"--trials takes one number or one per stage ({self.stages}), "
                f"got {len(self.trials)}"
            )
        if any(not 1 <= t <= MAX_TRIALS for t in self.trials):
            raise StudyError(
                f"trial budgets must be from 1 to {MAX_TRIALS}, got {show(list(self.trials))}"
            )
        if not 1 <= self.top_k <= MAX_TRIALS:
            raise StudyError(f"top-k must be from 1 to {MAX_TRIALS}, got {show(self.top_k)}")
        if not (0 < self.margin < 0.5):
            raise StudyError(f"margin must be in (0, 0.5), got {show(self.margin)}")
        if self.sampler not in SAMPLERS:
            raise StudyError(
                f"unknown sampler {show(self.sampler)}; choose one of {', '.join(SAMPLERS)}"
            )
        if self.pruner not in PRUNERS:
            raise StudyError(
                f"unknown pruner {show(self.pruner)}; choose one of {', '.join(PRUNERS)}"
            )
        # prune=False (--no-prune, and studies stored before --pruner) means pruner "none"
        if not self.prune:
            object.__setattr__(self, "pruner", "none")
        object.__setattr__(self, "prune", self.pruner != "none")
        if self.prune_startup < 1 or self.prune_warmup_cycles < 0:
            raise StudyError("prune_startup must be >= 1 and prune_warmup_cycles >= 0")

    def budget(self, stage: int) -> int:
        """Trial budget of ``stage`` (0-based)."""
        return self.trials[stage] if len(self.trials) > 1 else self.trials[0]

    @property
    def manual(self) -> bool:
        return self.ranges is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (tuples as lists); stored as the study's ``search`` user attribute."""
        d = dataclasses.asdict(self)
        d["coarse"] = list(self.coarse)
        d["trials"] = list(self.trials)
        d["ranges"] = None if self.ranges is None else [list(r) for r in self.ranges]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        if fields.get("coarse") is not None:
            fields["coarse"] = tuple(fields["coarse"])
        if fields.get("trials") is not None:
            fields["trials"] = tuple(fields["trials"])
        if fields.get("ranges") is not None:
            fields["ranges"] = tuple(tuple(r) for r in fields["ranges"])
        return cls(**fields)


def _range(value: Any, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        raise StudyError(f"{what} must be two numbers low,high; got {show(value)}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise StudyError(f"{what} {low:g},{high:g}: both ends must be finite")
    if low >= high:
        raise StudyError(f"{what} {low:g},{high:g}: low must be < high (log10 lambda)")
    bottom, top = LOG10_LAMBDA_LIMITS
    if low < bottom or high > top:
        raise StudyError(
            f"{what} {low:g},{high:g}: log10 lambda must be within [{bottom:g}, {top:g}]"
        )
    return (low, high)


def parse_ranges(text: str) -> tuple[tuple[float, float], ...]:
    """``"-5,-1;-3,-1;-3,-2"`` -> ((-5, -1), (-3, -1), (-3, -2)); StudyError if malformed."""
    parts = [p for p in text.split(";") if p.strip()]
    if not parts:
        raise StudyError(f"--ranges {show(text)}: give low,high;low,high;... (e.g. -5,-1;-3,-2)")
    if len(parts) > MAX_STAGES:
        raise StudyError(f"--ranges gives {len(parts)} stages; at most {MAX_STAGES}")
    ranges = []
    for i, part in enumerate(parts):
        pieces = [p.strip() for p in part.split(",")]
        if len(pieces) != 2:
            raise StudyError(f"range {i} {show(part.strip())}: give low,high (e.g. -5,-1)")
        ranges.append(_range(pieces, f"range {i}"))
    return tuple(ranges)


def parse_trials(text: str) -> tuple[int, ...]:
    """``"20"`` or ``"20,10,10"`` -> budgets; StudyError if not whole numbers in range."""
    parts = [p.strip() for p in text.split(",")]
    if not all(re.fullmatch(r"[0-9]+", p) for p in parts):  # ASCII digits, no 1e3 or 2.5
        raise StudyError(
            f"--trials {show(text)}: give a whole number, or one per stage like 20,10,10"
        )
    if len(parts) > MAX_STAGES:
        raise StudyError(f"--trials gives {len(parts)} budgets; at most {MAX_STAGES} stages")
    if any(len(p) > 9 or not 1 <= int(p) <= MAX_TRIALS for p in parts):
        raise StudyError(f"--trials {show(text)}: each budget must be from 1 to {MAX_TRIALS}")
    return tuple(int(p) for p in parts)
