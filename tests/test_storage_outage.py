"""Database outages, made real: a TCP forwarder between kmlp and PostgreSQL that the test cuts."""

from __future__ import annotations

import time
import uuid

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from kmlp.storage import (
    HeartbeatSettings,
    LockSettings,
    RetrySettings,
    StorageError,
    open_storage,
    storage_lock,
)
from kmlp.storage.resilient import TOKEN_KEY
from tests.helpers.databases import PG_URL, needs_pg, spawn, wait_for
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = needs_pg


@pytest.fixture
def proxy():
    assert PG_URL
    with TcpProxy.for_url(PG_URL) as p:
        yield p


@pytest.fixture
def study_name():
    name = f"kmlp-outage-{uuid.uuid4().hex[:8]}"
    yield name
    try:  # through kmlp: its lock's tickets go too
        optuna.delete_study(study_name=name, storage=open_storage(PG_URL))
    except KeyError:
        pass


def _password_url(proxy: TcpProxy) -> str:
    """The proxied URL with a password (trust auth ignores it) that must never be shown."""
    url = sqlalchemy.engine.make_url(proxy.url(PG_URL))
    return url.set(password="S3cretPW").render_as_string(hide_password=False)


def test_two_workers_ride_out_a_12_s_outage(proxy, study_name):
    """Cut every connection for 12 s mid-run: calls stall, then the budget is met exactly."""
    url = _password_url(proxy)
    optuna.create_study(study_name=study_name, storage=open_storage(url), direction="maximize")
    env = {"KMLP_STORAGE_RETRY": "90", "KMLP_LOCK_LEASE": "10"}
    budget = 40
    workers = [spawn("trials", url, study_name, "--budget", str(budget), env=env) for _ in range(2)]
    storage = open_storage(PG_URL)
    study = optuna.load_study(study_name=study_name, storage=storage)
    wait_for(lambda: len(study.get_trials(deepcopy=False)) >= 8, 120, "8 trials before the cut")
    cut_at = time.time()
    proxy.cut_for(12.0).join()
    results = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err
        notes = [line for line in err.splitlines() if line.strip()]
        # Said once what it waits for, naming the database without its password.
        assert len(notes) == 1 and "unreachable" in notes[0], err
        assert f"127.0.0.1:{proxy.port}/test" in notes[0] and "S3cretPW" not in err
        # Its calls stalled across the cut: no trial finished during it.
        times = [float(line.split()[2]) for line in out.splitlines()]
        assert not any(cut_at + 1 < t < cut_at + 11.5 for t in times), times
        assert any(t > cut_at + 12 for t in times)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == budget  # exact: nothing lost, nothing over
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # A FAIL trial can only be a duplicate kmlp failed itself (same token as a kept one).
    kept = {t.system_attrs[TOKEN_KEY] for t in complete}
    assert all(t.system_attrs.get(TOKEN_KEY) in kept for t in trials if t.state == TrialState.FAIL)
    assert proxy.resets > 0


def test_giving_up_names_the_database(proxy, capsys):
    url = _password_url(proxy)
    storage = open_storage(url, retry=RetrySettings(timeout=2, first_delay=0.1, max_delay=0.5))
    storage.get_all_studies()
    proxy.cut()
    with pytest.raises(StorageError) as info:
        storage.get_all_studies()
    message = str(info.value)
    assert message.startswith(
        f"lost the study storage postgresql://postgres:***@127.0.0.1:{proxy.port}/test"
    )
    assert "unreachable for 2 s" in message and "KMLP_STORAGE_RETRY" in message
    assert "\n" not in message and "S3cretPW" not in message
    assert "exceeding max length" not in message
    err = capsys.readouterr().err
    assert err.count("unreachable") == 1 and "S3cretPW" not in err


# --- a connection lost between the server's commit and the client's acknowledgement --------


