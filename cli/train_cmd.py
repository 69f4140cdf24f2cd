"""``kmlp train``: train one network, test it, optionally save it and plot its curves."""

from __future__ import annotations

import argparse
import sys

from cli.common import (
    add_training_args,
    data_options_from_args,
    print_json,
    training_config_from_args,
)
from network import load_cifar10, plot_curves, save_model
from network.evaluate import train_and_test


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one network and report its test accuracy",
        description="Train the k-layer network with cyclical learning rates, "
        "evaluate it on the test set.",
    )
    add_training_args(p)
    p.add_argument("--save", metavar="MODEL.npz", help="save the trained network (.npz + .json)")
    p.add_argument("--plot", metavar="CURVES.png", help="draw loss, cost and accuracy curves")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = training_config_from_args(args)
    data = load_cifar10(**data_options_from_args(args), progress=sys.stderr.isatty())
    tested = train_and_test(data=data, config=config, progress=sys.stderr.isatty())
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
            f"  ({r.seconds:.1f} s, {r.seconds_per_epoch:.3f} s/epoch, {r.epochs:g} epochs)"
        )
    return 0
