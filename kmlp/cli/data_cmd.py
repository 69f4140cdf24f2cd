"""``kmlp data download`` and ``kmlp data info``."""

from __future__ import annotations

import argparse
import json

import numpy as np

from kmlp.cli.options import path_text
from kmlp.network.data import download_cifar10, load_cifar10, resolve_data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``kmlp data download`` and ``kmlp data info``."""
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    dl = sub.add_parser(
        "download",
        help="fetch the official archive and verify its md5",
        description="Fetch cifar-10-python.tar.gz (or $KMLP_CIFAR_URL) and verify its md5.",
    )
    dl.add_argument(
        "--dest",
        type=path_text,
        metavar="DIR",
        help="folder to download into (default: the cache folder, $KMLP_CACHE or ~/.cache/kmlp)",
    )
    dl.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    dl.set_defaults(func=run_download)

    info = sub.add_parser(
        "info",
        help="show where CIFAR-10 is found, split sizes and fingerprint",
        description="Load CIFAR-10 as training would and describe it (never downloads).",
    )
    info.add_argument(
        "--data",
        type=path_text,
        metavar="DIR",
        help="CIFAR-10 folder, its parent, or the .tar.gz archive "
        "(default: $KMLP_DATA, else the cache folder)",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=run_info)


def run_download(args: argparse.Namespace) -> int:
    path = download_cifar10(dest=args.dest, progress=not args.no_progress)
    print(f"CIFAR-10 archive verified and saved to {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    looked_in = resolve_data_dir(args.data)
    data = load_cifar10(data_dir=args.data, download=False, progress=False)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    summary = {
        "looked_in": str(looked_in),
        "source": data.source,
        "fingerprint": data.fingerprint,
        "features": int(data.train.X.shape[1]),
        "dtype": str(data.train.X.dtype),
        **{f"n_{name}": len(split) for name, split in splits.items()},
        "class_counts": {
            name: np.bincount(split.y, minlength=10).tolist() for name, split in splits.items()
        },
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"source:      {summary['source']}")
    print(f"fingerprint: {summary['fingerprint']}")
    for name, split in splits.items():
        counts = " ".join(str(c) for c in summary["class_counts"][name])
        print(f"{name + ':':<12} {len(split):>6} x {split.X.shape[1]}  per class: {counts}")
    return 0
