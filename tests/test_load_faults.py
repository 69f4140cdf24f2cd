"""The load and fault kit's short runs: real ``kmlp launch`` / ``kmlp worker`` processes on
one study, faults injected, then nothing lost, duplicated, over budget or left RUNNING.

Tiny trials on a real CIFAR-10 subset ($KMLP_DATA); heartbeat 1 s, grace 3 s. On this
2-core machine ``kmlp launch --workers`` takes at most 2, so "N workers" is a launch with
2 plus N - 2 ``kmlp worker`` processes. The long runs are ``benchmarks/scale.py``.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest

from kmlp.storage import open_storage
from tests.helpers.databases import PG_URL, needs_pg, storage_proxy
from tests.helpers.load import LoadResult, run_load
from tests.helpers.tcp_proxy import TcpProxy

DATA = os.environ.get("KMLP_DATA")
pytestmark = [
    pytest.mark.load,
    pytest.mark.data,
    pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder"),
]


@pytest.fixture
def pg_study():
    """A PostgreSQL study name of our own, deleted (with its lock's tickets) afterwards."""
    name = f"kmlp-load-{uuid.uuid4().hex[:8]}"
    yield name
    if PG_URL:
        try:
            optuna.delete_study(study_name=name, storage=open_storage(PG_URL))
        except KeyError:
            pass


def assert_clean(result: LoadResult, *, exits: bool = True) -> None:
    assert result.clean, (result.line(), result.stderr[-3000:])
    assert result.finished == sum(result.budgets)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if exits:
        assert result.launch_code == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_sigkilled_worker_on_sqlite(tmp_path):
    """The kit's short CI run: 1 + 2 workers on one SQLite file, one ``kmlp worker``
    SIGKILLed mid-trial (its trial failed by another worker's reaper and rerun)."""
    assert DATA
    result = run_load(
        url=f"sqlite:///{tmp_path / 'k.db'}", study="s", data=DATA, folder=tmp_path,
        trials=(14, 4), launch_workers=1, extra=2, kills=1,
    )  # fmt: skip
    assert_clean(result)
    assert result.killed_trials and all(result.killed_rerun), result.line()
    assert result.worker_codes.count(-9) == 1


@pytest.mark.slow
@needs_pg
def test_2_worker_launch_rides_out_a_15_s_postgres_outage(tmp_path, pg_study):
    """Every database connection cut for 15 s mid-run: the launch finishes by itself, exit 0."""
    assert PG_URL and DATA
    with TcpProxy.for_url(PG_URL) as tcp:
        result = run_load(
            url=tcp.url(PG_URL), observer_url=PG_URL, study=pg_study, data=DATA,
            folder=tmp_path, trials=(8, 4), launch_workers=2, cut=tcp, cut_after=3,
            cut_seconds=15.0,
        )  # fmt: skip
        assert tcp.resets > 0
    assert_clean(result)
    assert result.seconds > 15


@pytest.mark.slow
@needs_pg
def test_8_workers_through_the_proxy_on_postgres_two_killed(tmp_path, pg_study):
    """``kmlp storage-proxy`` on PostgreSQL; launch (2) + 6 ``kmlp worker``; 2 SIGKILLed."""
    assert PG_URL and DATA
    with storage_proxy(PG_URL) as url:
        result = run_load(
            url=url, observer_url=PG_URL, study=pg_study, data=DATA, folder=tmp_path,
            trials=(20, 8), launch_workers=2, extra=6, kills=2, seed=1,
        )  # fmt: skip
    assert_clean(result)
    assert len(result.killed_trials) == 2 and all(result.killed_rerun), result.line()


@pytest.mark.slow
def test_stopped_lock_holder_stalls_nobody(tmp_path):
    """A ``kmlp worker`` SIGSTOPped with a live lock ticket for 12 s, lease shortened to 5 s
    ($KMLP_LOCK_LEASE; default 30): the others finish trials meanwhile; after SIGCONT the
    budgets are exact."""
    assert DATA
    result = run_load(
        url=f"sqlite:///{tmp_path / 'k.db'}", study="s", data=DATA, folder=tmp_path,
        trials=(10, 4), launch_workers=2, extra=2, stop_seconds=12.0,
        env={"KMLP_LOCK_LEASE": "5"},
    )  # fmt: skip
    assert_clean(result)
    assert result.done_while_stopped is not None and result.done_while_stopped > 0, result.line()
