"""``kmlp launch | worker``: running the λ search.

Parsing only; the work is in ``study`` and ``storage``. The dashboards' hooks (trial
curves, search figure) are wired in here.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from kmlp.cli.common import (
    add_training_args,
    check_artifacts_arg,
    check_data_arg,
    check_storage_arg,
    check_training_args,
    check_workers,
    data_options_from_args,
    finite_float,
    training_config_from_args,
)
from kmlp.cli.options import (
    add_artifacts,
    add_blas_threads,
    add_lockstep,
    add_storage,
    add_study,
    path_text,
    positive_int,
    whole_number,
)
from kmlp.dashboards.artifacts import artifacts_location
from kmlp.network import TrainConfig
from kmlp.storage import (
    open_storage,
    sqlite_path,
)
from kmlp.study import (
    CifarSource,
    SearchConfig,
    StudyError,
    launch,
    parse_ranges,
    parse_trials,
    run_worker,
    study_summary,
)
from kmlp.study.access import load
from kmlp.study.commands import has_password, next_commands, resume_command
from kmlp.study.config import MAX_STAGES, MAX_TRIALS, PRUNERS, SAMPLERS
from kmlp.study.launch import DEFAULT_WORKERS
from kmlp.study.progress import format_duration
from kmlp.study.resume import existing, same_data_options

# argparse takes "-5,-1;-3,-2" for an option unless told it is a (negative) value: no
# option starts with "-" and a digit, so anything that does is a value (and a malformed
# one, "-5,-1;x", is then refused by the parser of --ranges, which says why).
_NEGATIVE_VALUES = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)


def add_launch_arguments(p: argparse.ArgumentParser) -> None:
    p._negative_number_matcher = _NEGATIVE_VALUES  # type: ignore[attr-defined]
    add_study(p, help="study name (rerun the same to continue)")
    add_storage(p)
    add_training_args(p, with_lam=False)
    d = SearchConfig()
    g = p.add_argument_group("search")
    g.add_argument(
        "--coarse",
        nargs=2,
        type=finite_float,
        default=list(d.coarse),
        metavar=("LOW", "HIGH"),
        help="log10 lambda range of stage 0 (default -5 -1)",
    )
    g.add_argument(
        "--stages",
        type=whole_number(low=1, high=MAX_STAGES),
        default=None,
        help=f"number of stages (default {d.stages})",
    )
    g.add_argument(
        "--trials",
        default=",".join(map(str, d.trials)),
        help="trials per stage: one number, or one per stage like 20,10,10 "
        f"(default {d.trials[0]})",
    )
    g.add_argument(
        "--top-k",
        type=whole_number(low=1, high=MAX_TRIALS),
        default=d.top_k,
        help=f"best trials whose span sets the next range (default {d.top_k})",
    )
    g.add_argument(
        "--margin",
        type=finite_float,
        default=d.margin,
        help=f"widening of that span per side, fraction of the previous width (default {d.margin})",
    )
    g.add_argument(
        "--ranges",
        default=None,
        metavar="L,H;L,H;...",
        help='stages by hand instead, e.g. "-5,-1;-3,-1;-3,-2"',
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=d.sampler,
        help="random: uniform in the stage range (default); tpe: Optuna's TPE",
    )
    g.add_argument(
        "--pruner",
        choices=PRUNERS,
        default=d.pruner,
        help="stopping trials early: auto (default: halving for lockstep groups, median "
        "for a trial trained alone; measured in benchmarks/pruning.py), median (below the "
        "stage's median at a cycle end after the first cycle), halving (the worse half of "
        "each lockstep group at those cycle ends), none",
    )
    g.add_argument(
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--no-prune is --pruner none; --prune is --pruner auto",
    )
    w = p.add_argument_group("workers")
    w.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        default=DEFAULT_WORKERS,
        help="worker processes on this machine "
        f"(default: one per core, at most 4; here {DEFAULT_WORKERS})",
    )
    add_blas_threads(w)
    add_lockstep(w)
    _add_publish_args(p)


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p)
    add_storage(p)
    p.add_argument(
        "--data",
        type=path_text,
        metavar="DIR",
        help="CIFAR-10 folder (default $KMLP_DATA or cache)",
    )
    add_blas_threads(p)
    add_lockstep(p)
    _add_publish_args(p)


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    add_artifacts(p)
    p.add_argument(
        "--no-publish",
        action="store_true",
        help="do not upload curves and search figures for the dashboard",
    )


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    ranges = parse_ranges(args.ranges) if args.ranges is not None else None
    trials = parse_trials(args.trials)
    if ranges is not None and args.stages is not None and args.stages != len(ranges):
        raise StudyError(f"--stages {args.stages} but --ranges gives {len(ranges)} stages")
    stages = args.stages
    if stages is None:  # "--trials 20,10" alone means two stages
        stages = len(trials) if len(trials) > 1 else SearchConfig().stages
    return SearchConfig(
        coarse=tuple(args.coarse),
        stages=stages,
        trials=trials,
        top_k=args.top_k,
        margin=args.margin,
        ranges=ranges,
        sampler=args.sampler,
        pruner=_pruner(args),
        seed=args.seed,
    )


def _pruner(args: argparse.Namespace) -> str:
    """--pruner, with --no-prune as its alias "none" (and --prune as "auto")."""
    if args.prune is None:
        return args.pruner
    alias = "auto" if args.prune else "none"
    if args.pruner not in (alias, SearchConfig().pruner):
        raise StudyError(f"--{'' if args.prune else 'no-'}prune contradicts --pruner {args.pruner}")
    return alias if args.pruner == SearchConfig().pruner else args.pruner


def run_launch(args: argparse.Namespace) -> int:
    _quiet_optuna()
    # Everything decidable is decided before any work: no file, folder or table is
    # created and no data read while a flag is still wrong.
    search = search_config_from_args(args)
    config = training_config_from_args(args)
    check_workers(args.workers, args.blas_threads)
    check_training_args(args, config)  # memory (per worker), BLAS threads
    url = check_storage_arg(args.storage)
    if not args.no_publish:
        check_artifacts_arg(url, args.artifacts)
    check_data_arg(args)
    options = data_options_from_args(args)
    # Then, before anything is created: a stored study of that name must have the same
    # settings (an unreachable server is said here too); unless it is finished, the data
    # is read (downloaded if needed, with a bar) and its files checked; only then are the
    # database (a new SQLite file) and the dashboard's artifact folder made, by launch.
    source = CifarSource.from_options(options, progress=sys.stderr.isatty())
    start = time.monotonic()
    try:
        data = None if _finished(url, args.study, config, search, options) else source()
        study = launch(
            study_name=args.study,
            storage_url=url,
            train_config=config,
            search=search,
            data=data,
            data_source=source,  # worker processes load their own
            data_options=options,
            workers=args.workers,
            blas_threads=args.blas_threads,
            lockstep=args.lockstep,
            **_hooks(args, url),
        )
    except KeyboardInterrupt:
        return _interrupted(args)
    summary = study_summary(study)
    took = format_duration(time.monotonic() - start)
    best = summary.best
    found = (
        f"best lambda {best.lam:.4e}, validation accuracy {100 * (best.value or 0):.2f}% "
        f"(trial #{best.number})"
        if best is not None
        else "no completed trial"
    )
    print(f"launch took {took}; study {study.study_name!r}: {found}")
    artifacts = artifacts_location(url, args.artifacts) if args.artifacts else None
    print("next:")
    for command in next_commands(study.study_name, url, artifacts):
        print(f"  {command}")
    if has_password(url):
        print("  (the storage password is left out: add it back, or use ~/.pgpass)")
    return 0


def _finished(
    url: str, name: str, config: TrainConfig, search: SearchConfig, options: dict[str, Any]
) -> bool:
    """True if study ``name`` exists at ``url``, finished, with these settings (then
    ``launch`` reports it and loads no data); StudyError if it exists with others.
    A SQLite file that does not exist yet is not created here."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return False
    known = {"config": config.to_dict(), "search": search.to_dict()}
    study = existing(open_storage(url), name, known)
    if study is None or not same_data_options(study.user_attrs.get("data") or {}, options):
        return False
    return study_summary(study).finished


