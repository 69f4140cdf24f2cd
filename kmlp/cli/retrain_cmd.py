"""``kmlp export | retrain``: the best trial to a file, and training it on the full data.

Parsing only; the work is in ``kmlp.study.export`` and ``kmlp.study.retrain``. A recorded
retrain refreshes the study's note (the dashboards' ``publish_search``), so its test
accuracy shows at once.
"""

from __future__ import annotations

import argparse
import sys

from kmlp.cli.common import count_number, print_json, seed_number
from kmlp.cli.options import (
    add_blas_threads,
    add_json,
    add_storage,
    add_study,
    path_text,
    whole_number,
)
from kmlp.network.checks import show_path, writable_file
from kmlp.network.errors import ConfigError
from kmlp.storage.urls import redact
from kmlp.study import export_best, retrain
from kmlp.study.access import load
from kmlp.study.commands import kmlp_command
from kmlp.study.retrain import FINAL_VAL_SIZE, RetrainResult

MAX_SEEDS = 100  # a spread needs a few; a hundred full retrains is days of CPU
MAX_JOBS = 64


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p)
    add_storage(p)
    p.add_argument(
        "-o",
        "--output",
        type=path_text,
        default="best.json",
        help="file to write (default best.json)",
    )


def add_retrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "export_file", type=path_text, metavar="BEST.json", help="a file written by kmlp export"
    )
    p.add_argument(
        "--cycles", type=count_number, default=None, help="cycles (default: the exported ones)"
    )
    p.add_argument("--save", type=path_text, metavar="MODEL.npz", help="save the trained network")
    add_json(p)
    p.add_argument(
        "--data",
        type=path_text,
        metavar="DIR",
        help="CIFAR-10 folder (default $KMLP_DATA or cache)",
    )
    add_storage(p, help="storage to record the result in (default: the export's)")
    add_blas_threads(
        p,
        default=None,
        help="BLAS threads (default: as many as the exported trial used, else 1; float32 "
        "results depend on it)",
    )
    p.add_argument(
        "--val-size",
        type=count_number,
        default=None,
        metavar="N",
        help=f"validation images held out of the 50000 (default {FINAL_VAL_SIZE}, the method's "
        "final step: train on the other 49000)",
    )
    p.add_argument(
        "--n-train",
        type=count_number,
        default=None,
        metavar="N",
        help="train on only the first N of the remaining images (default: all of them, "
        "whatever subset the search used)",
    )
    p.add_argument(
        "--seeds",
        type=whole_number(low=1, high=MAX_SEEDS),
        default=None,
        metavar="N",
        help="train N networks, seeds S..S+N-1 (S: --seed), and report each one's test "
        "accuracy, their mean and sample std (default: one network, no spread)",
    )
    p.add_argument(
        "--seed",
        type=seed_number,
        default=None,
        help="seed of the (first) network (default: the exported trial's, usually 0)",
    )
    p.add_argument(
        "--jobs",
        type=whole_number(low=1, high=MAX_JOBS),
        default=1,
        metavar="J",
        help="with --seeds: worker processes training seeds side by side, each with "
        f"--blas-threads threads (default 1, at most {MAX_JOBS})",
    )
    p.add_argument(
        "--as-searched",
        action="store_true",
        help="train on the study's own data instead (its --n-train / --n-val and 5000 "
        "validation images): repeats the trial's validation accuracy",
    )


def run_export(args: argparse.Namespace) -> int:
    check_export_path(args.output)  # before the storage is opened
    content = export_best(study_name=args.study, storage_url=args.storage, path=args.output)
    print(
        f"wrote {args.output}: trial #{content['trial']} (stage {content['stage']}), "
        f"lambda {content['lambda']:.4e}, val accuracy {100 * content['val_accuracy']:.2f}%"
    )
    print(f"next: {kmlp_command('retrain', args.output)}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    result = retrain(
        export_path=args.export_file,
        cycles=args.cycles,
        data_dir=args.data,
        save=args.save,
        storage_url=args.storage,
        blas_threads=args.blas_threads,
        n_train=args.n_train,
        val_size=args.val_size,
        as_searched=args.as_searched,
        progress=sys.stderr.isatty() and not args.json,
        seeds=args.seeds,
        seed=args.seed,
        jobs=args.jobs,
    )
    if result.recorded:
        _refresh_note(result.export["study"], args.storage or result.export.get("storage"))
    if args.json:
        print_json(result.to_dict())
    elif result.test_accuracies is not None:
        print(f"{result.record().describe()}; {result.seconds:.1f} s of training; {_where(result)}")
    else:
        where = _where(result)
        print(
            f"lambda {result.config.lam:.4e}, {result.config.cycles} "
            f"cycle{'' if result.config.cycles == 1 else 's'} on "
            f"{result.train_size} training images: validation accuracy "
            f"{100 * result.val_accuracy:.2f}% ({result.val_size} images), test accuracy "
            f"{100 * result.test_accuracy:.2f}% (10000 images); {result.seconds:.1f} s; {where}"
        )
    return 0


def _where(result: RetrainResult) -> str:
    if result.recorded:
        return f"recorded on study {result.export['study']!r}"
    return "not recorded on the study"


def _refresh_note(study_name: str, storage_url: str | None) -> None:
    """Show a retrain's test accuracy in the study's note and search figure at once."""
    try:
        from kmlp.dashboards.publish import publish_search

        study = load(study_name, storage=storage_url)
        publish_search(study, artifact_store=None, storage_url=storage_url, snapshot=False)
    except Exception as exc:  # the result is recorded; the note catches up at the next trial
        reason = redact(f"{exc}", url=storage_url)
        print(f"kmlp: warning: study note not updated: {reason}", file=sys.stderr)


def check_export_path(path: str) -> None:
    """ConfigError unless an export file can be written at ``path`` now, in an existing
    folder (``kmlp export`` creates no folders)."""
    target = writable_file("-o", path)
    if not target.parent.is_dir():
        raise ConfigError(f"-o {show_path(path)}: folder {show_path(target.parent)} does not exist")
