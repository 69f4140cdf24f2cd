"""The measurements of a reproduction read back from the storage, and compared with the
published figures: one :class:`ResultRow` per published figure (and per search, for the
figures both searches measure).

The spread a difference is judged against, by kind of figure:

- a test or validation accuracy: 2 binomial standard errors of an accuracy p measured
  on n images, 2 * sqrt(p (1 - p) / n) (about 1.0 point at 50% on 10000 test images):
  the sampling noise of the images scored, at 95%. Seeds move kmlp's test accuracy by
  about as much (seeds 0-3 of the 3-layer BN network: 53.02-53.62%, tests/test_accuracy.py);
- a best λ: the interval of log10 λ over the search's completed trials whose validation
  accuracy is within that spread of the best (the curve is flat there);
- a gradient-check bound: none (float64 and a fixed seed: it is deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kmlp.storage import open_storage
from kmlp.study.reproduce import published as pub
from kmlp.study.reproduce.gradients import GradcheckCase, recorded_cases
from kmlp.study.reproduce.plan import GRADCHECK, INIT, NETWORKS, RETRAIN, SEARCHES, Plan
from kmlp.study.reproduce.record import finished_runs, load_if_exists
from kmlp.study.reproduce.searches import search_summary
from kmlp.study.summary import StudySummary

SPREAD_SE = 2.0  # standard errors in a spread
ACCURACY_SPREAD = "2 binomial standard errors on {n} {what} images"


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A finished fixed run as stored; accuracies are fractions (None if it diverged)."""

    figure: str
    label: str
    study: str
    trial: int
    lam: float
    init: str
    cycles: int
    test_accuracy: float | None
    val_accuracy: float | None
    seconds: float | None
    test_size: int | None
    train_size: int | None
    train_loss_first: float | None
    train_loss_last: float | None
    diverged_at_step: int | None

    @classmethod
    def from_trial(cls, trial: FrozenTrial, study: str) -> RunRecord:
        a = trial.user_attrs
        data = a.get("data") or {}
        return cls(
            figure=str(a.get("figure", "")),
            label=str(a.get("label", "")),
            study=study,
            trial=trial.number,
            lam=float(trial.params.get("lambda", math.nan)),
            init=str(trial.params.get("init", "")),
            cycles=int(trial.params.get("cycles", 0)),
            test_accuracy=_number(a.get("test_accuracy")),
            val_accuracy=_number(a.get("val_accuracy")),
            seconds=_number(a.get("seconds")),
            test_size=data.get("test_size"),
            train_size=data.get("train_size"),
            train_loss_first=_number(a.get("train_loss_first")),
            train_loss_last=_number(a.get("train_loss_last")),
            diverged_at_step=a.get("diverged_at_step"),
        )


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """Everything a reproduction measured, by what it measures.

    ``networks`` / ``init``: figure key -> run; ``retrains``: (search kind, architecture)
    -> run; ``searches``: search kind -> summary; ``gradcheck``: (layers, BN) -> case.
    A missing entry was not run (yet).
    """

    plan: Plan
    networks: Mapping[str, RunRecord]
    init: Mapping[str, RunRecord]
    searches: Mapping[str, StudySummary]
    retrains: Mapping[tuple[str, str], RunRecord]
    gradcheck: Mapping[tuple[int, bool], GradcheckCase]

    @property
    def complete(self) -> bool:
        return (
            len(self.networks) == len(self.plan.networks)
            and len(self.init) == len(self.plan.init)
            and all(k in self.searches and self.searches[k].finished for k in SEARCHES)
            and len(self.retrains) == len(SEARCHES) * len(pub.ARCHITECTURES)
            and len(self.gradcheck) == len(self.plan.gradcheck.cases())
        )


