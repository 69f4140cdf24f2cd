"""The reproduction's plan and comparison rules, as pure functions: the published figures
as data, which runs train together, the spread a difference is judged against."""

from __future__ import annotations

import pytest

from kmlp.network import SHARED_FIELDS
from kmlp.study.reproduce import published as pub
from kmlp.study.reproduce.plan import (
    INIT,
    NETWORKS,
    RETRAIN,
    SEARCH_AUTO,
    SEARCH_PUBLISHED,
    lockstep_groups,
    make_plan,
)
from kmlp.study.reproduce.rows import binomial_spread
from kmlp.study.reproduce.tasks import group_label


def test_published_figures_are_data_with_their_section() -> None:
    keys = [f.key for f in pub.PUBLISHED]
    assert len(keys) == len(set(keys)) >= 14
    sections = {f.section for f in pub.PUBLISHED}
    assert sections == {
        "Gradient check",
        "Test accuracy",
        "Coarse-to-fine search",
        "Sensitivity to initialisation",
    }
    assert pub.FIGURES["networks/9-layer-bn"].value == 52.0
    assert pub.FIGURES["search/lambda"].value == 0.007671
    assert pub.FIGURES["init/9-layer-bn/sigma=0.0001"].value == 50.5
    assert all(f.value is not None or f.text for f in pub.PUBLISHED)


def test_the_full_plan_is_the_published_setup() -> None:
    plan = make_plan(quick=False)
    assert plan.prefix == "reproduce"
    for spec in (*plan.networks, *plan.init):
        assert spec.data.n_train is None and spec.data.val_pool is None  # 45000 / 5000
        assert spec.config.cycles == 2 and spec.config.half_cycle(45000) == 2250
        assert spec.config.batch_size == 100
    assert {s.config.lam for s in plan.networks} == {0.005}
    assert {s.config.init for s in plan.networks} == {"he"}
    assert {s.config.lam for s in plan.init} == {pub.SEARCH_LAMBDA}
    assert {s.config.init for s in plan.init} == {"sigma=0.1", "sigma=0.001", "sigma=0.0001"}
    searches = {s.kind: s for s in plan.searches}
    assert searches[SEARCH_PUBLISHED].search.ranges == pub.SEARCH_RANGES
    assert searches[SEARCH_AUTO].search.ranges is None
    assert searches[SEARCH_AUTO].search.coarse == pub.SEARCH_RANGES[0]
    assert searches[SEARCH_AUTO].search.stages == 3
    retrain = plan.retrain("9-layer", 0.004)
    assert retrain.kind == RETRAIN and retrain.config.cycles == 3
    assert retrain.data.val_pool == 1000 and retrain.data.train_size() == 49000
    assert retrain.config.hidden == pub.NINE_LAYER and retrain.config.batch_norm


def test_quick_runs_the_same_experiments_on_small_data_for_one_cycle() -> None:
    full, quick = make_plan(quick=False), make_plan(quick=True)
    assert quick.prefix == "reproduce-quick"
    assert [s.figure for s in quick.networks] == [s.figure for s in full.networks]
    assert [s.figure for s in quick.init] == [s.figure for s in full.init]
    for spec in (*quick.networks, *quick.init, quick.retrain("3-layer", 0.01)):
        assert spec.config.cycles == 1 and spec.data.train_size() == 1000
    assert sum(s.trials() for s in quick.searches) < sum(s.trials() for s in full.searches)


def test_runs_that_differ_only_in_sigma_or_lambda_train_together() -> None:
    plan = make_plan(quick=False)
    networks = lockstep_groups(plan.networks)
    assert [len(g) for g in networks] == [1, 1, 1, 1]
    init = lockstep_groups(plan.init)
    assert [len(g) for g in init] == [3, 3, 3, 3]
    for group in init:
        for name in SHARED_FIELDS:
            assert len({getattr(s.config, name) for s in group}) == 1
        assert len({s.config.init for s in group}) == 3
    assert {g[0].kind for g in networks} == {NETWORKS} and {g[0].kind for g in init} == {INIT}


@pytest.mark.parametrize(
    ("best", "runs", "groups"),
    [
        ({SEARCH_PUBLISHED: 0.004, SEARCH_AUTO: 0.006}, 4, [2, 2]),
        ({SEARCH_PUBLISHED: 0.004, SEARCH_AUTO: 0.004}, 2, [1, 1]),  # one run serves both
        ({SEARCH_PUBLISHED: 0.004, SEARCH_AUTO: None}, 2, [1, 1]),
    ],
)
def test_retrains_of_both_searches_group_by_architecture(best, runs, groups) -> None:
    specs = make_plan(quick=False).retrains(best)
    assert len(specs) == runs
    grouped = lockstep_groups(specs)
    assert [len(g) for g in grouped] == groups
    assert [{s.architecture for s in g} for g in grouped] == [{"3-layer"}, {"9-layer"}]


@pytest.mark.parametrize(
    ("p", "n", "points"),
    [(0.5, 10000, 1.0), (0.1, 10000, 0.6), (0.53, 10000, 0.998), (0.55, 5000, 1.407)],
)
def test_the_spread_is_two_binomial_standard_errors(p, n, points) -> None:
    assert binomial_spread(p, n) == pytest.approx(points, abs=1e-3)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["3-layer BN, σ = 0.1", "3-layer BN, σ = 0.001"], "3-layer BN, σ = 0.1 / 0.001"),
        (["9-layer BN, λ = 0.004", "9-layer BN, λ = 0.006"], "9-layer BN, λ = 0.004 / 0.006"),
        (["3-layer", "9-layer"], "3-layer + 9-layer"),
    ],
)
def test_group_labels_say_the_common_part_once(labels, expected) -> None:
    plan = make_plan(quick=True)
    specs = tuple(
        type(plan.networks[0])(**{**plan.networks[0].__dict__, "label": label}) for label in labels
    )
    assert group_label(specs) == expected
