"""The method's published figures, as data, with the part of the report each comes from.

The numbers are the published report's own (quoted in kmlp issue 9): its training setup,
the test accuracy of the four networks, its gradient check, its coarse-to-fine search of
λ with the retrain of the best λ, and its study of sensitivity to initialisation.
Accuracies are in percent, as the report gives them (rounded to whole or half points).
Nothing here is computed; :mod:`kmlp.study.reproduce.plan` builds the experiments from
these values and :mod:`kmlp.study.reproduce.results` compares the measurements with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

THREE_LAYER: tuple[int, ...] = (50, 50)
NINE_LAYER: tuple[int, ...] = (50, 30, 20, 20, 10, 10, 10, 10)
ARCHITECTURES: dict[str, tuple[int, ...]] = {"3-layer": THREE_LAYER, "9-layer": NINE_LAYER}

# Training setup (section "Training setup"): CIFAR-10 split 45000 / 5000 / 10000, batches
# of 100, cyclical learning rate 1e-5..1e-1 with n_s = 5 * 45000 / 100 = 2250, 2 cycles,
# lambda 0.005, He initialisation.
N_TRAIN, N_VAL, N_TEST = 45000, 5000, 10000
BATCH_SIZE = 100
ETA_MIN, ETA_MAX = 1e-5, 1e-1
N_S = 2250
CYCLES = 2
LAMBDA = 0.005
INIT = "he"

# Coarse-to-fine search (section "Coarse-to-fine search"): log10 lambda uniform in each
# range in turn; the best lambda was retrained for 3 cycles.
SEARCH_RANGES: tuple[tuple[float, float], ...] = ((-5.0, -1.0), (-3.0, -1.0), (-3.0, -2.0))
SEARCH_LAMBDA = 0.007671
RETRAIN_CYCLES = 3

# Sensitivity to initialisation (section "Sensitivity to initialisation"): weights drawn
# from N(0, sigma^2) instead of He, trained with the lambda the search found.
SIGMAS: tuple[float, ...] = (1e-1, 1e-3, 1e-4)

# Gradient check (section "Gradient check"): "agree to 6 decimal places".
GRADCHECK_BOUND = 1e-6
GRADCHECK_DEPTHS: dict[int, tuple[int, ...]] = {
    2: (50,),
    3: THREE_LAYER,
    4: (50, 30, 20),  # the first widths of the 9-layer network
    9: NINE_LAYER,
}

Kind = Literal["accuracy", "val_accuracy", "lambda", "bound", "claim"]


@dataclass(frozen=True, kw_only=True)
class PublishedFigure:
    """One figure of the published report.

    Attributes:
        key: stable identifier, e.g. ``networks/9-layer-bn`` or ``init/3-layer/sigma=0.001``.
        name: what it is, for people.
        metric: what is measured, with its unit.
        value: the published number (percent for accuracies, λ in natural units, a bound
            on the relative error for the gradient check); None for a claim in words.
        kind: how it is compared: a test ("accuracy") or validation ("val_accuracy")
            accuracy in percent, a λ, an upper bound, or a claim in words.
        section: the part of the published report it comes from.
        text: the report's words, where it gives words rather than (or beside) a number.
    """

    key: str
    name: str
    metric: str
    value: float | None
    kind: Kind
    section: str
    text: str = ""


def sigma_label(sigma: float) -> str:
    """``sigma=0.001`` for 1e-3: the init string of ``TrainConfig``, as keys use it."""
    return f"sigma={sigma:g}"


def _networks() -> list[PublishedFigure]:
    values = {("3-layer", False): 53.0, ("3-layer", True): 54.0}
    values |= {("9-layer", False): 47.0, ("9-layer", True): 52.0}
    return [
        PublishedFigure(
            key=f"networks/{arch}{'-bn' if bn else ''}",
            name=f"{arch} network{' with BN' if bn else ''}, He init, λ = {LAMBDA:g}, "
            f"{CYCLES} cycles",
            metric="test accuracy (%)",
            value=value,
            kind="accuracy",
            section="Test accuracy",
        )
        for (arch, bn), value in values.items()
    ]


def _gradcheck() -> list[PublishedFigure]:
    return [
        PublishedFigure(
            key="gradcheck/3-layer",
            name="3-layer network: analytic against numerical gradients",
            metric="largest relative error",
            value=GRADCHECK_BOUND,
            kind="bound",
            section="Gradient check",
            text="agree to 6 decimal places",
        ),
        PublishedFigure(
            key="gradcheck/9-layer-bn",
            name="9-layer network with BN: analytic against numerical gradients",
            metric="largest relative error",
            value=GRADCHECK_BOUND,
            kind="bound",
            section="Gradient check",
            text="agree in the last layers and drift further back",
        ),
        PublishedFigure(
            key="gradcheck/9-layer",
            name="9-layer network without BN: gradients",
            metric="gradient norm per layer",
            value=None,
            kind="claim",
            section="Gradient check",
            text="the gradients vanish",
        ),
    ]


def _search() -> list[PublishedFigure]:
    return [
        PublishedFigure(
            key="search/lambda",
            name="best λ of the coarse-to-fine search (3-layer BN)",
            metric="λ",
            value=SEARCH_LAMBDA,
            kind="lambda",
            section="Coarse-to-fine search",
        ),
        PublishedFigure(
            key="search/val",
            name="validation accuracy of the best λ",
            metric="validation accuracy (%)",
            value=55.0,
            kind="val_accuracy",
            section="Coarse-to-fine search",
        ),
        PublishedFigure(
            key="retrain/3-layer-bn",
            name=f"best λ retrained for {RETRAIN_CYCLES} cycles, 3-layer BN",
            metric="test accuracy (%)",
            value=54.0,
            kind="accuracy",
            section="Coarse-to-fine search",
        ),
        PublishedFigure(
            key="retrain/9-layer-bn",
            name=f"best λ retrained for {RETRAIN_CYCLES} cycles, 9-layer BN",
            metric="test accuracy (%)",
            value=52.5,
            kind="accuracy",
            section="Coarse-to-fine search",
        ),
    ]


def _init() -> list[PublishedFigure]:
    values = {
        ("3-layer", True): (53.0, 53.0, 54.0),
        ("9-layer", True): (52.0, 51.5, 50.5),
        ("3-layer", False): (10.0, 10.0, 10.0),
        ("9-layer", False): (10.0, 10.0, 10.0),
    }
    out = []
    for (arch, bn), accuracies in values.items():
        for sigma, value in zip(SIGMAS, accuracies, strict=True):
            out.append(
                PublishedFigure(
                    key=f"init/{arch}{'-bn' if bn else ''}/{sigma_label(sigma)}",
                    name=f"{arch}{' BN' if bn else ' without BN'}, weights N(0, σ²), "
                    f"σ = {sigma:g}, λ = {SEARCH_LAMBDA:g}",
                    metric="test accuracy (%)",
                    value=value,
                    kind="accuracy",
                    section="Sensitivity to initialisation",
                    text="" if bn else "training fails",
                )
            )
    return out


PUBLISHED: tuple[PublishedFigure, ...] = (
    *_gradcheck(),
    *_networks(),
    *_search(),
    *_init(),
)
FIGURES: dict[str, PublishedFigure] = {f.key: f for f in PUBLISHED}