def collect(*, storage: str | optuna.storages.RDBStorage, plan: Plan) -> Measurements:
    """Read a reproduction's measurements from ``storage`` (one read per study)."""
    rdb = storage if isinstance(storage, optuna.storages.RDBStorage) else open_storage(storage)

    def runs(kind: str, specs: Any) -> dict[str, RunRecord]:
        name = plan.study_name(kind)
        done = finished_runs(load_if_exists(rdb, name))
        return {
            s.figure: RunRecord.from_trial(done[s.key()], name) for s in specs if s.key() in done
        }

    searches = {}
    for kind in SEARCHES:
        summary = search_summary(rdb, plan.study_name(kind))
        if summary is not None:
            searches[kind] = summary
    retrain_name = plan.study_name(RETRAIN)
    retrained = finished_runs(load_if_exists(rdb, retrain_name))
    retrains = {}
    for kind, summary in searches.items():
        if summary.best is None or summary.best.lam is None:
            continue
        for arch in pub.ARCHITECTURES:
            spec = plan.retrain(arch, summary.best.lam)
            if spec.key() in retrained:
                retrains[(kind, arch)] = RunRecord.from_trial(retrained[spec.key()], retrain_name)
    gradcheck = recorded_cases(load_if_exists(rdb, plan.study_name(GRADCHECK)), plan.gradcheck)
    return Measurements(
        plan=plan,
        networks=runs(NETWORKS, plan.networks),
        init=runs(INIT, plan.init),
        searches=searches,
        retrains=retrains,
        gradcheck=gradcheck,
    )


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


def compare(m: Measurements) -> list[ResultRow]:
    """One row per published figure (the search and retrain figures once per search)."""
    rows = _gradcheck_rows(m)
    for spec in m.plan.networks:
        rows.append(_run_row(m, pub.FIGURES[spec.figure], m.networks.get(spec.figure)))
    for kind in SEARCHES:
        rows += _search_rows(m, kind)
    for spec in m.plan.init:
        rows.append(_run_row(m, pub.FIGURES[spec.figure], m.init.get(spec.figure)))
    return rows


def _quick(m: Measurements) -> str:
    if not m.plan.quick:
        return ""
    return "Quick run (small data, one cycle): not comparable with the published setup. "


def _run_row(
    m: Measurements, figure: pub.PublishedFigure, run: RunRecord | None, *, key: str = ""
) -> ResultRow:
    assert figure.value is not None
    base = {
        "key": key or figure.key,
        "figure": figure.key,
        "name": figure.name,
        "section": figure.section,
        "metric": figure.metric,
        "published": figure.value,
    }
    if run is None or run.test_accuracy is None:
        why = "not run yet" if run is None else f"diverged at step {run.diverged_at_step}"
        return ResultRow(
            **base,
            measured=None,
            gap=None,
            spread=None,
            spread_kind="",
            within=None,
            note=why,
            study=run.study if run else None,
            trial=run.trial if run else None,
        )
    n = run.test_size or pub.N_TEST
    measured = 100.0 * run.test_accuracy
    gap = measured - figure.value
    spread = binomial_spread(run.test_accuracy, n)
    within = abs(gap) <= spread
    note = _quick(m) + _accuracy_note(measured, figure.value, gap, spread, within, n, "test")
    if not within:
        note += _explain(m, figure, run)
    return ResultRow(
        **base,
        measured=round(measured, 2),
        gap=round(gap, 2),
        spread=round(spread, 2),
        spread_kind=ACCURACY_SPREAD.format(n=n, what="test"),
        within=within,
        note=note,
        study=run.study,
        trial=run.trial,
        extra={"lambda": run.lam, "init": run.init, "cycles": run.cycles},
    )


