"""Lean connections: a worker process holds one PostgreSQL connection, measured on the server."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import optuna
import sqlalchemy

from kmlp.storage import open_storage
from tests.helpers.databases import PG_URL, needs_pg, spawn

pytestmark = needs_pg
PROCESSES = 4


def test_each_worker_process_holds_at_most_one_connection():
    """4 processes run trials (main thread, heartbeat thread, lock renewals, 2 threads that
    read every 10 ms) for 8 s, while pg_stat_activity is sampled every 20 ms: never more
    than one connection each. (With SQLAlchemy's default pool of 5 + 10 they hold 3.)"""
    assert PG_URL
    tag = f"kmlp-conn-{uuid.uuid4().hex[:8]}"
    name = f"kmlp-conn-{uuid.uuid4().hex[:8]}"
    storage = open_storage(PG_URL)
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    monitor = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.NullPool)
    query = sqlalchemy.text(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE :tag"
    )
    most: Counter[str] = Counter()
    samples = 0
    procs = [
        spawn("busy", PG_URL, name, "--seconds", "8", "--tag", tag, "--readers", "2")
        for _ in range(PROCESSES)
    ]
    try:
        with monitor.connect() as connection:
            while any(p.poll() is None for p in procs):
                names = Counter(r[0] for r in connection.execute(query, {"tag": f"{tag}-%"}))
                for app, n in names.items():
                    most[app] = max(most[app], n)
                samples += 1
                connection.rollback()  # a fresh snapshot of pg_stat_activity each time
                time.sleep(0.02)
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        monitor.dispose()
        optuna.delete_study(study_name=name, storage=storage)  # and its lock's tickets
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert int(out.split()[-2]) >= 1  # it did work (how much depends on the machine's load)
    assert samples > 10
    assert len(most) == PROCESSES  # every process was seen connected
    assert max(most.values()) == 1, most
