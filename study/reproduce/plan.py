"""The experiments of a reproduction, built from the published setup: what runs, on what.

A full reproduction trains at the published setup (45000 / 5000 images, n_s 2250, 2
cycles; retrains on 49000 images for 3 cycles); ``quick`` runs the same experiments on
1000 training images for one cycle. Runs that differ only in λ or in the initial
weights' σ share a :func:`lockstep_key`, so that they train together.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kmlp.network import SHARED_FIELDS, Dataset, TrainConfig, load_cifar10
from kmlp.study.config import SearchConfig
from kmlp.study.reproduce import published as pub
from kmlp.study.retrain import FINAL_VAL_SIZE

# Runs by kind of experiment, each one Optuna study named <prefix>/<kind>.
NETWORKS, INIT, RETRAIN, GRADCHECK = "networks", "init", "retrain", "gradcheck"
SEARCH_PUBLISHED, SEARCH_AUTO = "search-published", "search-auto"
SEARCHES = (SEARCH_PUBLISHED, SEARCH_AUTO)

FULL_SEARCH_TRIALS = 10  # per stage; the report does not say how many it ran
QUICK_SEARCH_TRIALS = 4
QUICK_N_TRAIN, QUICK_N_VAL = 1000, 500


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which CIFAR-10 images a run uses (``load_cifar10``'s options; None = all).

    ``val_pool`` None is the search split (45000 / 5000); 1000 is the method's final
    training (49000 / 1000). The test set is always the 10000 test images.
    """

    n_train: int | None = None
    n_val: int | None = None
    val_pool: int | None = None

    def load(self, data_dir: str | None) -> Dataset:
        return load_cifar10(
            data_dir=data_dir,
            n_train=self.n_train,
            n_val=self.n_val,
            val_pool=self.val_pool,
            progress=False,
        )

    def options(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)

    def train_size(self) -> int:
        """Training images: n_train, else all of the training pool."""
        pool = pub.N_TRAIN + pub.N_VAL - (self.val_pool or pub.N_VAL)
        return self.n_train or pool


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One fixed training run (a network, an init-grid cell, a retrain): one trial.

    ``figure`` is the key of the published figure it measures (see ``published``).
    """

    kind: str
    figure: str
    label: str
    architecture: str
    config: TrainConfig
    data: DataSpec

    def key(self) -> str:
        """What identifies the run: its configuration and data, as canonical JSON."""
        return json.dumps(
            {"config": self.config.to_dict(), "data": self.data.options()}, sort_keys=True
        )

    def steps(self) -> int:
        """Update steps it trains for (its cost)."""
        return 2 * self.config.half_cycle(self.data.train_size()) * self.config.cycles


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """One coarse-to-fine search, run by ``kmlp.study.launch``."""

    kind: str
    label: str
    config: TrainConfig
    search: SearchConfig
    data: DataSpec

    def trials(self) -> int:
        return sum(self.search.budget(s) for s in range(self.search.stages))

    def steps(self) -> int:
        """Update steps of all its trials, none pruned (an upper bound of its cost)."""
        return (
            self.trials()
            * 2
            * self.config.half_cycle(self.data.train_size())
            * (self.config.cycles)
        )


@dataclass(frozen=True, kw_only=True)
class GradcheckSpec:
    """The gradient check: depths x BN on ``samples`` images cut to ``dims`` features,
    and gradient norms per layer on ``norm_samples`` whole images, for each init (with
    batch norm also at epsilon ``small_eps``)."""

    depths: Mapping[int, tuple[int, ...]]
    samples: int = 10
    dims: int = 20
    norm_samples: int = 100
    lam: float = 0.01
    h: float = 1e-5
    small_eps: float = 1e-12  # batch norm's epsilon for the comparison norms (kmlp: 1e-5)
    inits: tuple[str, ...] = ("he", *(pub.sigma_label(s) for s in pub.SIGMAS))

    def cases(self) -> list[tuple[int, bool]]:
        return [(k, bn) for k in self.depths for bn in (False, True)]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Every experiment of one reproduction; studies are named ``<prefix>/<kind>``."""

    quick: bool
    prefix: str
    networks: tuple[RunSpec, ...]
    init: tuple[RunSpec, ...]
    searches: tuple[SearchSpec, ...]
    gradcheck: GradcheckSpec
    retrain_data: DataSpec
    retrain_cycles: int

    def study_name(self, kind: str) -> str:
        return f"{self.prefix}/{kind}"

    def retrains(self, best: Mapping[str, float | None]) -> tuple[RunSpec, ...]:
        """The retrains of each search's best λ (``best``: search kind -> λ, None if the
        search has none) for the 3- and 9-layer BN networks; one run per distinct λ."""
        runs: dict[str, RunSpec] = {}
        for arch in pub.ARCHITECTURES:
            for kind in SEARCHES:
                lam = best.get(kind)
                if lam is not None:
                    spec = self.retrain(arch, lam)
                    runs.setdefault(spec.key(), spec)
        return tuple(runs.values())

    def retrain(self, arch: str, lam: float) -> RunSpec:
        """The retrain of λ for the ``arch`` BN network."""
        return RunSpec(
            kind=RETRAIN,
            figure=f"retrain/{arch}-bn",
            label=f"{arch} BN, λ = {lam:.4g}",
            architecture=arch,
            config=self._config(arch, True, lam=lam, cycles=self.retrain_cycles),
            data=self.retrain_data,
        )

    def _config(self, arch: str, bn: bool, **fields: Any) -> TrainConfig:
        return base_config(self.quick, hidden=pub.ARCHITECTURES[arch], batch_norm=bn, **fields)


