"""Worker planning (pure), search configuration, median pruning rule, resume diffs."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from kmlp.study.config import SearchConfig, parse_ranges, parse_trials
from kmlp.study.errors import StudyError
from kmlp.study.plan import Claim, CloseStage, Done, OpenStage, Wait, next_action
from kmlp.study.pruning import is_decision_step, median_rule
from kmlp.study.record import StageRecord, TrialInfo
from kmlp.study.resume import differences

C, P, R, W, F = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.RUNNING,
    TrialState.WAITING,
    TrialState.FAIL,
)
SEARCH = SearchConfig(coarse=(-5, -1), stages=2, trials=(3, 2), top_k=2)
STAGE0 = StageRecord(stage=0, low=-5.0, high=-1.0, n_trials=3, derived_from="coarse")
STAGE0_DONE = STAGE0.closed(best=None, at="2025-01-01T00:00:00+00:00")
STAGE1 = StageRecord(stage=1, low=-3.0, high=-2.0, n_trials=2, derived_from="top-k")


def t(number, stage, state, value=None, x=None):
    return TrialInfo(number=number, stage=stage, state=state, value=value, log10_lambda=x)


PLAN_CASES = [
    ("nothing yet: open the coarse stage", [], [], OpenStage),
    ("empty stage: claim a new trial", [STAGE0], [], Claim),
    ("slots left beside running trials", [STAGE0], [t(0, 0, R), t(1, 0, C, 0.5, -3)], Claim),
    ("every slot running: wait", [STAGE0], [t(0, 0, R), t(1, 0, R), t(2, 0, C, 0.5, -3)], Wait),
    (
        "a failed trial frees its slot",
        [STAGE0],
        [t(0, 0, F), t(1, 0, R), t(2, 0, C, 0.5, -3)],
        Claim,
    ),
    (
        "a queued retry is claimed even though slots are full",
        [STAGE0],
        [t(0, 0, F), t(1, 0, R), t(2, 0, C, 0.5, -3), t(3, 0, W, None, -2)],
        Claim,
    ),
    (
        "budget met with pruned trials: close the stage",
        [STAGE0],
        [t(0, 0, C, 0.5, -3), t(1, 0, P, 0.1, -4.9), t(2, 0, C, 0.4, -2)],
        CloseStage,
    ),
    (
        "closed stage, another to go: open it",
        [STAGE0_DONE],
        [t(0, 0, C, 0.5, -3), t(1, 0, P), t(2, 0, C, 0.4, -2)],
        OpenStage,
    ),
    ("last stage closed: done", [STAGE0_DONE, STAGE1.closed(best=None, at="now")], [], Done),
    (
        "trials without a stage (not kmlp's) do not count",
        [STAGE0],
        [t(0, None, C, 0.9, -3), t(1, None, R), t(2, None, C, 0.1, -3)],
        Claim,
    ),
]


@pytest.mark.parametrize("name, stages, trials, kind", PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_next_action_table(name, stages, trials, kind):
    action = next_action(stages=stages, trials=trials, search=SEARCH)
    assert isinstance(action, kind)


def test_wait_counts_the_running_trials():
    trials = [t(0, 0, R), t(1, 0, R), t(2, 0, C, 0.5, -3)]
    assert next_action(stages=[STAGE0], trials=trials, search=SEARCH) == Wait(0, running=2)


def test_claim_pops_waiting_retry():
    trials = [t(0, 0, F), t(1, 0, W, None, -2)]
    assert next_action(stages=[STAGE0], trials=trials, search=SEARCH) == Claim(0, waiting=True)
    assert next_action(stages=[STAGE0], trials=[], search=SEARCH) == Claim(0, waiting=False)


def test_close_stage_names_its_best_completed_trial():
    trials = [t(0, 0, C, 0.5, -3), t(1, 0, P, 0.9, -4.9), t(2, 0, C, 0.6, -2)]
    action = next_action(stages=[STAGE0], trials=trials, search=SEARCH)
    assert action == CloseStage(stage=0, best=trials[2])


def test_open_following_stage_narrows_from_top_k():
    trials = [t(0, 0, C, 0.5, -3.0), t(1, 0, C, 0.6, -2.0), t(2, 0, C, 0.1, -4.9)]
    action = next_action(stages=[STAGE0_DONE], trials=trials, search=SEARCH)
    record = action.record
    assert record.stage == 1 and record.n_trials == 2
    assert record.derived_from == "top-k"
    assert record.top_k_trials == (1, 0) and record.top_k_span == (-3.0, -2.0)
    assert record.low == pytest.approx(-3.4) and record.high == pytest.approx(-1.6)


def test_best_at_the_coarse_edge_extends_the_next_stage_past_it():
    # best trial -1.1 lies in the outer tenth [-1.4, -1] of the coarse range [-5, -1]
    trials = [t(0, 0, C, 0.5, -3.0), t(1, 0, C, 0.6, -1.1), t(2, 0, C, 0.1, -4.9)]
    record = next_action(stages=[STAGE0_DONE], trials=trials, search=SEARCH).record
    assert record.extended is True and record.to_dict()["extended"] is True
    assert record.high > -1.0 and record.low > -5.0 and record.low <= -1.1 <= record.high
    assert record.high - record.low == pytest.approx(0.8 * 4)  # strictly narrower
    assert "EXTENDED" in record.how(STAGE0) and "past log10 λ -1.000" in record.how(STAGE0)
    # the same best trial inside the range (not in the outer tenth): nests, not extended
    inner = [t(0, 0, C, 0.5, -3.0), t(1, 0, C, 0.6, -1.5), t(2, 0, C, 0.1, -4.9)]
    nested = next_action(stages=[STAGE0_DONE], trials=inner, search=SEARCH).record
    assert nested.extended is False and -5.0 <= nested.low < nested.high <= -1.0


def test_a_side_inside_the_searched_extent_never_extends():
    # stage 1 [-3, -2] lies inside the coarse range: its edge -2 is not the searched edge
    search = SearchConfig(coarse=(-5, -1), stages=3, trials=(3, 2, 2), top_k=2)
    stages = [STAGE0_DONE, STAGE1.closed(best=None, at="now")]
    trials = [t(0, 0, C, 0.5, -2.5), t(1, 1, C, 0.6, -2.01), t(2, 1, C, 0.55, -2.6)]
    record = next_action(stages=stages, trials=trials, search=search).record
    assert record.extended is False and -3.0 <= record.low < record.high <= -2.0


def test_open_first_and_following_manual_stages():
    search = SearchConfig(ranges=((-5, -1), (-3, -1), (-3, -2)), trials=(4,))
    first = next_action(stages=[], trials=[], search=search).record
    assert first.to_dict() == {
        "stage": 0, "low": -5.0, "high": -1.0, "n_trials": 4, "derived_from": "manual"
    }  # fmt: skip
    done = [first.closed(best=None, at="now")]
    second = next_action(stages=done, trials=[], search=search).record
    assert (second.low, second.high, second.derived_from) == (-3.0, -1.0, "manual")


def test_search_config_budgets_and_round_trip():
    search = SearchConfig(stages=3, trials=(20, 10, 5))
    assert [search.budget(i) for i in range(3)] == [20, 10, 5]
    assert SearchConfig(trials=(7,)).budget(2) == 7
    assert SearchConfig.from_dict(search.to_dict()) == search
    manual = SearchConfig(ranges=((-5, -1), (-3, -2)))
    assert manual.stages == 2 and manual.coarse == (-5.0, -1.0)
    assert SearchConfig.from_dict(manual.to_dict()) == manual


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"coarse": (-1, -5)}, "low must be < high"),
        ({"coarse": (-2, -2)}, "low must be < high"),
        ({"ranges": ((-5, -1), (-2, -3))}, "range 1"),
        ({"sampler": "grid"}, "unknown sampler"),
        ({"stages": 3, "trials": (5, 5)}, "one per stage"),
        ({"trials": (0,)}, "budgets must be from 1 to 100000"),
        ({"trials": (100_001,)}, "budgets must be from 1 to 100000"),
        ({"stages": 101}, "stages must be from 1 to 100"),
        ({"top_k": 100_001}, "top-k"),
        ({"coarse": (-40, 1)}, "within \\[-30, 10\\]"),
        ({"ranges": ((-5, -1), (1, 11))}, "range 1 1,11: log10 lambda must be within"),
        ({"ranges": ()}, "at least one range"),
        ({"top_k": 0}, "top-k"),
        ({"margin": 0.0}, "margin"),
        ({"coarse": (float("nan"), 1)}, "finite"),
    ],
)
def test_search_config_rejects_bad_input(kwargs, message):
    with pytest.raises(StudyError, match=message):
        SearchConfig(**kwargs)


def test_parse_ranges_and_trials():
    assert parse_ranges("-5,-1;-3,-1;-3,-2") == ((-5, -1), (-3, -1), (-3, -2))
    assert parse_trials("20") == (20,) and parse_trials("20,10,10") == (20, 10, 10)
    for bad in ("-5", "-5,-1,-2", "a,b", ";"):
        with pytest.raises(StudyError):
            parse_ranges(bad)
    for bad in ("0", "x", "", "3,-1", "20,", "1e3", "٣", "9" * 5000, "100001"):
        with pytest.raises(StudyError):
            parse_trials(bad)


MEDIAN_CASES = [
    ("below the median", 0.30, 20, 5, True),
    ("above the median", 0.50, 20, 5, False),
    ("too few peers", 0.10, 20, 6, False),
    ("no peer reported this step", 0.10, 15, 1, False),
    ("not a number", float("nan"), 20, 1, False),
]


@pytest.mark.parametrize(
    "name, value, step, n_startup, expected", MEDIAN_CASES, ids=[c[0] for c in MEDIAN_CASES]
)
def test_median_rule(name, value, step, n_startup, expected):
    peers = [{10: 0.3, 20: v} for v in (0.35, 0.40, 0.45, 0.50, 0.60)]
    assert median_rule(value=value, step=step, peers=peers, n_startup=n_startup) is expected


# (name, step, previous checkpoint, warm-up steps, cycle steps, decides?)
DECISION_CASES = [
    ("checkpoint exactly at the warm-up end", 4500, 4050, 4500, 4500, True),
    ("first checkpoint after the warm-up end", 12, 8, 10, 20, True),
    ("checkpoint after the decision point", 4950, 4500, 4500, 4500, False),
    ("during the warm-up", 4050, 3600, 4500, 4500, False),
    ("next cycle end", 9000, 8550, 4500, 4500, True),
    ("mid-cycle after a decision", 32, 28, 10, 20, True),
    ("no warm-up: the first checkpoint decides", 4, -1, 0, 20, True),
]


@pytest.mark.parametrize(
    "name, step, previous, warmup, cycle, expected",
    DECISION_CASES,
    ids=[c[0] for c in DECISION_CASES],
)
def test_decision_points(name, step, previous, warmup, cycle, expected):
    got = is_decision_step(
        step=step, previous_step=previous, warmup_steps=warmup, cycle_steps=cycle
    )
    assert got is expected


def test_differences_name_keys_and_ignore_placeholders():
    stored = {"config": {"hidden": [50, 50], "lam": 0.005, "cycles": 2}, "data": {"source": "a"}}
    given = {"config": {"hidden": (50, 30), "lam": 0.1, "cycles": 2}, "data": {"source": "b"}}
    diffs = differences(stored, given)
    assert len(diffs) == 1 and diffs[0].startswith("config.hidden")
    assert differences(stored, {**stored, "search": {"top_k": 5}}) == [
        "search.top_k: stored None, given 5"
    ]