def run_worker_cmd(args: argparse.Namespace) -> int:
    _quiet_optuna()
    url = check_storage_arg(args.storage)
    if not args.no_publish:
        check_artifacts_arg(url, args.artifacts)
    study = load(args.study, storage=url)  # before the hooks make the artifact folder
    check_data_arg(args)
    source = CifarSource.from_options(study.user_attrs.get("data", {}), data_dir=args.data)
    print(
        f"{args.lockstep} trials in lockstep" if args.lockstep > 1 else "1 trial at a time",
        flush=True,
    )
    try:
        stats = run_worker(
            study_name=args.study,
            storage_url=url,
            data_source=source,
            blas_threads=args.blas_threads,
            lockstep=args.lockstep,
            **_hooks(args, url),
        )
    except KeyboardInterrupt:
        return _interrupted(args)
    ran = sum(stats.trials.values())
    states = ", ".join(f"{v} {k.lower()}" for k, v in stats.trials.items()) or "none"
    print(f"worker done: {ran} trials ({states})")
    return 0


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C (or SIGTERM) during launch / worker: say how to continue; exit code 130."""
    argv = getattr(args, "argv", None)
    again = f"rerun {resume_command(argv)}" if argv is not None else "rerun the same command"
    print(
        "kmlp: interrupted; finished trials are kept and the running ones will run again. "
        f"To continue, {again}",
        file=sys.stderr,
        flush=True,
    )
    return 130


def _quiet_optuna() -> None:
    # Optuna's INFO lines ("Using an existing study ...") would interleave with kmlp's.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _hooks(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """on_trial_end / on_stage_end keyword arguments publishing for the dashboard.

    ``dashboards.hooks.Publisher`` pickles, so ``--workers N`` hands it to each process.
    """
    if args.no_publish:
        return {}
    try:
        from kmlp.dashboards.hooks import publisher_for
    except ImportError as exc:
        print(f"kmlp: warning: dashboard publishing off ({exc})", file=sys.stderr)
        return {}
    publisher = publisher_for(url, args.artifacts)  # a bad --artifacts fails now
    return publisher.hooks()
