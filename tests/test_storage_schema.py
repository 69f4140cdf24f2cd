"""Creating the storage schema from many processes at once; readers that never write."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from kmlp.storage import StorageError, open_storage
from kmlp.storage.schema import OPTUNA_TABLES, inspect_schema
from tests.conftest import assert_one_line_error, run_cli
from tests.helpers.databases import PG_URL, fresh_postgres_database, needs_pg, spawn
from tests.helpers.load import FINISHED, TINY, env_for
from tests.helpers.studies import DATA


def _launch_together(url: str, n: int = 4) -> list[tuple[int, str, str]]:
    """``n`` processes open ``url`` (creating it) and one study, all at the same instant."""
    at = time.time() + 4.0  # time for every interpreter to start
    procs = [spawn("launch", url, "together", "--at", str(at)) for _ in range(n)]
    return [(p.wait(timeout=300), *p.communicate()) for p in procs]


def _assert_all_launched(results: list[tuple[int, str, str]], url: str) -> None:
    for code, out, err in results:
        assert code == 0 and out.strip() == "ok", err
    schema = inspect_schema(url)
    assert schema is not None and schema.complete
    storage = open_storage(url, read_only=True)
    assert [s.study_name for s in storage.get_all_studies()] == ["together"]


def test_launches_started_together_on_an_empty_sqlite_file(tmp_path):
    for round in range(2):  # the race is by timing: try it twice
        url = f"sqlite:///{tmp_path / f'empty{round}.db'}"
        _assert_all_launched(_launch_together(url), url)


@needs_pg
def test_launches_started_together_on_an_empty_postgres_database():
    with fresh_postgres_database() as url:
        _assert_all_launched(_launch_together(url), url)


def _two_real_launches(url: str, folder: Path) -> None:
    """Two ``kmlp launch`` of one tiny study on ``url`` started at once: both exit 0 (one
    creates the schema and the study, the other joins it) and the budgets are exact."""
    if not DATA:
        pytest.skip("set KMLP_DATA to the CIFAR-10 folder")
    args = [sys.executable, "-m", "kmlp", "launch", "--study", "twice", "--storage", url,
            "--data", DATA, *TINY, "--stages", "2", "--trials", "3", "--workers", "1",
            "--lockstep", "2", "--no-publish"]  # fmt: skip
    procs = [
        subprocess.Popen(args, cwd=folder, env=env_for(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    trials = optuna.load_study(study_name="twice", storage=open_storage(url)).get_trials()
    done = [t for t in trials if t.state in FINISHED]
    assert sorted(t.user_attrs["stage"] for t in done) == [0, 0, 0, 1, 1, 1]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


def test_two_real_launches_at_once_on_an_empty_sqlite_file(tmp_path):
    _two_real_launches(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path)


@needs_pg
def test_two_real_launches_at_once_on_an_empty_postgres_database(tmp_path):
    with fresh_postgres_database() as url:
        _two_real_launches(url, tmp_path)


# --- read-only means read-only ------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _other_application_db(path: Path) -> None:
    """A real SQLite database of another application (no Optuna tables)."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO customers (name) VALUES (?)", [("ada",), ("alan",)])
    connection.commit()
    connection.close()


FOREIGN_FILES = {
    "other-app.db": (_other_application_db, "holds no study storage"),
    "notes.txt": (lambda p: p.write_text("not a database\n" * 100), "not a SQLite database"),
    "empty.db": (lambda p: p.write_bytes(b""), "holds no study storage"),
}


@pytest.mark.parametrize("filename", sorted(FOREIGN_FILES))
def test_readers_refuse_a_file_that_is_no_study_storage_and_leave_it_unchanged(tmp_path, filename):
    make, message = FOREIGN_FILES[filename]
    path = tmp_path / filename
    make(path)
    before = _sha256(path)
    url = f"sqlite:///{path}"
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(StorageError, match=message) as info:
            open_storage(url, **kwargs)
        assert "\n" not in str(info.value)
    for command in (["studies"], ["show", "--study", "x"], ["worker", "--study", "x"]):
        result = run_cli(*command, "--storage", url, timeout=120)
        assert_one_line_error(result, message)
        assert result.code == 2
    result = run_cli("export", "--study", "x", "--storage", url, "-o", str(tmp_path / "b.json"))
    assert_one_line_error(result, message)
    assert _sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]  # no journal, no lock


def test_read_only_storage_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "k.db"
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.set_user_attr("k", 1)
    before = _sha256(path)
    reader = open_storage(url, read_only=True)
    loaded = optuna.load_study(study_name="s", storage=reader)
    assert loaded.user_attrs == {"k": 1}
    with pytest.raises(StorageError, match="read-only"):
        loaded.set_user_attr("k", 2)
    with pytest.raises(StorageError, match="read-only"):
        loaded.ask()
    # The connection itself refuses writes too.
    assert reader.engine is not None
    with reader.engine.connect() as connection, pytest.raises(sqlalchemy.exc.OperationalError):
        connection.exec_driver_sql("DELETE FROM study_user_attributes")
    assert _sha256(path) == before


@needs_pg
def test_read_only_postgres_connection_refuses_writes():
    assert PG_URL
    reader = open_storage(PG_URL, read_only=True)
    reader.get_all_studies()
    assert reader.engine is not None
    with (
        reader.engine.connect() as connection,
        pytest.raises(sqlalchemy.exc.InternalError, match="read-only transaction"),
    ):
        connection.exec_driver_sql("DELETE FROM study_user_attributes WHERE key = 'none'")


@needs_pg
def test_readers_refuse_a_postgres_database_without_optuna_tables():
    with fresh_postgres_database() as url:
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE customers (id int primary key)")
        with pytest.raises(StorageError, match="holds no study storage"):
            open_storage(url, create=False)
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
        engine.dispose()
        assert tables == {"customers"}


def test_schema_table_list_is_optunas():
    assert len(OPTUNA_TABLES) == 13 and {"studies", "trials", "alembic_version"} <= OPTUNA_TABLES


def test_launch_creates_in_a_new_file_only_when_asked(tmp_path):
    url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
    with pytest.raises(StorageError, match="no study storage"):
        open_storage(url, create=False)
    open_storage(url, create=True)
    schema = inspect_schema(url)
    assert schema is not None and schema.complete