def base_config(quick: bool, **fields: Any) -> TrainConfig:
    """The published training setup (quick: one cycle; n_s follows the data size)."""
    setup: dict[str, Any] = {
        "batch_size": pub.BATCH_SIZE,
        "eta_min": pub.ETA_MIN,
        "eta_max": pub.ETA_MAX,
        "cycles": 1 if quick else pub.CYCLES,
        "lam": pub.LAMBDA,
        "init": pub.INIT,
    }
    return TrainConfig(**(setup | fields))


def make_plan(*, quick: bool) -> Plan:
    """The reproduction's experiments at the published setup, or on small data (quick)."""
    data = DataSpec(n_train=QUICK_N_TRAIN, n_val=QUICK_N_VAL) if quick else DataSpec()
    retrain_data = DataSpec(n_train=QUICK_N_TRAIN if quick else None, val_pool=FINAL_VAL_SIZE)
    networks = tuple(
        RunSpec(
            kind=NETWORKS,
            figure=f"networks/{arch}{'-bn' if bn else ''}",
            label=f"{arch}{' BN' if bn else ''}",
            architecture=arch,
            config=base_config(quick, hidden=hidden, batch_norm=bn),
            data=data,
        )
        for arch, hidden in pub.ARCHITECTURES.items()
        for bn in (False, True)
    )
    init = tuple(
        RunSpec(
            kind=INIT,
            figure=f"init/{arch}{'-bn' if bn else ''}/{pub.sigma_label(sigma)}",
            label=f"{arch}{' BN' if bn else ''}, σ = {sigma:g}",
            architecture=arch,
            config=base_config(
                quick,
                hidden=hidden,
                batch_norm=bn,
                lam=pub.SEARCH_LAMBDA,
                init=pub.sigma_label(sigma),
            ),
            data=data,
        )
        for bn in (True, False)
        for arch, hidden in pub.ARCHITECTURES.items()
        for sigma in pub.SIGMAS
    )
    trials = QUICK_SEARCH_TRIALS if quick else FULL_SEARCH_TRIALS
    search_config = base_config(quick, hidden=pub.THREE_LAYER, batch_norm=True)
    searches = (
        SearchSpec(
            kind=SEARCH_PUBLISHED,
            label="the published stages",
            config=search_config,
            search=SearchConfig(ranges=pub.SEARCH_RANGES, trials=(trials,)),
            data=data,
        ),
        SearchSpec(
            kind=SEARCH_AUTO,
            label="kmlp's automatic narrowing",
            config=search_config,
            search=SearchConfig(
                coarse=pub.SEARCH_RANGES[0], stages=len(pub.SEARCH_RANGES), trials=(trials,)
            ),
            data=data,
        ),
    )
    return Plan(
        quick=quick,
        prefix="reproduce-quick" if quick else "reproduce",
        networks=networks,
        init=init,
        searches=searches,
        gradcheck=GradcheckSpec(depths=pub.GRADCHECK_DEPTHS),
        retrain_data=retrain_data,
        retrain_cycles=1 if quick else pub.RETRAIN_CYCLES,
    )


def lockstep_key(spec: RunSpec) -> str:
    """Runs with equal keys differ at most in λ, init or schedule: they train together."""
    shared = {name: getattr(spec.config, name) for name in SHARED_FIELDS}
    return json.dumps(
        {"kind": spec.kind, "data": spec.data.options(), **shared}, sort_keys=True, default=list
    )


def lockstep_groups(specs: Iterable[RunSpec]) -> list[tuple[RunSpec, ...]]:
    """``specs`` grouped by :func:`lockstep_key`, in order of first appearance."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(lockstep_key(spec), []).append(spec)
    return [tuple(g) for g in groups.values()]
