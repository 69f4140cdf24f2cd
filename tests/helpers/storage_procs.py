"""Processes that use a study storage as kmlp's workers do, for lock, outage and load tests.

Run as ``python -m tests.helpers.storage_procs COMMAND ...`` (``databases.spawn``):

- ``hold URL NAME --seconds S --status FILE``: take lock NAME, hold it for S seconds,
  calling ``check()`` every 0.1 s; writes ``held``, then ``released`` or ``lost`` lines.
- ``acquire URL NAME --status FILE``: take lock NAME, write ``acquired``, release.
- ``count URL NAME COUNTER N``: N times, under lock NAME, read-increment-write a file.
- ``trials URL STUDY --budget B``: a worker's loop: under the lock (named STUDY), count
  the study's trials and, below the budget, create one (``check()`` before and after);
  then "train" 0.1 s with a heartbeat thread and tell it COMPLETE. Prints ``done N``.
- ``busy URL STUDY --seconds S [--tag TAG] [--readers K]``: ``trials`` with an endless
  budget for S seconds, plus K threads reading the study every 10 ms (as a publishing
  thread would); PostgreSQL connections named ``TAG-PID`` (``application_name``).
- ``interrupt-write URL``: Ctrl-C (SIGINT) arrives while a write waits 1.5 s for a SQLite
  lock held by another connection; prints ``interrupted after: {attrs}`` and ``free``
  once another connection could write (no lock left behind).
- ``launch URL STUDY --at T``: at Unix time T, open the storage to create it and create
  the study under its lock, as ``kmlp launch`` does; prints ``ok``.

Status lines are ``WORD UNIX_TIME`` appended to the status file. The lease comes from
``$KMLP_LOCK_LEASE``, the outage timeout from ``$KMLP_STORAGE_RETRY``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from kmlp.storage import HeartbeatSettings, LockLost, open_storage, storage_lock
from kmlp.study.heartbeat import Heartbeat


def _status(path: str, word: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{word} {time.time():.3f}\n")


def hold(args: argparse.Namespace) -> None:
    storage = open_storage(args.url, create=False)
    with storage_lock(storage, name=args.name) as lock:
        _status(args.status, "held")
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(0.1)
            try:
                lock.check()
            except LockLost:
                _status(args.status, "lost")
                return
    _status(args.status, "released")


def acquire(args: argparse.Namespace) -> None:
    storage = open_storage(args.url, create=False)
    _status(args.status, "waiting")
    with storage_lock(storage, name=args.name) as lock:
        lock.check()
        _status(args.status, "acquired")


def count(args: argparse.Namespace) -> None:
    storage = open_storage(args.url, create=False)
    path = Path(args.counter)
    for _ in range(args.n):
        with storage_lock(storage, name=args.name) as lock:
            value = int(path.read_text())
            time.sleep(0.002)  # widen the race window
            lock.check()
            path.write_text(str(value + 1))


def trials(args: argparse.Namespace) -> None:
    heartbeat = HeartbeatSettings(interval=1, grace_period=60)
    url = args.url
    if args.tag:
        name = f"{args.tag}-{os.getpid()}"
        url = make_url(url).update_query_dict({"application_name": name})
        url = url.render_as_string(hide_password=False)
    storage = open_storage(url, create=False, heartbeat=heartbeat)
    study = optuna.load_study(study_name=args.study, storage=storage)
    end = time.monotonic() + args.seconds if args.seconds else None
    for _ in range(args.readers):
        threading.Thread(target=_read_until, args=(storage, study, end), daemon=True).start()
    done = 0
    while end is None or time.monotonic() < end:
        with storage_lock(storage, name=args.study) as lock:
            live = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
            if len(live) >= args.budget:
                break
            lock.check()
            trial = study.ask()
            try:
                lock.check()
            except LockLost:  # lost while creating: fail the trial (the budget stays exact)
                study.tell(trial, state=TrialState.FAIL)
                print("lost the lock while creating a trial", file=sys.stderr, flush=True)
                continue
        storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", os.getpid())
        with Heartbeat(storage, [trial._trial_id], heartbeat.interval):
            time.sleep(0.1)
        study.tell(trial, float(trial.number))
        done += 1
        print(f"done {done} {time.time():.3f}", flush=True)


def launch(args: argparse.Namespace) -> None:
    while time.time() < args.at:  # start together with the other launchers
        pass
    storage = open_storage(args.url, create=True)
    with storage_lock(storage, name=args.study):
        optuna.create_study(study_name=args.study, storage=storage, load_if_exists=True)
    print("ok", flush=True)


def _read_until(storage: object, study: optuna.Study, end: float | None) -> None:
    while end is None or time.monotonic() < end:
        study.get_trials(deepcopy=False)
        study.user_attrs  # noqa: B018 - a read of its own
        time.sleep(0.01)


def interrupt_write(args: argparse.Namespace) -> None:
    storage = open_storage(args.url)
    study = optuna.create_study(study_name="interrupted", storage=storage)
    path = make_url(args.url).database
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, blocker.execute, args=("COMMIT",)).start()
    threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT)).start()
    try:
        study.set_user_attr("k", 1)  # waits for the blocker; Ctrl-C comes meanwhile
    except KeyboardInterrupt:
        reader = open_storage(args.url, read_only=True)
        attrs = optuna.load_study(study_name="interrupted", storage=reader).user_attrs
        print(f"interrupted after: {attrs}", flush=True)
    other = sqlite3.connect(path, timeout=5)
    other.execute("CREATE TABLE other_writer (x)")
    other.commit()
    print("free", flush=True)


def main(argv: list[str] | None = None) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # ask() warns that heartbeats are meant for optimize(); kmlp's workers beat themselves.
    warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
    parser = argparse.ArgumentParser(prog="storage_procs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("hold")
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--status", required=True)
    p.set_defaults(func=hold)
    p = sub.add_parser("acquire")
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("--status", required=True)
    p.set_defaults(func=acquire)
    p = sub.add_parser("count")
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("counter")
    p.add_argument("n", type=int)
    p.set_defaults(func=count)
    for name in ("trials", "busy"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("study")
        p.add_argument("--budget", type=int, default=10**9)
        p.add_argument("--seconds", type=float, default=0)
        p.add_argument("--tag", default="")
        p.add_argument("--readers", type=int, default=0)
        p.set_defaults(func=trials)
    p = sub.add_parser("interrupt-write")
    p.add_argument("url")
    p.set_defaults(func=interrupt_write)
    p = sub.add_parser("launch")
    p.add_argument("url")
    p.add_argument("study")
    p.add_argument("--at", type=float, required=True)
    p.set_defaults(func=launch)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
