"""The one record of a study: the best-trial rule, stage records, the summary computed once.

Studies are made by the library's ``launch`` (synthetic data, one worker); the records
read here are the ones the worker wrote.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from kmlp.network import TrainConfig
from kmlp.study import SearchConfig, launch, study_summary
from kmlp.study.config import SearchConfig as Search
from kmlp.study.plan import first_stage, following_stage
from kmlp.study.record import (
    METRIC_NAME,
    PARAM,
    StageRecord,
    TrialInfo,
    best_trial,
    stage_records,
    trial_infos,
)
from kmlp.study.summary import summarize
from kmlp.study.tables import format_summary
from tests.helpers.studies import HEARTBEAT, SyntheticSource

C, P, F, R = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING


def t(number: int, stage: int | None, state: TrialState, value=None, x=None) -> TrialInfo:
    return TrialInfo(number=number, stage=stage, state=state, value=value, log10_lambda=x)


# (name, trials, stage, expected best trial number or None)
BEST_CASES = [
    ("no trial", [], None, None),
    ("highest value wins", [t(0, 0, C, 0.4, -3), t(1, 0, C, 0.5, -2)], None, 1),
    ("ties go to the earliest trial", [t(0, 0, C, 0.5, -3), t(1, 0, C, 0.5, -2)], None, 0),
    ("a pruned trial never wins", [t(0, 0, C, 0.4, -3), t(1, 0, P, 0.9, -2)], None, 0),
    ("failed and running trials never win", [t(0, 0, F), t(1, 0, R)], None, None),
    ("trials kmlp did not make are ignored", [t(0, None, C, 0.9, -3)], None, None),
    ("a trial without its lambda is ignored", [t(0, 0, C, 0.9, None)], None, None),
    ("of one stage", [t(0, 0, C, 0.9, -3), t(1, 1, C, 0.5, -2), t(2, 1, C, 0.6, -2.5)], 1, 2),
    ("of the whole study", [t(0, 0, C, 0.9, -3), t(1, 1, C, 0.5, -2)], None, 0),
]


@pytest.mark.parametrize(
    "name, trials, stage, expected", BEST_CASES, ids=[c[0] for c in BEST_CASES]
)
def test_best_trial_rule(name, trials, stage, expected) -> None:
    best = best_trial(trials, stage)
    assert (best.number if best else None) == expected


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, str]:
    """A 3-stage study (6, 4, 3 trials, top-k 3) launched on synthetic data; its output."""
    folder = tmp_path_factory.mktemp("record")
    out = io.StringIO()
    study = launch(
        study_name="rec",
        storage_url=f"sqlite:///{folder / 'k.db'}",
        train_config=TrainConfig(hidden=(10,), n_s=10, cycles=1),
        search=SearchConfig(stages=3, trials=(6, 4, 3), top_k=3, prune=False),
        data=SyntheticSource()(),
        heartbeat=HEARTBEAT,
        out=out,
    )
    return study, out.getvalue()


def test_stored_stage_records_round_trip(launched) -> None:
    study, _ = launched
    stored = study.user_attrs["stages"]
    records = stage_records(stored)
    assert [r.to_dict() for r in records] == stored  # the exact keys the worker wrote
    assert [r.derived_from for r in records] == ["coarse", "top-k", "top-k"]
    assert all(r.completed and r.created_at and r.completed_at for r in records)
    # a newer kmlp's keys survive being read and written back by this one
    newer = {**stored[1], "spread": [-3.1, -2.2], "note": "x"}
    again = StageRecord.from_dict(newer)
    assert again.to_dict() == newer and again.extra == {"spread": [-3.1, -2.2], "note": "x"}
    # extended is a field of the record: narrowed stages say whether they left the range
    assert records[0].extended is None and "extended" not in stored[0]
    assert all(isinstance(d["extended"], bool) for d in stored[1:])


def test_summary_is_computed_once_from_the_study(launched) -> None:
    study, _ = launched
    summary = study_summary(study)
    trials = study.get_trials()
    assert summary.name == "rec" and summary.finished
    assert (summary.trials_done, summary.trials_total) == (13, 13)
    assert (summary.stages_done, summary.stages_total) == (3, 3)
    assert summary.best is not None and summary.best.number == study.best_trial.number
    for stage, record in zip(summary.stages, study.user_attrs["stages"], strict=True):
        mine = [tr for tr in trials if tr.user_attrs["stage"] == stage.stage]
        assert stage.budget == record["n_trials"] == stage.done == len(mine)
        assert [p.number for p in stage.points] == [tr.number for tr in mine]
        assert [p.log10_lambda for p in stage.points] == [tr.params[PARAM] for tr in mine]
        best = max(mine, key=lambda tr: (tr.value, -tr.number))
        assert stage.best is not None and stage.best.number == best.number == record["best_trial"]
    # the objective is named in the study itself (optuna-dashboard shows it)
    assert study.metric_names == [METRIC_NAME]
    as_json = json.loads(json.dumps(summary.to_dict()))
    assert as_json["best_lambda"] == pytest.approx(10 ** study.best_trial.params[PARAM])
    assert [s["how"] for s in as_json["stages"]] == [s.how for s in summary.stages]
    assert as_json["progress"] == {
        "trials_done": 13, "trials_total": 13, "stages_done": 3, "stages_total": 3,
        "failed": 0, "running": 0,
    }  # fmt: skip


def test_how_each_range_was_chosen(launched) -> None:
    study, out = launched
    summary = study_summary(study)
    first, second, _ = summary.stages
    assert first.how == "the search's coarse range, [-5, -1] as configured"
    top = second.record.top_k_trials
    assert top is not None and len(top) == 3
    lo, hi = second.record.top_k_span or (0, 0)
    trials = f"the best 3 completed trials so far ({', '.join(f'#{n}' for n in top)})"
    if second.record.extended:  # the best trial lay in the outer tenth at the edge
        assert second.how.startswith(f"EXTENDED: {trials}; the best, #{top[0]}")
        assert second.record.high > first.high or second.record.low < first.low
    elif second.record.capped:
        assert second.how.startswith(f"{trials} spread over log10 λ {lo:.3f} to {hi:.3f}")
    else:
        assert second.how.startswith(f"the span of {trials}, log10 λ {lo:.3f} to {hi:.3f}")
        assert "widened by 0.1 x stage 0's width (0.400) on each side" in second.how
    # the same sentence in the stage table and in the progress line that opened the stage
    assert f"  stage 1: {second.how}" in format_summary(summary)
    assert f"range: {second.how}" in out


def test_a_capped_range_says_so() -> None:
    # The best trials spread over the whole range: the narrowing caps it (plan's own code).
    search = Search(stages=2, trials=(3, 3), top_k=3)
    stage0 = first_stage(search).closed(best=None, at="now")
    trials = [t(0, 0, C, 0.5, -4.9), t(1, 0, C, 0.6, -3.0), t(2, 0, C, 0.55, -1.1)]
    stage1 = following_stage(search, stages=[stage0], trials=trials)
    assert stage1.capped
    how = stage1.how(stage0)
    assert "too wide to narrow" in how and "centred on the best, #1" in how
    assert "80% of stage 0's width" in how


def test_summary_while_running_and_for_a_foreign_study(tmp_path: Path) -> None:
    records = [StageRecord(stage=0, low=-5, high=-1, n_trials=3, derived_from="coarse")]
    attrs = {
        "stages": [r.to_dict() for r in records],
        "search": SearchConfig(stages=2, trials=(3, 2)).to_dict(),
    }
    trials = [t(0, 0, C, 0.4, -3), t(1, 0, R, None, -2), t(2, 0, F, None, -4)]
    summary = summarize(name="s", user_attrs=attrs, trials=trials)
    assert not summary.finished and summary.trials_total == 5 and summary.trials_done == 1
    (stage,) = summary.stages
    assert (stage.complete, stage.running, stage.failed) == (1, 1, 1)
    assert "best so far: trial #0" in format_summary(summary)
    assert "1 running, 1 failed (rerun)" in format_summary(summary)
    # a plain Optuna study in the same storage: no stages, nothing planned
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="plain")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    plain = summarize(name="plain", user_attrs=study.user_attrs, trials=trial_infos(study))
    assert plain.stages == () and plain.stages_total is None and plain.best is None