def test_no_duplicate_trial_when_the_commit_reply_is_lost(proxy, study_name):
    storage = open_storage(proxy.url(PG_URL))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
    proxy.drop_after(b"COMMIT")
    trial_id = storage.create_new_trial(study_id)
    assert proxy.drops == 1  # the fault happened: the server committed, the client saw an error
    trials = storage.get_all_trials(study_id)
    assert [t._trial_id for t in trials if t.state == TrialState.RUNNING] == [trial_id]
    # Optuna's own retry made a second trial; kmlp failed the extra one.
    assert all(t.state == TrialState.FAIL for t in trials if t._trial_id != trial_id)

    # Without kmlp's wrapper, the same fault leaves two RUNNING trials.
    raw = optuna.storages.RDBStorage(proxy.url(PG_URL))
    proxy.drop_after(b"COMMIT")
    raw.create_new_trial(study_id)
    assert proxy.drops == 2
    running = [t for t in raw.get_all_trials(study_id) if t.state == TrialState.RUNNING]
    assert len(running) == 3


def test_finished_result_is_kept_when_the_commit_reply_is_lost(proxy, study_name):
    storage = open_storage(proxy.url(PG_URL))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
    trial_id = storage.create_new_trial(study_id)
    proxy.drop_after(b"COMMIT")
    assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.625]) is True
    assert proxy.drops == 1
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.COMPLETE and trial.values == [0.625]

    # Optuna alone reports the landed commit as a failure ("... exceeding max length").
    raw = optuna.storages.RDBStorage(proxy.url(PG_URL))
    other = raw.create_new_trial(study_id)
    proxy.drop_after(b"COMMIT")
    with pytest.raises(optuna.exceptions.StorageInternalError, match="max length"):
        raw.set_trial_state_values(other, TrialState.COMPLETE, [0.5])
    assert raw.get_trial(other).state == TrialState.COMPLETE


def test_queued_trial_is_taken_once_when_the_commit_reply_is_lost(proxy, study_name):
    storage = open_storage(proxy.url(PG_URL))
    study = optuna.create_study(study_name=study_name, storage=storage)
    study.enqueue_trial({"x": 1.0})
    (waiting,) = study.get_trials(deepcopy=False)
    proxy.drop_after(b"COMMIT")
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING) is True
    assert proxy.drops == 1
    assert storage.get_trial(waiting._trial_id).state == TrialState.RUNNING


def test_lock_rides_out_an_outage_longer_than_its_lease(proxy, study_name, tmp_path):
    """Holder and waiter both cut off for 4 leases: the lease is not broken for it."""
    url = proxy.url(PG_URL)
    retry = RetrySettings(timeout=60, first_delay=0.1, max_delay=1.0)
    storage = open_storage(url, retry=retry)
    status = tmp_path / "waiter"
    with storage_lock(storage, name=study_name, settings=LockSettings(lease=2)) as lock:
        waiter = spawn("acquire", url, study_name, "--status", str(status), env=_LEASE_2)
        wait_for(lambda: status.exists(), 60, "the waiter to queue")
        time.sleep(1.0)
        proxy.cut_for(8.0).join()
        lock.check()  # stalls until the database is back, then passes
        time.sleep(3.0)  # over a lease after the outage: the waiter watches us renew
        lock.check()
        released = time.time()
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert not lock.lost
    assert float(status.read_text().split()[-1]) >= released
    assert "taking over" not in err


_LEASE_2 = {"KMLP_LOCK_LEASE": "2"}


@pytest.mark.filterwarnings("ignore::UserWarning")  # ask() with heartbeats, as kmlp does
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_no_trial_is_stale_right_after_our_own_outage(proxy, study_name):
    """An outage longer than the grace period stops every heartbeat; a worker back from it
    does not fail the trials of the others, who are coming back too."""
    beats = HeartbeatSettings(interval=1, grace_period=2)
    retry = RetrySettings(timeout=60, first_delay=0.1, max_delay=0.5)
    storage = open_storage(proxy.url(PG_URL), heartbeat=beats, retry=retry)
    study = optuna.create_study(study_name=study_name, storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    proxy.cut_for(4.0)
    storage.get_all_studies()  # stalls through the outage
    never_cut = open_storage(PG_URL, heartbeat=beats)
    assert never_cut._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    assert storage._get_stale_trial_ids(study._study_id) == []
    optuna.storages.fail_stale_trials(study)
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
