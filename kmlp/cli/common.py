"""Options shared by the commands that train: network shape, training and data flags."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from kmlp.cli.options import path_text, positive_int, whole_number
from kmlp.dashboards.artifacts import artifacts_location
from kmlp.network import TrainConfig
from kmlp.network.checks import MAX_SEED, check_fits, show, writable_folder
from kmlp.network.cifar_files import BATCH_ROWS, N_FEATURES
from kmlp.network.curves import check_plot_path
from kmlp.network.data import N_TRAIN_MAX, N_VAL_MAX, check_data_location
from kmlp.network.errors import ConfigError
from kmlp.network.gradcheck import check_step
from kmlp.network.persist import check_model_path
from kmlp.network.threads import check_blas_threads, usable_cores
from kmlp.storage import StorageError, display_url, resolve_url, sqlite_path


def parse_hidden(text: str) -> tuple[int, ...]:
    """ "50,50" -> (50, 50); "" or "none" -> () (a 1-layer, linear network)."""
    if text.strip().lower() in ("", "none"):
        return ()
    widths = []
    for part in text.split(","):
        part = part.strip()
        # ASCII digits only ("²".isdigit() is true), and few enough for int(); the memory
        # check refuses widths that are merely huge, with an estimate.
        if not re.fullmatch(r"[0-9]{1,12}", part) or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"hidden widths {show(text)}: give positive integers separated by commas, "
                "e.g. 50,50"
            )
        widths.append(int(part))
    return tuple(widths)


def finite_float(text: str) -> float:
    """argparse type: a finite number (refused values echoed shortened)."""
    return _number(text)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{show(text)} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{show(text)}: must be a finite number")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{show(text)}: must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{show(text)}: must be > 0")
    return value


def step_float(text: str) -> float:
    """argparse type: a finite-difference step, as ``network.gradcheck.check_step`` allows."""
    try:
        return check_step(_number(text))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{show(text)}: {exc}") from None


seed_number = whole_number(low=0, high=MAX_SEED)
count_number = whole_number(low=1)


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--data, --n-train, --n-val."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        type=path_text,
        metavar="DIR",
        help="CIFAR-10 folder, its parent, or the .tar.gz "
        "(default: $KMLP_DATA, else the per-user cache, downloading it if missing)",
    )
    g.add_argument(
        "--n-train",
        type=whole_number(low=1, high=N_TRAIN_MAX),
        metavar="N",
        help="use only the first N of the 45000 training images",
    )
    g.add_argument(
        "--n-val",
        type=whole_number(low=1, high=N_VAL_MAX),
        metavar="M",
        help="use only the first M of the 5000 validation images",
    )


def add_training_args(parser: argparse.ArgumentParser, *, with_lam: bool = True) -> None:
    """The network and training flags of ``kmlp train`` (and of ``kmlp launch``)."""
    add_data_args(parser)
    d = TrainConfig()
    g = parser.add_argument_group("network and training")
    g.add_argument(
        "--hidden",
        type=parse_hidden,
        default=d.hidden,
        metavar="W1,W2,...",
        help="hidden layer widths (default 50,50: the 3-layer network)",
    )
    g.add_argument("--bn", action="store_true", help="batch normalisation on every hidden layer")
    if with_lam:
        g.add_argument(
            "--lam",
            type=nonnegative_float,
            default=d.lam,
            help=f"L2 strength lambda (default {d.lam})",
        )
    g.add_argument(
        "--cycles",
        type=count_number,
        default=d.cycles,
        help=f"learning-rate cycles (default {d.cycles})",
    )
    g.add_argument(
        "--init", default=d.init, help="weight init: he, xavier or sigma=<std> (default he)"
    )
    g.add_argument("--seed", type=seed_number, default=d.seed, help="random seed (default 0)")
    g.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=d.dtype,
        help="floating-point type (default float32)",
    )
    g.add_argument(
        "--batch-size",
        type=count_number,
        default=d.batch_size,
        help=f"mini-batch size (default {d.batch_size})",
    )
    g.add_argument(
        "--eta-min",
        type=positive_float,
        default=d.eta_min,
        help=f"lowest learning rate of a cycle (default {d.eta_min:g})",
    )
    g.add_argument(
        "--eta-max",
        type=positive_float,
        default=d.eta_max,
        help=f"highest learning rate of a cycle (default {d.eta_max:g})",
    )
    g.add_argument(
        "--n-s",
        type=count_number,
        default=None,
        help="half-cycle length in steps (default 5 * n_train / batch size)",
    )


def training_config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    """The TrainConfig the flags describe; ``overrides`` replace fields (e.g. lam=...)."""
    fields: dict[str, Any] = dict(
        hidden=args.hidden,
        batch_norm=args.bn,
        cycles=args.cycles,
        init=args.init,
        seed=args.seed,
        dtype=args.dtype,
        batch_size=args.batch_size,
        eta_min=args.eta_min,
        eta_max=args.eta_max,
        n_s=args.n_s,
    )
    if hasattr(args, "lam"):
        fields["lam"] = args.lam
    fields.update(overrides)
    return TrainConfig(**fields)


def check_training_args(args: argparse.Namespace, config: TrainConfig) -> None:
    """Everything about a training command decidable before any work, as one-line errors:
    the memory the network and data need, the BLAS thread count, the output paths."""
    n_images = (args.n_train or N_TRAIN_MAX) + (args.n_val or N_VAL_MAX) + BATCH_ROWS  # + test
    config.check_memory(n_images=n_images)
    workers = getattr(args, "workers", 1)
    lockstep = getattr(args, "lockstep", 1)
    if workers > 1 or lockstep > 1:  # each worker holds the data and K networks
        need = config.memory_needed(n_images=n_images)
        data_bytes = n_images * N_FEATURES * np.dtype(config.dtype).itemsize
        per_worker = data_bytes + lockstep * (need - data_bytes)
        what = f"{workers} workers" if workers > 1 else "one worker"
        if lockstep > 1:
            what += f" x {lockstep} trials in lockstep"
        check_fits(what, workers * per_worker)
    if getattr(args, "blas_threads", None) is not None:
        check_blas_threads(args.blas_threads)
    if getattr(args, "save", None) is not None:  # "" too: --save "$UNSET" is a mistake
        check_model_path(args.save, name="--save")
    if getattr(args, "plot", None) is not None:
        check_plot_path(args.plot, name="--plot")


def check_data_arg(args: argparse.Namespace) -> None:
    """DataError if ``--data`` (else ``$KMLP_DATA``) names a place without CIFAR-10: said
    before anything is read or downloaded. Commands call it after their other checks."""
    check_data_location(args.data)


def check_workers(workers: int, blas_threads: int | None) -> None:
    """ConfigError if ``workers`` processes of ``blas_threads`` BLAS threads each would
    run more threads than this process has cores: they would only wait for each other."""
    cores = usable_cores()
    threads = workers * (blas_threads or 1)
    if threads > cores:
        most = max(1, cores // (blas_threads or 1))
        each = f" x {blas_threads} BLAS threads" if (blas_threads or 1) > 1 else ""
        raise ConfigError(
            f"--workers {workers}{each}: {threads} threads on the {cores} "
            f"core{'s' if cores != 1 else ''} this machine gives kmlp; use at most "
            f"{most} worker{'s' if most != 1 else ''}"
        )


def check_storage_arg(url: str | None) -> str:
    """The storage URL to use (flag, ``$KMLP_STORAGE``, default), checked as far as can be
    without connecting: well formed, and for SQLite a file (not a folder) in an existing
    folder. StorageError (one line, no password) otherwise."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)  # parses: a malformed URL is refused here
    if path is not None:
        shown = display_url(resolved)
        if path.is_dir():
            raise StorageError(f"cannot open {shown}: {path} is a folder, not a database file")
        if not path.parent.is_dir():
            raise StorageError(f"cannot open {shown}: folder {path.parent} does not exist")
    return resolved


def check_artifacts_arg(storage_url: str, artifacts: str | None) -> None:
    """ConfigError if the artifact place (``--artifacts``, ``$KMLP_ARTIFACTS`` or the
    default beside the database) cannot be used; nothing is created."""
    location = artifacts_location(storage_url, artifacts)
    if location.startswith("s3://"):
        if not urlsplit(location).netloc:
            raise ConfigError(f"artifact place {show(location)} has no bucket (s3://bucket/prefix)")
        return
    if "://" in location:
        raise ConfigError(f"artifact place {show(location)}: give a folder or s3://bucket/prefix")
    writable_folder("artifact folder", location)


def data_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``network.load_cifar10`` from the data flags."""
    return {
        "data_dir": args.data,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "dtype": getattr(args, "dtype", "float32"),
    }


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


__all__ = [
    "ConfigError",
    "add_data_args",
    "add_training_args",
    "check_training_args",
    "count_number",
    "data_options_from_args",
    "parse_hidden",
    "positive_int",
    "print_json",
    "seed_number",
    "step_float",
    "training_config_from_args",
    "whole_number",
]
