"""``kmlp launch | worker | studies | show | export | retrain``: the λ search service.

Parsing only; the work is in ``study`` and ``storage``. The dashboards' hooks (trial
curves, search figure) are wired in here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from cli.common import (
    add_training_args,
    data_options_from_args,
    positive_int,
    training_config_from_args,
)
from storage import DEFAULT_URL, display_url, open_storage, resolve_url
from study import (
    CifarSource,
    SearchConfig,
    StudyError,
    export_best,
    launch,
    parse_ranges,
    parse_trials,
    retrain,
    run_worker,
    study_rows,
    study_table,
)
from study.access import load
from study.config import SAMPLERS
from study.launch import DEFAULT_WORKERS
from study.summary import format_study_rows

_STORAGE_HELP = f"study storage URL (default: $KMLP_STORAGE, else {DEFAULT_URL})"
_ARTIFACTS_HELP = (
    "where trial curves and figures go for the dashboard: a folder or s3://bucket/prefix "
    "(default: $KMLP_ARTIFACTS, else '<db name>-artifacts' beside the SQLite file)"
)
# argparse takes "-5,-1;-3,-2" for an option unless told it is a (negative) value.
_NEGATIVE_VALUES = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.,;eE+\- ]+$")


# The search validates on the last 5000 training-batch images; the method's final
# training holds out only 1000 of them.
SEARCH_VAL_POOL = 5000
FINAL_VAL_POOL = 1000


def register(sub: argparse._SubParsersAction) -> None:
    _register_launch(sub)
    _register_worker(sub)
    p = sub.add_parser("studies", help="list the studies in a storage")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.set_defaults(func=run_studies)

    p = sub.add_parser("show", help="print a study's stage table")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.set_defaults(func=run_show)

    p = sub.add_parser("export", help="write a study's best trial to a JSON file")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("-o", "--output", default="best.json", help="file to write (default best.json)")
    p.set_defaults(func=run_export)

    p = sub.add_parser(
        "retrain",
        help="train an exported configuration and report validation and test accuracy",
    )
    p.add_argument("export_file", metavar="BEST.json", help="a file written by kmlp export")
    p.add_argument(
        "--cycles", type=positive_int, default=None, help="cycles (default: the exported ones)"
    )
    p.add_argument("--save", metavar="MODEL.npz", help="save the trained network")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (default $KMLP_DATA or cache)")
    p.add_argument(
        "--storage", default=None, help="storage to record the result in (default: the export's)"
    )
    p.add_argument(
        "--blas-threads",
        type=positive_int,
        default=None,
        help="BLAS threads (default: as many as the trial used, to repeat its result)",
    )
    p.add_argument(
        "--val-size",
        type=positive_int,
        default=FINAL_VAL_POOL,
        metavar="N",
        help=f"validation images held out of the 50000 (default {FINAL_VAL_POOL}, the method's "
        "final step: train on the other 49000); 5000 repeats the search's split",
    )
    p.set_defaults(func=run_retrain)


def _register_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="run (or continue) a coarse-to-fine search of lambda",
        description="Search log10 lambda stage by stage: each stage samples its range, the "
        "next range spans the top-k trials so far. Rerun to continue an interrupted study.",
    )
    p._negative_number_matcher = _NEGATIVE_VALUES  # type: ignore[attr-defined]
    p.add_argument("--study", required=True, help="study name (rerun the same to continue)")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    add_training_args(p, with_lam=False)
    d = SearchConfig()
    g = p.add_argument_group("search")
    g.add_argument(
        "--coarse",
        nargs=2,
        type=float,
        default=list(d.coarse),
        metavar=("LOW", "HIGH"),
        help="log10 lambda range of stage 0 (default -5 -1)",
    )
    g.add_argument(
        "--stages", type=positive_int, default=None, help=f"number of stages (default {d.stages})"
    )
    g.add_argument(
        "--trials",
        default=",".join(map(str, d.trials)),
        help="trials per stage: one number, or one per stage like 20,10,10 "
        f"(default {d.trials[0]})",
    )
    g.add_argument(
        "--top-k",
        type=positive_int,
        default=d.top_k,
        help=f"best trials whose span sets the next range (default {d.top_k})",
    )
    g.add_argument(
        "--margin",
        type=float,
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
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=d.prune,
        help="stop trials below the stage median after the first cycle (default on)",
    )
    w = p.add_argument_group("workers")
    w.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="worker processes on this machine, 1 BLAS thread each "
        f"(default: one per core, at most 4; here {DEFAULT_WORKERS})",
    )
    w.add_argument(
        "--blas-threads",
        type=positive_int,
        default=None,
        help="BLAS threads per worker (default: cores / workers)",
    )
    _add_publish_args(p)
    p.set_defaults(func=run_launch)


def _register_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="join a running study (from any machine sharing its storage)",
        description="Run trials of an existing study until all its stages are finished.",
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=None, help=_STORAGE_HELP)
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (default $KMLP_DATA or cache)")
    p.add_argument(
        "--blas-threads",
        type=positive_int,
        default=None,
        help="BLAS threads of this worker (default: no limit)",
    )
    _add_publish_args(p)
    p.set_defaults(func=run_worker_cmd)


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", default=None, help=_ARTIFACTS_HELP)
    p.add_argument(
        "--no-publish",
        action="store_true",
        help="do not upload curves and search figures for the dashboard",
    )


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    ranges = parse_ranges(args.ranges) if args.ranges else None
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
        prune=args.prune,
        seed=args.seed,
    )


def run_launch(args: argparse.Namespace) -> int:
    _quiet_optuna()
    search = search_config_from_args(args)
    config = training_config_from_args(args)
    options = data_options_from_args(args)
    url = resolve_url(args.storage)
    # The launching process loads the data first (downloading it if needed, with a bar);
    # worker processes then find it.
    source = CifarSource.from_options(options, progress=sys.stderr.isatty())
    study = launch(
        study_name=args.study,
        storage_url=url,
        train_config=config,
        search=search,
        data_source=source,
        data_options=options,
        workers=args.workers,
        blas_threads=args.blas_threads,
        **_hooks(args, url),
    )
    print(f"export the best lambda: kmlp export --study {study.study_name} --storage {url}")
    return 0


def run_worker_cmd(args: argparse.Namespace) -> int:
    _quiet_optuna()
    url = resolve_url(args.storage)
    study = load(args.study, storage=url)
    source = CifarSource.from_options(study.user_attrs.get("data", {}), data_dir=args.data)
    stats = run_worker(
        study_name=args.study,
        storage_url=url,
        data_source=source,
        blas_threads=args.blas_threads,
        **_hooks(args, url),
    )
    ran = sum(stats.trials.values())
    states = ", ".join(f"{v} {k.lower()}" for k, v in stats.trials.items()) or "none"
    print(f"worker done: {ran} trials ({states})")
    return 0


def run_studies(args: argparse.Namespace) -> int:
    rdb = open_storage(args.storage, create=False)
    print(format_study_rows(study_rows(rdb)))
    return 0


def run_show(args: argparse.Namespace) -> int:
    study = load(args.study, storage=resolve_url(args.storage))
    print(f"study {study.study_name} in {display_url(resolve_url(args.storage))}")
    print(study_table(study))
    return 0


def run_export(args: argparse.Namespace) -> int:
    content = export_best(study_name=args.study, storage_url=args.storage, path=args.output)
    print(
        f"wrote {args.output}: trial #{content['trial']} (stage {content['stage']}), "
        f"lambda {content['lambda']:.4e}, val accuracy {100 * content['val_accuracy']:.2f}%"
    )
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    result = retrain(
        export_path=args.export_file,
        cycles=args.cycles,
        data_dir=args.data,
        save=args.save,
        storage_url=args.storage,
        blas_threads=args.blas_threads,
        val_pool=None if args.val_size == SEARCH_VAL_POOL else args.val_size,
        progress=sys.stderr.isatty() and not args.json,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"lambda {result.config.lam:.4e}, {result.config.cycles} cycles, "
            f"{result.train_size} training images: validation accuracy "
            f"{100 * result.val_accuracy:.2f}%, test accuracy {100 * result.test_accuracy:.2f}% "
            f"({result.seconds:.1f} s)"
            + ("" if result.recorded else " [not recorded on the study]")
        )
    return 0


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
        from dashboards.hooks import publisher_for
    except ImportError as exc:
        print(f"kmlp: warning: dashboard publishing off ({exc})", file=sys.stderr)
        return {}
    publisher = publisher_for(url, args.artifacts)  # a bad --artifacts fails now
    return {"on_trial_end": publisher.on_trial_end, "on_stage_end": publisher.on_stage_end}
