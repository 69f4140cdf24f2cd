"""The gradient-check experiment: analytic against numerical gradients for each depth,
with and without BN, and the gradient norm of every layer at initialisation.

The check is the course's: float64, centred differences with step h on ``samples``
training images cut to their first ``dims`` features, gamma and beta moved away from 1
and 0. The norms are ||dJ/dW_l||_F on ``norm_samples`` whole training images (3072
features) for each initialisation of the init study, which is where vanishing gradients
show: without BN a small sigma shrinks every layer's gradient by orders of magnitude.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from kmlp.network import MLP, Dataset
from kmlp.network.gradcheck import gradient_check, randomise_bn_params
from kmlp.storage import storage_lock
from kmlp.study.reproduce.plan import GradcheckSpec
from kmlp.study.reproduce.record import GRADCHECK_PARAMS, RUN_KEY, ask_fixed, fail


@dataclass(frozen=True, kw_only=True)
class GradcheckCase:
    """One depth with or without BN: per-parameter comparison rows and gradient norms.

    ``rows``: dicts of ``GradCheckRow`` (name, shape, relative_error, ...);
    ``gradient_norms``: init -> [||dJ/dW_1||, ..., ||dJ/dW_k||];
    ``small_eps_norms``: the same with batch norm's epsilon at ``GradcheckSpec.small_eps``
    instead of kmlp's 1e-5 (BN networks only): what epsilon does to a small init.
    """

    layers: int
    batch_norm: bool
    hidden: tuple[int, ...]
    rows: tuple[dict[str, Any], ...]
    gradient_norms: dict[str, list[float]]
    small_eps_norms: dict[str, list[float]]

    @property
    def largest_error(self) -> float:
        return max(float(r["relative_error"]) for r in self.rows)

    def weight_errors(self) -> list[float]:
        """Relative error of W_1 .. W_k, in layer order."""
        by_name = {r["name"]: float(r["relative_error"]) for r in self.rows}
        return [by_name[f"W{layer}"] for layer in range(1, self.layers + 1)]

    def key(self) -> str:
        return f"gradcheck/{self.layers}-layer{'-bn' if self.batch_norm else ''}"


def check_case(
    spec: GradcheckSpec, data: Dataset, *, hidden: tuple[int, ...], batch_norm: bool
) -> GradcheckCase:
    """Run the check and the norms for one network shape (float64 ``data``)."""
    X = np.ascontiguousarray(data.train.X[: spec.samples, : spec.dims], dtype=np.float64)
    y = data.train.y[: spec.samples]
    rng = np.random.default_rng(0)
    net = MLP(
        layer_sizes=[spec.dims, *hidden, 10], batch_norm=batch_norm, seed=rng, dtype="float64"
    )
    randomise_bn_params(net, rng)
    rows = gradient_check(net, X, y, spec.lam, h=spec.h)
    whole = np.asarray(data.train.X[: spec.norm_samples], dtype=np.float64)
    labels = data.train.y[: spec.norm_samples]
    norms = {init: _norms(whole, labels, hidden, batch_norm, init) for init in spec.inits}
    small = {}
    if batch_norm:
        small = {
            init: _norms(whole, labels, hidden, batch_norm, init, bn_eps=spec.small_eps)
            for init in spec.inits
        }
    return GradcheckCase(
        layers=len(hidden) + 1,
        batch_norm=batch_norm,
        hidden=tuple(hidden),
        rows=tuple({**dataclasses.asdict(r), "shape": list(r.shape)} for r in rows),
        gradient_norms=norms,
        small_eps_norms=small,
    )


def _norms(
    X: np.ndarray,
    y: np.ndarray,
    hidden: tuple[int, ...],
    batch_norm: bool,
    init: str,
    *,
    bn_eps: float = 1e-5,
) -> list[float]:
    """||dJ/dW_l||_F (data term only) for l = 1..k of a fresh network on X (n, d)."""
    net = MLP(
        layer_sizes=[X.shape[1], *hidden, 10],
        batch_norm=batch_norm,
        init=init,
        seed=0,
        dtype="float64",
        bn_eps=bn_eps,
    )
    grads = net.gradients(X, y, 0.0)
    return [float(np.linalg.norm(grads[f"W{layer}"])) for layer in range(1, net.k + 1)]


def case_key(spec: GradcheckSpec, layers: int, batch_norm: bool) -> str:
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k != "depths"}
    return repr((layers, batch_norm, sorted(settings.items())))


def recorded_cases(
    study: optuna.Study | None, spec: GradcheckSpec
) -> dict[tuple[int, bool], GradcheckCase]:
    """The cases already recorded in ``study`` with these settings."""
    if study is None:
        return {}
    out = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        layers, bn = trial.params.get("layers"), trial.params.get("batch_norm")
        if layers is None or bn is None:
            continue
        if trial.user_attrs.get(RUN_KEY) != case_key(spec, int(layers), bool(bn)):
            continue
        out[(int(layers), bool(bn))] = GradcheckCase(
            layers=int(layers),
            batch_norm=bool(bn),
            hidden=tuple(trial.user_attrs["hidden"]),
            rows=tuple(trial.user_attrs["rows"]),
            gradient_norms=dict(trial.user_attrs["gradient_norms"]),
            small_eps_norms=dict(trial.user_attrs.get("small_eps_norms") or {}),
        )
    return out


def record_case(
    study: optuna.Study, rdb: optuna.storages.RDBStorage, spec: GradcheckSpec, case: GradcheckCase
) -> int:
    """Store ``case`` as a COMPLETE trial (value: its largest relative error)."""
    with storage_lock(rdb, name=study.study_name):
        trial = ask_fixed(
            study,
            params={"layers": case.layers, "batch_norm": case.batch_norm},
            distributions=GRADCHECK_PARAMS,
            user_attrs={RUN_KEY: case_key(spec, case.layers, case.batch_norm)},
        )
    try:
        trial.set_user_attr("hidden", list(case.hidden))
        trial.set_user_attr("rows", list(case.rows))
        trial.set_user_attr("gradient_norms", case.gradient_norms)
        trial.set_user_attr("small_eps_norms", case.small_eps_norms)
        study.tell(trial, case.largest_error)
    except BaseException:
        fail(study, trial)
        raise
    return trial.number
