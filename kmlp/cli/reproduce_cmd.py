"""``kmlp reproduce``: run the method's published report and write it beside kmlp's.

Parsing and wiring only: the experiments are ``kmlp.study.reproduce``, the report
``kmlp.dashboards.reproduce_report``. Everything decidable before training is checked
first (the report folder, the storage, the artifact store, the data), each as one
``kmlp: error:`` line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from kmlp.cli.options import add_artifacts, add_blas_threads, add_storage, positive_int
from kmlp.dashboards.artifacts import existing_artifact_store
from kmlp.dashboards.hooks import publisher_for
from kmlp.dashboards.reproduce_report import RunInfo, check_out_dir, write_report
from kmlp.network import load_cifar10
from kmlp.network.errors import ConfigError
from kmlp.network.threads import check_blas_threads, usable_cores
from kmlp.storage import StorageError, display_url, open_storage, resolve_url
from kmlp.study.commands import kmlp_command, storage_args
from kmlp.study.progress import format_duration
from kmlp.study.reproduce import DEFAULT_PROCESSES, collect, compare, make_plan, reproduce

DEFAULT_OUT = "reproduce-report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_storage(p)
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for report.md, report.html, results.json and the figures "
        f"(default ./{DEFAULT_OUT})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the same experiments on 1000 training images for one cycle (a minute or two; "
        "studies reproduce-quick/*)",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="CIFAR-10 folder, its parent, or the .tar.gz "
        "(default: $KMLP_DATA, else the per-user cache, downloading it if missing)",
    )
    p.add_argument(
        "--processes",
        type=positive_int,
        default=DEFAULT_PROCESSES,
        metavar="N",
        help=f"worker processes training at once (default {DEFAULT_PROCESSES}: one per core "
        "of a 2-core machine)",
    )
    add_blas_threads(p)
    add_artifacts(p)


def run(args: argparse.Namespace) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_url(args.storage)
    check_blas_threads(args.blas_threads)
    cores = usable_cores()
    if args.processes > cores:  # each holds the data (1.5 GB for a full run)
        raise ConfigError(
            f"--processes {args.processes}: more than the {cores} core(s) this machine "
            f"gives kmlp (use 1 to {cores})"
        )
    out_dir = check_out_dir(args.out)
    rdb = open_storage(url)
    try:
        rdb.get_all_studies()
    except Exception as exc:  # a database that answers the connection but not queries
        raise StorageError(f"cannot read {display_url(url)}: {exc}") from None
    publisher = publisher_for(url, args.artifacts)
    # Loads (or downloads into the cache) once here, so that a missing copy is one line
    # before any worker starts.
    load_cifar10(data_dir=args.data, n_train=1, n_val=1, progress=sys.stderr.isatty())
    command = _command(args, url)
    start = time.monotonic()
    try:
        outcome = reproduce(
            storage_url=url,
            quick=args.quick,
            data_dir=args.data,
            hooks=publisher,
            processes=args.processes,
            blas_threads=args.blas_threads,
        )
    except KeyboardInterrupt:
        print(
            "kmlp reproduce: interrupted; the finished runs are kept in "
            f"{display_url(url)}. To finish the rest, run again: {command}",
            file=sys.stderr,
            flush=True,
        )
        return 130
    seconds = time.monotonic() - start
    measurements = collect(storage=rdb, plan=outcome.plan)
    rows = compare(measurements)
    written = write_report(
        measurements,
        rows,
        out_dir=out_dir,
        storage=rdb,
        artifact_store=existing_artifact_store(url, publisher.artifacts),
        info=RunInfo(
            command=command,
            storage=display_url(url),
            seconds=seconds,
            ran=outcome.ran,
            reused=outcome.reused,
            load=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        ),
    )
    judged = [r for r in rows if r.within is not None]
    differ = [r for r in judged if not r.within]
    print(
        f"kmlp reproduce: done in {format_duration(seconds)}; {len(rows)} published figures: "
        f"{len(judged) - len(differ)} within the spread, {len(differ)} differ "
        f"(see the report); report in {out_dir}/ ({', '.join(p.name for p in written)})",
        flush=True,
    )
    return 0


def _command(args: argparse.Namespace, url: str) -> str:
    extra = ["--quick"] if args.quick else []
    if args.data:
        extra += ["--data", args.data]
    if args.artifacts:
        extra += ["--artifacts", args.artifacts]
    return kmlp_command("reproduce", *storage_args(url), "--out", str(args.out), *extra)


__all__ = ["add_arguments", "make_plan", "run"]
