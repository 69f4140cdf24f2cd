"""The gradient check's rows: kmlp's relative errors against the published bound, and the
gradient norms per layer against the published "the gradients vanish"."""

from __future__ import annotations

import math

from kmlp.study.reproduce import published as pub
from kmlp.study.reproduce.results import Measurements
from kmlp.study.reproduce.rows import ResultRow, init_name


def gradcheck_rows(m: Measurements) -> list[ResultRow]:
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
                ResultRow.pending(
                    key=key,
                    figure=key,
                    name=fig.name,
                    section=fig.section,
                    metric=fig.metric,
                    published=fig.value,
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
            ResultRow.pending(
                key=fig.key,
                figure=fig.key,
                name=fig.name,
                section=fig.section,
                metric=fig.metric,
                published=fig.text,
                note="not run yet",
            )
        )
        return rows
    smallest = {init: min(n) for init, n in plain.gradient_norms.items()}
    text = "; ".join(
        f"{init_name(init)}: {min(n):.0e} to {max(n):.0e}"
        for init, n in plain.gradient_norms.items()
    )
    with_bn = min(min(n) for n in normed.gradient_norms.values()) if normed else math.nan
    vanish = [i for i, s in smallest.items() if s < 1e-6]
    note = (
        f"Gradient norms ‖∂J/∂W_l‖ of the 9-layer network without BN at initialisation, "
        f"per init (smallest to largest layer): {text}. They vanish with "
        f"{', '.join(init_name(i) for i in vanish) or 'no init'}"
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
            measured=f"vanish with {', '.join(init_name(i) for i in vanish) or 'no init'}",
            gap=None,
            spread=None,
            spread_kind="",
            within=None,
            note=note,
            extra={"gradient_norms": dict(plain.gradient_norms)},
        )
    )
    return rows
