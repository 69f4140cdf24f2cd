"""The storage lock with a lease, in real processes on real SQLite, PostgreSQL and the proxy."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from kmlp.storage import (
    Liveness,
    LockLost,
    LockSettings,
    StorageError,
    open_storage,
    storage_lock,
    study_names,
)
from kmlp.storage.locks import lock_study_name
from tests.helpers.databases import PG_URL, needs_pg, spawn, storage_proxy, wait_for

LEASE = 2.0  # seconds; processes start in 1-3 s on a busy machine, SIGSTOP lasts longer


@contextlib.contextmanager
def backend_url(kind: str, tmp_path: Path, lock: str) -> Iterator[str]:
    """A study storage of ``kind``: a SQLite file, PostgreSQL, or the proxy on SQLite.

    On the shared PostgreSQL, the study holding ``lock``'s tickets is deleted afterwards.
    """
    sqlite = f"sqlite:///{tmp_path / 'lock.db'}"
    if kind == "sqlite":
        open_storage(sqlite).close()
        yield sqlite
    elif kind == "postgresql":
        if not PG_URL:
            pytest.skip("set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")
        try:
            yield PG_URL
        finally:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=lock_study_name(lock), storage=PG_URL)
    else:
        with storage_proxy(sqlite) as url:
            yield url


def _lines(path: Path) -> dict[str, float]:
    """The status file of a storage_procs process: word -> time."""
    if not path.exists():
        return {}
    return {w: float(t) for w, t in (line.split() for line in path.read_text().splitlines())}


# --- liveness: the rule that breaks a lease ---------------------------------------------


@pytest.mark.parametrize(
    "reads, stale",
    [
        # (value, started, ended) of successive reads -> stale after the last?
        ([(1, 0.0, 0.1), (1, 1.0, 1.1)], False),
        ([(1, 0.0, 0.1), (1, 2.1, 2.2)], True),  # same value for a lease since a read ended
        ([(1, 0.0, 0.1), (1, 2.05, 2.2)], False),  # the later read started too early
        ([(1, 0.0, 0.1), (2, 1.0, 1.1), (2, 3.0, 3.1)], False),  # renewed at 1.0: 1.9 s
        ([(1, 0.0, 0.1), (2, 1.0, 1.1), (2, 3.2, 3.3)], True),
        ([(1, 0.0, 0.1), (2, 5.0, 5.1)], False),  # a change is never stale
    ],
)
def test_liveness_judges_by_unchanged_values_over_a_lease(reads, stale):
    watch = Liveness(lease=2.0)
    results = [watch.observe("t", v, started=s, ended=e) for v, s, e in reads]
    assert results[-1] is stale
    assert not any(results[:-1])


def test_liveness_reset_forgets_what_was_seen():
    watch = Liveness(lease=1.0)
    watch.observe("t", 1, started=0.0, ended=0.0)
    watch.reset()  # e.g. our own outage: we did not watch
    assert not watch.observe("t", 1, started=5.0, ended=5.0)
    assert watch.observe("t", 1, started=6.0, ended=6.0)


# --- exclusion -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "proxy"])
def test_lock_excludes_other_processes(kind, tmp_path):
    counter = tmp_path / "counter.txt"
    counter.write_text("0")
    name = f"count-{uuid.uuid4().hex[:8]}"
    with backend_url(kind, tmp_path, name) as url:
        procs = [spawn("count", url, name, str(counter), "15") for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    assert int(counter.read_text()) == 3 * 15


def test_lock_study_is_hidden_from_study_lists(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'k.db'}")
    optuna.create_study(study_name="visible", storage=storage)
    with storage_lock(storage, name="visible"):
        pass
    assert study_names(storage) == ["visible"]
    assert [s.study_name for s in storage.get_all_studies()] == ["visible"]
    # ... but it is an ordinary Optuna study for Optuna itself (one ticket, released).
    raw = optuna.storages.RDBStorage(storage.url)
    tickets = optuna.load_study(study_name="kmlp-lock:visible", storage=raw).get_trials()
    assert [t.state.name for t in tickets] == ["COMPLETE"]
    # Deleting the study through kmlp deletes its lock's tickets too.
    optuna.delete_study(study_name="visible", storage=storage)
    assert [s.study_name for s in raw.get_all_studies()] == []


# --- leases ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "proxy"])
def test_stopped_holder_loses_the_lock_after_the_lease(kind, tmp_path):
    """SIGSTOP the holder for longer than the lease: a waiter takes over, the holder knows."""
    env = {"KMLP_LOCK_LEASE": str(LEASE)}
    name = f"lease-{uuid.uuid4().hex[:8]}"
    holder_status, waiter_status = tmp_path / "holder", tmp_path / "waiter"
    with backend_url(kind, tmp_path, name) as url:
        holder = spawn(
            "hold", url, name, "--seconds", "120", "--status", str(holder_status), env=env
        )
        try:
            wait_for(lambda: "held" in _lines(holder_status), 60, "the holder to take the lock")
            holder.send_signal(signal.SIGSTOP)
            stopped_at = time.time()
            waiter = spawn("acquire", url, name, "--status", str(waiter_status), env=env)
            _, waiter_err = waiter.communicate(timeout=120)
            assert waiter.returncode == 0, waiter_err
            acquired = _lines(waiter_status)["acquired"]
            # Taken while the holder was still stopped, and not before its lease ran out.
            assert acquired - stopped_at >= LEASE * 0.9
            assert "taking over" in waiter_err and "did not renew" in waiter_err
        finally:
            holder.send_signal(signal.SIGCONT)
        _, holder_err = holder.communicate(timeout=120)
    assert holder.returncode == 0, holder_err
    status = _lines(holder_status)
    assert "lost" in status and "released" not in status  # the woken holder saw it at once
    assert status["lost"] > acquired


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_live_holder_keeps_the_lock_beyond_the_lease(kind, tmp_path):
    """A holder that renews keeps the lock for 3 leases; the waiter waits for the release."""
    env = {"KMLP_LOCK_LEASE": "1"}
    name = f"renew-{uuid.uuid4().hex[:8]}"
    holder_status, waiter_status = tmp_path / "holder", tmp_path / "waiter"
    with backend_url(kind, tmp_path, name) as url:
        holder = spawn("hold", url, name, "--seconds", "3", "--status", str(holder_status), env=env)
        wait_for(lambda: "held" in _lines(holder_status), 60, "the holder to take the lock")
        waiter = spawn("acquire", url, name, "--status", str(waiter_status), env=env)
        _, holder_err = holder.communicate(timeout=120)
        _, waiter_err = waiter.communicate(timeout=120)
    assert holder.returncode == 0 and waiter.returncode == 0, (holder_err, waiter_err)
    held, waited = _lines(holder_status), _lines(waiter_status)
    assert "released" in held and "lost" not in held
    assert waited["waiting"] < held["released"] <= waited["acquired"]
    assert "taking over" not in waiter_err


def test_check_raises_lock_lost_once_broken(tmp_path):
    """In one process: a ticket broken by another (as a waiter would) fails check()."""
    storage = open_storage(f"sqlite:///{tmp_path / 'k.db'}")
    with pytest.raises(LockLost, match="lost the storage lock 'x'"):
        with storage_lock(storage, name="x", settings=LockSettings(lease=5)) as lock:
            lock.check()
            storage.set_trial_state_values(lock.ticket_id, optuna.trial.TrialState.FAIL)
            lock.check()
    assert lock.lost
    # The next acquisition is not blocked by the broken ticket.
    with storage_lock(storage, name="x") as again:
        again.check()


def test_lock_settings_from_env(monkeypatch):
    monkeypatch.setenv("KMLP_LOCK_LEASE", "7.5")
    assert LockSettings.from_env().lease == 7.5
    for bad in ("0", "-1", "x", "inf"):
        monkeypatch.setenv("KMLP_LOCK_LEASE", bad)
        with pytest.raises(StorageError, match="KMLP_LOCK_LEASE"):
            LockSettings.from_env()


@needs_pg
def test_lock_through_a_read_only_storage_is_refused():
    storage = open_storage(PG_URL, read_only=True)
    with pytest.raises(StorageError, match="read-only"):
        with storage_lock(storage, name=f"ro-{uuid.uuid4().hex[:8]}"):
            pass
