"""``kmlp gradcheck``: analytic against centred-difference gradients, float64."""

from __future__ import annotations

import argparse

import numpy as np

from kmlp.cli.common import (
    count_number,
    nonnegative_float,
    parse_hidden,
    print_json,
    seed_number,
    step_float,
)
from kmlp.cli.options import add_json
from kmlp.network import MLP
from kmlp.network.checks import check_fits, network_bytes
from kmlp.network.gradcheck import gradient_check, randomise_bn_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hidden",
        type=parse_hidden,
        default=(50, 50),
        metavar="W1,W2,...",
        help="hidden layer widths (default 50,50)",
    )
    p.add_argument("--bn", action="store_true", help="batch normalisation on the hidden layers")
    p.add_argument(
        "--lam",
        type=nonnegative_float,
        default=0.01,
        help="L2 strength in the checked cost (default 0.01)",
    )
    p.add_argument("--samples", type=count_number, default=10, help="samples (default 10)")
    p.add_argument(
        "--dims",
        type=count_number,
        default=20,
        help="input dimension, reduced from 3072 (default 20)",
    )
    p.add_argument(
        "--h",
        type=step_float,
        default=1e-5,
        help="finite-difference step, in (0, 1] (default 1e-5)",
    )
    p.add_argument("--seed", type=seed_number, default=0, help="random seed (default 0)")
    add_json(p, what="the table")


def run(args: argparse.Namespace) -> int:
    sizes = [args.dims, *args.hidden, 10]
    # The float64 inputs plus the network, refused with the estimate before either exists.
    check_fits(
        f"a gradient check of {args.samples} samples through layer sizes {sizes}",
        8 * args.samples * args.dims
        + network_bytes(layer_sizes=sizes, itemsize=8, rows=args.samples),
    )
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.samples, args.dims))
    y = rng.integers(0, 10, size=args.samples)
    net = MLP(layer_sizes=sizes, batch_norm=args.bn, seed=rng, dtype="float64")
    randomise_bn_params(net, rng)
    rows = gradient_check(net, X, y, args.lam, h=args.h)
    if args.json:
        print_json([row.__dict__ | {"shape": list(row.shape)} for row in rows])
        return 0
    print(
        f"{'param':<8} {'shape':<10} {'rel. error':>11} {'max entry rel.':>15} "
        f"{'max abs. error':>15} {'max |grad|':>11}"
    )
    for r in rows:
        shape = "x".join(map(str, r.shape))
        print(
            f"{r.name:<8} {shape:<10} {r.relative_error:>11.2e} {r.max_entry_relative_error:>15.2e}"
            f" {r.max_absolute_error:>15.2e} {r.max_gradient:>11.2e}"
        )
    worst = max(r.relative_error for r in rows)
    print(f"largest relative error {worst:.2e} ({'ok' if worst < 1e-6 else 'FAILED'}, bar 1e-6)")
    return 0 if worst < 1e-6 else 1
