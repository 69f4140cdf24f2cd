"""Storage URLs, opening real SQLite/PostgreSQL storages, the cross-process lock, exports."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import optuna
import pytest
import sqlalchemy

from kmlp.storage import (
    DEFAULT_URL,
    HeartbeatSettings,
    RetrySettings,
    StorageError,
    display_url,
    open_storage,
    portable_url,
    read_export,
    resolve_url,
    storage_lock,
    write_export,
)
from kmlp.storage.transient import describe, transient_reason
from tests.helpers.databases import spawn

PG_URL = os.environ.get("KMLP_TEST_POSTGRES_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")


def test_resolve_url_order(monkeypatch):
    monkeypatch.delenv("KMLP_STORAGE", raising=False)
    assert resolve_url(None) == DEFAULT_URL == "sqlite:///kmlp.db"
    monkeypatch.setenv("KMLP_STORAGE", "sqlite:///other.db")
    assert resolve_url(None) == "sqlite:///other.db"
    assert resolve_url("sqlite:///given.db") == "sqlite:///given.db"


def test_urls_hide_passwords_and_become_portable(tmp_path, monkeypatch):
    url = "postgresql+psycopg2://user:s3cret@db.example:5432/kmlp"
    assert "s3cret" not in display_url(url)
    assert portable_url(url) == "postgresql+psycopg2://user@db.example:5432/kmlp"
    monkeypatch.chdir(tmp_path)
    assert portable_url("sqlite:///k.db") == f"sqlite:///{tmp_path / 'k.db'}"


@pytest.mark.parametrize(
    "url, message",
    [
        ("notascheme://", "no database driver"),
        ("garbage", "malformed storage URL"),
        ("postgresql://nobody@127.0.0.1:1/x", "Connection refused|could not connect|failed"),
        ("sqlite:////no/such/folder/k.db", "does not exist"),
    ],
)
def test_bad_urls_are_one_line_storage_errors(url, message):
    with pytest.raises(StorageError, match=message) as info:
        open_storage(url)
    assert "\n" not in str(info.value)


def test_readers_do_not_create_a_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(StorageError, match="no study storage"):
        open_storage(url, create=False)
    assert not (tmp_path / "missing.db").exists()


def test_sqlite_has_a_long_busy_timeout(tmp_path):
    rdb = open_storage(f"sqlite:///{tmp_path / 'k.db'}")
    with rdb.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_sqlite_writer_waits_for_a_lock_instead_of_failing(tmp_path):
    """Another connection holds the write lock for a while; Optuna's write waits it out."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    rdb = open_storage(url)
    study = optuna.create_study(storage=rdb, study_name="busy")
    blocker = sqlalchemy.create_engine(url).raw_connection()
    blocker.isolation_level = None
    blocker.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.0, lambda: blocker.execute("COMMIT")).start()
    start = time.perf_counter()
    study.set_user_attr("k", 1)  # blocks until the timer commits
    assert time.perf_counter() - start >= 0.8
    assert study.user_attrs["k"] == 1
    blocker.close()


def test_heartbeat_settings(monkeypatch):
    monkeypatch.setenv("KMLP_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("KMLP_HEARTBEAT_GRACE", "5")
    assert HeartbeatSettings.from_env() == HeartbeatSettings(interval=2, grace_period=5)
    monkeypatch.setenv("KMLP_HEARTBEAT_INTERVAL", "x")
    with pytest.raises(StorageError, match="integer"):
        HeartbeatSettings.from_env()
    with pytest.raises(StorageError, match="must exceed"):
        HeartbeatSettings(interval=5, grace_period=5)


@pytest.mark.filterwarnings("ignore::UserWarning")  # ask() with heartbeats, as kmlp does
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_storage_with_heartbeat_retries_stale_trials(tmp_path):
    rdb = open_storage(
        f"sqlite:///{tmp_path / 'k.db'}", heartbeat=HeartbeatSettings(interval=1, grace_period=2)
    )
    assert rdb.get_heartbeat_interval() == 1
    study = optuna.create_study(storage=rdb, study_name="hb")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("stage", 0)
    rdb.record_heartbeat(trial._trial_id)
    time.sleep(3.2)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials()]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    retry = study.get_trials()[1]
    assert retry.params == trial.params and retry.user_attrs["stage"] == 0


# --- riding out outages: what counts as one -----------------------------------------------


