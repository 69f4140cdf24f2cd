"""The long load and fault run: N tiny-trial workers on one study, with faults, counted.

For each N in ``--workers``: ``kmlp launch --workers 2`` plus N - 2 ``kmlp worker``
processes (this 2-core machine lets a launch start 2) run one study through the chosen
storage, while the kit (``tests/helpers/load.py``) SIGKILLs ``--kills`` of the workers
mid-trial (default N / 8) and cuts the database connection for ``--cut`` seconds (a TCP
forwarder between kmlp, or the storage proxy, and PostgreSQL). Reported per N: trials per
minute, and trials lost, duplicated, over budget and left RUNNING (all must be 0), the
killed workers' trials rerun, and the load average.

    python benchmarks/scale.py [--workers 2 8 32] [--storage proxy|postgresql|sqlite]
        [--trials 40,20] [--cut 5] [--data DIR]

PostgreSQL from ``$KMLP_TEST_POSTGRES_URL`` (its studies are deleted afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kmlp.storage import open_storage  # noqa: E402
from tests.helpers.databases import storage_proxy  # noqa: E402  (the repository's test kit)
from tests.helpers.load import LoadResult, run_load  # noqa: E402
from tests.helpers.tcp_proxy import TcpProxy  # noqa: E402


@contextlib.contextmanager
def storage_for(
    kind: str, pg: str | None, folder: Path
) -> Iterator[tuple[str, str, TcpProxy | None]]:
    """(URL the workers use, URL the kit reads, the TCP forwarder to cut or None)."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'k.db'}"
        yield url, url, None
        return
    if not pg:
        raise SystemExit("set $KMLP_TEST_POSTGRES_URL for PostgreSQL or the proxy")
    with TcpProxy.for_url(pg) as tcp:
        if kind == "postgresql":
            yield tcp.url(pg), pg, tcp
        else:
            with storage_proxy(tcp.url(pg), threads=16) as url:
                yield url, pg, tcp


def one_run(args: argparse.Namespace, n: int, pg: str | None) -> LoadResult:
    study = f"kmlp-scale-{uuid.uuid4().hex[:8]}"
    kills = args.kills if args.kills is not None else n // 8
    with (
        tempfile.TemporaryDirectory(prefix="kmlp-scale-") as tmp,
        storage_for(args.storage, pg, Path(tmp)) as (url, observer, tcp),
    ):
        try:
            return run_load(
                url=url,
                observer_url=observer,
                study=study,
                data=args.data,
                folder=Path(tmp),
                trials=tuple(int(t) for t in args.trials.split(",")),
                launch_workers=min(2, n),
                extra=max(0, n - 2),
                kills=kills,
                cut=tcp if args.cut > 0 else None,
                cut_after=5,
                cut_seconds=args.cut,
                seed=n,
                timeout=args.timeout,
            )
        finally:
            if args.storage != "sqlite":
                with contextlib.suppress(KeyError):
                    optuna.delete_study(study_name=study, storage=open_storage(pg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--storage", choices=["proxy", "postgresql", "sqlite"], default="proxy")
    parser.add_argument("--trials", default="40,20", help="budgets per stage")
    parser.add_argument("--kills", type=int, default=None, help="default: workers / 8")
    parser.add_argument("--cut", type=float, default=5.0, help="seconds; 0: no cut")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--data", default=os.environ.get("KMLP_DATA"))
    args = parser.parse_args()
    if not args.data:
        raise SystemExit("set --data or $KMLP_DATA to the CIFAR-10 folder")
    if args.storage == "sqlite" and args.cut:
        args.cut = 0.0  # a SQLite file has no connection to cut
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pg = os.environ.get("KMLP_TEST_POSTGRES_URL")
    print(
        "| workers | storage | trials/min | lost | duplicated | over budget | left running "
        "| killed, rerun | cut | exit codes ok | load (1 min) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---|---|")
    for n in args.workers:
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        r = one_run(args, n, pg)
        load_after = os.getloadavg()[0]
        codes_ok = r.launch_code == 0 and all(c in (0, -9) for c in r.worker_codes)
        print(
            f"| {n} | {args.storage} | {r.trials_per_minute:.0f} | {r.lost} | {r.duplicated} "
            f"| {r.over_budget} | {r.left_running} | {len(r.killed_trials)}, "
            f"{sum(r.killed_rerun)} | {args.cut:g} s | {'yes' if codes_ok else 'NO'} "
            f"| {load_before:.1f} -> {load_after:.1f} |",
            flush=True,
        )
        if not (r.clean and codes_ok):
            print(f"  {r.line()}\n{r.stderr[-3000:]}", file=sys.stderr)
        print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