def _accuracy_note(
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


def _explain(m: Measurements, figure: pub.PublishedFigure, run: RunRecord) -> str:
    """The measurement behind a difference, where kmlp has one."""
    parts = []
    if run.train_loss_first is not None and run.train_loss_last is not None:
        moved = run.train_loss_last < math.log(10) - 0.05
        parts.append(
            f" The training loss went from {run.train_loss_first:.3f} to "
            f"{run.train_loss_last:.3f} (chance is ln 10 = 2.303): training "
            f"{'worked' if moved else 'failed'}."
        )
    if figure.key.startswith("init/"):
        arch = figure.key.split("/")[1]
        layers = len(pub.ARCHITECTURES[arch.removesuffix("-bn")]) + 1
        case = m.gradcheck.get((layers, arch.endswith("-bn")))
        norms = case.gradient_norms.get(run.init) if case is not None else None
        if norms:
            parts.append(
                f" At initialisation (σ = {run.init.removeprefix('sigma=')}) the gradient "
                f"norms ‖∂J/∂W_l‖ run from {max(norms):.1e} to {min(norms):.1e} across "
                f"the layers (100 training images), "
                + ("large enough to learn from." if min(norms) > 1e-6 else "vanishing.")
            )
    return "".join(parts)


def _search_rows(m: Measurements, kind: str) -> list[ResultRow]:
    summary = m.searches.get(kind)
    label = {SEARCHES[0]: "published stages", SEARCHES[1]: "automatic narrowing"}[kind]
    study = m.plan.study_name(kind)
    lam_fig, val_fig = pub.FIGURES["search/lambda"], pub.FIGURES["search/val"]
    rows = []
    best = summary.best if summary is not None else None
    if best is None or best.value is None or best.log10_lambda is None:
        for fig in (lam_fig, val_fig):
            rows.append(
                ResultRow(
                    key=f"{fig.key}@{kind}",
                    figure=fig.key,
                    name=f"{fig.name} ({label})",
                    section=fig.section,
                    metric=fig.metric,
                    published=fig.value,
                    measured=None,
                    gap=None,
                    spread=None,
                    spread_kind="",
                    within=None,
                    note="search not finished yet",
                    study=study,
                )
            )
    else:
        assert summary is not None and lam_fig.value is not None and val_fig.value is not None
        n_val = int(summary.data.get("val_size") or pub.N_VAL)
        spread = binomial_spread(best.value, n_val)
        flat = [
            t.log10_lambda
            for s in summary.stages
            for t in s.points
            if t.value is not None
            and t.log10_lambda is not None
            and 100 * (best.value - t.value) <= spread
        ]
        low, high = min(flat), max(flat)
        published_x = math.log10(lam_fig.value)
        within = low <= published_x <= high
        gap = best.log10_lambda - published_x
        where = "inside" if within else "outside"
        note = _quick(m) + (
            f"{'Within the spread' if within else 'Differs'}: best λ {best.lam:.4g} is "
            f"{abs(gap):.2f} decades {'above' if gap > 0 else 'below'} the published "
            f"{lam_fig.value:g}. Validation accuracy is flat within ±{spread:.2f} points "
            f"(2 binomial SE on {n_val} validation images) of the best for log10 λ in "
            f"[{low:.2f}, {high:.2f}] ({len(flat)} trials); the published λ is {where} it."
        )
        rows.append(
            ResultRow(
                key=f"{lam_fig.key}@{kind}",
                figure=lam_fig.key,
                name=f"{lam_fig.name} ({label})",
                section=lam_fig.section,
                metric=lam_fig.metric,
                published=lam_fig.value,
                measured=float(f"{best.lam:.4g}"),
                gap=round(gap, 3),
                spread=round((high - low) / 2, 3),
                spread_kind="half-width, in decades of λ, of the interval of trials "
                "within 2 binomial SE of the best validation accuracy",
                within=within,
                note=note,
                study=study,
                trial=best.number,
                extra={"interval_log10_lambda": [low, high]},
            )
        )
        measured = 100.0 * best.value
        vgap = measured - val_fig.value
        vwithin = abs(vgap) <= spread
        vnote = _quick(m) + _accuracy_note(
            measured, val_fig.value, vgap, spread, vwithin, n_val, "validation"
        )
        vnote += " The best of many trials is biased upwards by the selection."
        rows.append(
            ResultRow(
                key=f"{val_fig.key}@{kind}",
                figure=val_fig.key,
                name=f"{val_fig.name} ({label})",
                section=val_fig.section,
                metric=val_fig.metric,
                published=val_fig.value,
                measured=round(measured, 2),
                gap=round(vgap, 2),
                spread=round(spread, 2),
                spread_kind=ACCURACY_SPREAD.format(n=n_val, what="validation"),
                within=vwithin,
                note=vnote,
                study=study,
                trial=best.number,
            )
        )
    for arch in pub.ARCHITECTURES:
        fig = pub.FIGURES[f"retrain/{arch}-bn"]
        row = _run_row(m, fig, m.retrains.get((kind, arch)), key=f"{fig.key}@{kind}")
        rows.append(_renamed(row, f"{fig.name} (λ of the {label})"))
    return rows


def _renamed(row: ResultRow, name: str) -> ResultRow:
    from dataclasses import replace

    return replace(row, name=name)


def _gradcheck_rows(m: Measurements) -> list[ResultRow]:
    rows = []
    for key, cases in (
        ("gradcheck/3-layer", [(3, False), (3, True)]),
        ("gradcheck/9-layer-bn", [(9, True)]),
    ):
        fig = pub.FIGURES[key]
        found = [m.gradcheck[c] for c in cases if c in m.gradcheck]
        assert fig.value is not None
        if not found:
            rows.append(
                ResultRow(
                    key=key,
                    figure=key,
                    name=fig.name,
                    section=fig.section,
                    metric=fig.metric,
                    published=fig.value,
                    measured=None,
                    gap=None,
                    spread=None,
                    spread_kind="",
                    within=None,
                    note="not run yet",
                )
            )
            continue
        worst = max(c.largest_error for c in found)
        overall = max((c.largest_error for c in m.gradcheck.values()), default=worst)
        within = worst <= fig.value
        note = (
            f"{'Agrees' if within else 'Differs'}: largest relative error {worst:.1e} "
            f"against the published bound {fig.value:g} ({fig.text}); over every depth "
            f"(2, 3, 4, 9) with and without BN the largest is {overall:.1e}."
        )
        if key.endswith("-bn"):
            errors = found[0].weight_errors()
            note += (
                " Per layer W1..W9: "
                + ", ".join(f"{e:.0e}" for e in errors)
                + f": the first layers' errors are {max(errors[:3]) / min(errors[-3:]):.0f}x the "
                "last layers', a trace of the published drift, far below the bound."
            )
        rows.append(
            ResultRow(
                key=key,
                figure=key,
                name=fig.name,
                section=fig.section,
                metric=fig.metric,
                published=fig.value,
                measured=float(f"{worst:.3g}"),
                gap=round(math.log10(worst / fig.value), 2),
                spread=None,
                spread_kind="none: float64 with a fixed seed is deterministic",
                within=within,
                note=note,
                extra={"published_text": fig.text},
            )
        )
    fig = pub.FIGURES["gradcheck/9-layer"]
    plain, normed = m.gradcheck.get((9, False)), m.gradcheck.get((9, True))
    if plain is None:
        rows.append(
            ResultRow(
                key=fig.key,
                figure=fig.key,
                name=fig.name,
                section=fig.section,
                metric=fig.metric,
                published=fig.text,
                measured=None,
                gap=None,
                spread=None,
                spread_kind="",
                within=None,
                note="not run yet",
            )
        )
        return rows
    smallest = {init: min(n) for init, n in plain.gradient_norms.items()}
    text = "; ".join(
        f"{_init_name(init)}: {min(n):.0e} to {max(n):.0e}"
        for init, n in plain.gradient_norms.items()
    )
    with_bn = min(min(n) for n in normed.gradient_norms.values()) if normed else math.nan
    vanish = [i for i, s in smallest.items() if s < 1e-6]
    note = (
        f"Gradient norms ‖∂J/∂W_l‖ of the 9-layer network without BN at initialisation, "
        f"per init (smallest to largest layer): {text}. They vanish with "
        f"{', '.join(_init_name(i) for i in vanish) or 'no init'}"
        + (f", not with He init (smallest {smallest['he']:.1e})" if "he" in smallest else "")
        + f"; with BN the smallest over every init is {with_bn:.1e}. kmlp's check itself "
        f"agrees to {plain.largest_error:.0e} for this network."
    )
    rows.append(
        ResultRow(
            key=fig.key,
            figure=fig.key,
            name=fig.name,
            section=fig.section,
            metric=fig.metric,
            published=fig.text,
            measured=f"vanish with {', '.join(_init_name(i) for i in vanish) or 'no init'}",
            gap=None,
            spread=None,
            spread_kind="",
            within=None,
            note=note,
            extra={"gradient_norms": dict(plain.gradient_norms)},
        )
    )
    return rows


def _init_name(init: str) -> str:
    return "He init" if init == "he" else f"σ = {init.removeprefix('sigma=')}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


__all__ = ["Measurements", "ResultRow", "RunRecord", "TrialState", "collect", "compare"]