def test_retry_settings_from_env(monkeypatch):
    monkeypatch.delenv("KMLP_STORAGE_RETRY", raising=False)
    assert RetrySettings.from_env().timeout >= 120  # at least 2 minutes by default
    monkeypatch.setenv("KMLP_STORAGE_RETRY", "0")
    assert RetrySettings.from_env().timeout == 0
    for bad in ("-1", "soon", "inf", "nan"):
        monkeypatch.setenv("KMLP_STORAGE_RETRY", bad)
        with pytest.raises(StorageError, match="KMLP_STORAGE_RETRY"):
            RetrySettings.from_env()
    delays = [RetrySettings().delay(i) for i in range(12)]
    assert 0.15 < delays[0] < 0.25 and max(delays) <= 6.0


def _error_of(call) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


def test_outages_are_told_from_real_errors(tmp_path):
    refused = _error_of(
        lambda: sqlalchemy.create_engine("postgresql://nobody@127.0.0.1:1/x").connect()
    )
    assert transient_reason(refused) is not None
    url = f"sqlite:///{tmp_path / 'k.db'}"
    locker = sqlalchemy.create_engine(url).raw_connection()
    locker.execute("CREATE TABLE t (x)")
    locker.commit()
    locker.execute("BEGIN EXCLUSIVE")
    engine = sqlalchemy.create_engine(url, connect_args={"timeout": 0.1})
    locked = _error_of(lambda: engine.connect().exec_driver_sql("SELECT * FROM t").all())
    assert transient_reason(locked) is not None and "locked" in describe(locked)
    locker.rollback()
    locker.close()
    missing = _error_of(lambda: engine.connect().exec_driver_sql("SELECT * FROM nope").all())
    assert transient_reason(missing) is None and describe(missing) == "no such table: nope"


@needs_pg
def test_a_wrong_database_is_no_outage():
    assert PG_URL
    wrong = sqlalchemy.engine.make_url(PG_URL).set(database="kmlp_no_such_database")
    error = _error_of(lambda: sqlalchemy.create_engine(wrong).connect())
    assert transient_reason(error) is None and "does not exist" in describe(error)


def test_ctrl_c_waits_for_the_storage_call_in_progress(tmp_path):
    """Ctrl-C during a write: the write lands, then KeyboardInterrupt; no lock left held."""
    proc = spawn("interrupt-write", f"sqlite:///{tmp_path / 'k.db'}")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["interrupted after: {'k': 1}", "free"]


# --- the lock within one process ------------------------------------------------------------


def test_lock_excludes_threads_of_one_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    rdb = open_storage(url)
    inside: list[int] = []
    overlaps: list[int] = []

    def work() -> None:
        for _ in range(20):
            with storage_lock(rdb, name="t"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert overlaps == []


@needs_pg
def test_postgres_storage_opens_and_stores(tmp_path):
    rdb = open_storage(PG_URL)
    name = f"kmlp-test-{uuid.uuid4().hex[:8]}"
    try:
        study = optuna.create_study(storage=rdb, study_name=name)
        study.set_user_attr("k", [1, 2])
        assert optuna.load_study(study_name=name, storage=rdb).user_attrs["k"] == [1, 2]
    finally:
        optuna.delete_study(study_name=name, storage=rdb)


# --- export files -----------------------------------------------------------------------

CONTENT = {
    "study": "s",
    "trial": 3,
    "lambda": 0.001,
    "log10_lambda": -3.0,
    "val_accuracy": 0.5,
    "config": {"hidden": [50, 50]},
    "data": {"fingerprint": "ab"},
}


def test_export_round_trip(tmp_path):
    path = write_export(tmp_path / "best.json", CONTENT)
    document = read_export(path)
    assert document["format"] == "kmlp-export" and document["format_version"] == 1
    assert {k: document[k] for k in CONTENT} == CONTENT
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not JSON"),
        ('{"a": 1}', "not a kmlp export"),
        ("[1, 2]", "not a kmlp export"),
        (json.dumps({"format": "kmlp-export", "format_version": 99}), "version 99"),
        (json.dumps({"format": "kmlp-export", "format_version": 1}), "missing"),
    ],
)
def test_read_export_refuses_other_files(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(StorageError, match=message):
        read_export(path)


def test_read_export_missing_file(tmp_path):
    with pytest.raises(StorageError, match="no such export file"):
        read_export(tmp_path / "nope.json")


def test_write_export_into_missing_folder(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        write_export(tmp_path / "no" / "best.json", CONTENT)
