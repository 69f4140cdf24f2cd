"""kmlp's stale-trial reaper (``study.reaper``): through any storage, on the observer's clock.

In-process through a real ``kmlp storage-proxy`` (where Optuna's own heartbeat does not
exist) and on PostgreSQL through a TCP forwarder cut for an outage. The SIGKILLed-worker
case through the proxy with real ``kmlp launch`` / ``kmlp worker`` processes is in
``test_load_faults.py``.
"""

from __future__ import annotations

import time
import uuid
import warnings

import optuna
from optuna.trial import TrialState

from kmlp.storage import HeartbeatSettings, open_storage
from kmlp.study.heartbeat import Heartbeat
from kmlp.study.reaper import ALIVE_KEY, Reaper, mark_alive
from tests.helpers.databases import PG_URL, needs_pg, storage_proxy
from tests.helpers.tcp_proxy import TcpProxy

BEATS = HeartbeatSettings(interval=1, grace_period=2, max_retry=1)


def _ask(study: optuna.Study, stage: int) -> optuna.Trial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    trial.set_user_attr("stage", stage)
    trial.suggest_float("log10_lambda", -5, -1)
    return trial


def _reap_until(reaper: Reaper, study: optuna.Study, seconds: float) -> list[int]:
    """Call the reaper every 0.2 s for ``seconds``; all trials it failed."""
    failed: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        failed += reaper.reap(study)
        time.sleep(0.2)
    return failed


def test_silent_trials_are_reaped_and_rerun_beaten_ones_kept(tmp_path):
    """Through the proxy (no Optuna heartbeat there): a trial never beaten and one marked
    once are failed and rerun after the grace period; a beaten one is left running."""
    with storage_proxy(f"sqlite:///{tmp_path / 'k.db'}") as url:
        _check_reaper(url)


def _check_reaper(url: str) -> None:
    storage = open_storage(url, heartbeat=BEATS)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    never_beaten = _ask(study, 0)  # its worker died between creating it and any beat
    marked_once = _ask(study, 1)  # created and marked, then its worker died
    mark_alive(storage, marked_once._trial_id)
    alive = _ask(study, 0)
    mark_alive(storage, alive._trial_id)
    reaper = Reaper(storage, "s", BEATS)
    with Heartbeat(storage, [alive._trial_id], BEATS.interval):
        assert reaper.reap(study) == []  # first look: nothing watched yet
        failed = _reap_until(reaper, study, 2 * BEATS.grace_period + 1)
    assert sorted(failed) == sorted([never_beaten.number, marked_once.number])
    trials = study.get_trials(deepcopy=False)
    state = {t.number: t.state for t in trials}
    assert state[never_beaten.number] == state[marked_once.number] == TrialState.FAIL
    assert state[alive.number] == TrialState.RUNNING
    assert trials[alive.number].system_attrs[ALIVE_KEY][1] >= 2  # counted up by the beat
    reruns = [t for t in trials if t.state == TrialState.WAITING]
    by_origin = {t.system_attrs["failed_trial"]: t for t in reruns}
    assert set(by_origin) == {never_beaten.number, marked_once.number}
    for original in (never_beaten, marked_once):
        copy = by_origin[original.number]
        assert copy.params == original.params
        assert copy.user_attrs["stage"] == original.user_attrs["stage"]


@needs_pg
def test_a_shared_outage_fails_nothing():
    """A reaper whose own calls failed has not watched: it starts its grace period anew."""
    assert PG_URL
    name = f"kmlp-reaper-{uuid.uuid4().hex[:8]}"
    with TcpProxy.for_url(PG_URL) as tcp:
        storage = open_storage(tcp.url(PG_URL), heartbeat=BEATS)
        study = optuna.create_study(study_name=name, storage=storage)
        try:
            trial = _ask(study, 0)
            mark_alive(storage, trial._trial_id)
            reaper = Reaper(storage, name, BEATS)
            assert reaper.reap(study) == []
            time.sleep(BEATS.grace_period + 0.5)
            tcp.cut_for(1.5)  # this process cut off: the trial's silence proves nothing
            assert reaper.reap(study) == []
            assert storage.failures > 0
            time.sleep(BEATS.grace_period + 0.5)
            assert reaper.reap(study) == [trial.number]
        finally:
            optuna.delete_study(study_name=name, storage=storage)
