"""``kmlp train``: train one network, test it, optionally save it and plot its curves."""

from __future__ import annotations

import argparse
import sys

from kmlp.cli.common import (
    add_training_args,
    check_training_args,
    data_options_from_args,
    print_json,
    training_config_from_args,
)
from kmlp.cli.options import add_blas_threads, add_json, path_text
from kmlp.network import load_cifar10, plot_curves, save_model
from kmlp.network.evaluate import train_and_test


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_args(p)
    p.add_argument(
        "--save",
        type=path_text,
        metavar="MODEL.npz",
        help="save the trained network (.npz + .json)",
    )
    p.add_argument(
        "--plot",
        type=path_text,
        metavar="CURVES.png",
        help="draw loss, cost and accuracy curves (format from the suffix: png, pdf, svg, ...)",
    )
    add_json(p, what="the results")
    add_blas_threads(p)


def run(args: argparse.Namespace) -> int:
    config = training_config_from_args(args)
    check_training_args(args, config)  # before the data is loaded or a step is taken
    data = load_cifar10(**data_options_from_args(args), progress=sys.stderr.isatty())
    tested = train_and_test(
        data=data, config=config, progress=sys.stderr.isatty(), blas_threads=args.blas_threads
    )
    if args.save:
        save_model(tested.result.net, args.save, config=config)
    if args.plot:
        plot_curves(
            tested.result.history,
            args.plot,
            title=f"hidden {list(config.hidden)}, BN {config.batch_norm}, lambda {config.lam:g}",
        )
    summary = tested.summary()
    summary["data_fingerprint"] = data.fingerprint
    if args.json:
        print_json(summary)
    else:
        r = tested.result
        print(
            f"validation accuracy {r.val_accuracy:.2%}  test accuracy {tested.test_accuracy:.2%}"
            f"  ({r.seconds:.1f} s, {r.seconds_per_epoch:.3f} s/epoch, {r.epochs:g} epochs, "
            f"{r.blas_threads} BLAS thread{'s' if r.blas_threads != 1 else ''})"
        )
    return 0
