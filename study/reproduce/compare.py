"""The comparison: every published figure beside kmlp's measurement of it, as rows."""

from __future__ import annotations

import math

from kmlp.study.reproduce import published as pub
from kmlp.study.reproduce.compare_gradcheck import gradcheck_rows
from kmlp.study.reproduce.plan import SEARCHES
from kmlp.study.reproduce.results import Measurements, RunRecord
from kmlp.study.reproduce.rows import (
    ACCURACY_SPREAD,
    ResultRow,
    accuracy_note,
    binomial_spread,
    quick_note,
    renamed,
)


def compare(m: Measurements) -> list[ResultRow]:
    """One row per published figure (the search and retrain figures once per search)."""
    rows = gradcheck_rows(m)
    for spec in m.plan.networks:
        rows.append(_run_row(m, pub.FIGURES[spec.figure], m.networks.get(spec.figure)))
    for kind in SEARCHES:
        rows += _search_rows(m, kind)
    for spec in m.plan.init:
        rows.append(_run_row(m, pub.FIGURES[spec.figure], m.init.get(spec.figure)))
    return rows


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
        return ResultRow.pending(
            **base,
            note=why,
            study=run.study if run else None,
            trial=run.trial if run else None,
        )
    n = run.test_size or pub.N_TEST
    measured = 100.0 * run.test_accuracy
    gap = measured - figure.value
    spread = binomial_spread(run.test_accuracy, n)
    within = abs(gap) <= spread
    note = quick_note(m) + accuracy_note(measured, figure.value, gap, spread, within, n, "test")
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
        if moved and figure.text:
            parts.append(f" The report says {figure.text} here; in kmlp it does not.")
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
        small = case.small_eps_norms.get(run.init) if case is not None else None
        if norms and small and min(norms) < 1e-3 * min(small):
            assert case is not None
            eps = m.plan.gradcheck.small_eps
            parts.append(
                f" Batch norm divides by sqrt(variance + ε) with kmlp's ε = 1e-5; with ε = "
                f"{eps:g} the same network's norms are {min(small):.1e} to {max(small):.1e}: "
                f"at this σ the pre-normalisation variance of the layers is far below 1e-5, "
                f"so ε, not batch norm, shrinks the signal layer by layer (kmlp's training "
                f"has no ε setting: a run with a small ε is not measured here)."
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
                ResultRow.pending(
                    key=f"{fig.key}@{kind}",
                    figure=fig.key,
                    name=f"{fig.name} ({label})",
                    section=fig.section,
                    metric=fig.metric,
                    published=fig.value,
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
        note = quick_note(m) + (
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
        vnote = quick_note(m) + accuracy_note(
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
        rows.append(renamed(row, f"{fig.name} (λ of the {label})"))
    return rows
