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

from kmlp.cli.common import (
    add_training_args,
    data_options_from_args,
    training_config_from_args,
)
from kmlp.cli.options import (
    add_artifacts,
    add_blas_threads,
    add_json,
    add_storage,
    add_study,
    positive_int,
)
from kmlp.storage import display_url, open_storage, resolve_url
from kmlp.study import (
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
from kmlp.study.access import load
from kmlp.study.config import SAMPLERS
from kmlp.study.launch import DEFAULT_WORKERS
from kmlp.study.summary import format_study_rows

# argparse takes "-5,-1;-3,-2" for an option unless told it is a (negative) value.
_NEGATIVE_VALUES = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.,;eE+\- ]+$")


# The search validates on the last 5000 training-batch images; the method's final
# training holds out only 1000 of them.
SEARCH_VAL_POOL = 5000
FINAL_VAL_POOL = 1000


def add_studies_arguments(p: argparse.ArgumentParser) -> None:
    add_storage(p)


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p)
    add_storage(p)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p)
    add_storage(p)
    p.add_argument("-o", "--output", default="best.json", help="file to write (default best.json)")


def add_retrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export_file", metavar="BEST.json", help="a file written by kmlp export")
    p.add_argument(
        "--cycles", type=positive_int, default=None, help="cycles (default: the exported ones)"
    )
    p.add_argument("--save", metavar="MODEL.npz", help="save the trained network")
    add_json(p)
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (default $KMLP_DATA or cache)")
    add_storage(p, help="storage to record the result in (default: the export's)")
    add_blas_threads(
        p,
        default=None,
        help="BLAS threads (default: as many as the exported trial used, else 1; float32 "
        "results depend on it)",
    )
    p.add_argument(
        "--val-size",
        type=positive_int,
        default=FINAL_VAL_POOL,
        metavar="N",
        help=f"validation images held out of the 50000 (default {FINAL_VAL_POOL}, the method's "
        "final step: train on the other 49000); 5000 repeats the search's split",
    )


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
        help="worker processes on this machine "
        f"(default: one per core, at most 4; here {DEFAULT_WORKERS})",
    )
    add_blas_threads(w)
    _add_publish_args(p)


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p)
    add_storage(p)
    p.add_argument("--data", metavar="DIR", help="CIFAR-10 folder (default $KMLP_DATA or cache)")
    add_blas_threads(p)
    _add_publish_args(p)


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    add_artifacts(p)
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
        from kmlp.dashboards.hooks import publisher_for
    except ImportError as exc:
        print(f"kmlp: warning: dashboard publishing off ({exc})", file=sys.stderr)
        return {}
    publisher = publisher_for(url, args.artifacts)  # a bad --artifacts fails now
    return {"on_trial_end": publisher.on_trial_end, "on_stage_end": publisher.on_stage_end}
