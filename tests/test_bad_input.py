"""The bad-input kit: every hostile value is one ``kmlp: error:`` line, exit 2, no
traceback, decided before any work, and nothing on disk changes.

Each row of the tables is (subcommand, argv, a fragment the error line must contain):
every subcommand, each of its options, and hostile values (out of range, not numbers,
5000 digits, empty, very long, NUL, newlines, escapes, unicode, shell metacharacters,
crafted files, storage URLs with a password). Rows run ``kmlp.cli.main.main`` in this
process (the subprocess sample below shows the real ``python -m kmlp`` gives the same line
and code). Every run happens in a kit folder:

- ``$KMLP_DATA`` points at a folder that does not exist, so a command that got as far as
  loading data would fail with *that* message instead of the row's fragment: passing rows
  were refused before any work;
- ``$KMLP_STORAGE`` is ``{db}``, another application's SQLite file, and the kit holds a
  real kmlp study made by ``kmlp launch`` on real CIFAR-10 (``{kdb}``; its artifacts and
  an export beside it): no file in the kit folder may appear, change (sha256) or vanish
  after any row, so failing commands lose no stored trial and read-only ones write
  nothing;
- no line may show the password of a storage URL given on the command line.

Placeholders in argv: ``{tmp}`` the kit folder, ``{dir}`` an existing folder, ``{file}`` a
text file, ``{crafted}`` CIFAR-10 files declaring 100000 images, ``{planted}`` CIFAR-10
files whose pickle calls ``os.system``, ``{empty}`` an empty folder, ``{db}`` the SQLite
URL, ``{dbfile}`` its path; ``{kdb}`` the study's storage URL, ``{export}`` its export
file, ``{x-NAME}`` crafted export files (``CRAFTED_EXPORTS``), ``{cifar}`` the real data;
``{foreign}`` a fresh copy of another application's SQLite file per row, whose sha256
must not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmlp.cli.main import main
from kmlp.network.threads import usable_cores
from tests.conftest import CIFAR_FILES, ROOT, crafted_cifar_batch
from tests.helpers.studies import DATA as REAL_DATA
from tests.helpers.studies import SMALL, kmlp

BIG = "9" * 5000  # a 5000-digit number
CORES = usable_cores()
LONG = "x" * 5000
SECRET = "S3cretPW"
MALFORMED_PG = f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/test"
UNREACHABLE_PG = f"postgresql://postgres:{SECRET}@127.0.0.1:1/test"
HOSTILE_NAMES = ("", " x", "a\nb", "a\0b", "\x1b[31mred", "a\u202egnp.exe", LONG)


@dataclass(frozen=True)
class Row:
    """One hostile invocation: ``kmlp *argv`` must fail with ``fragment`` in its one line."""

    command: str
    argv: tuple[str, ...]
    fragment: str
    xfail: str | None = None  # why it cannot hold yet

    @property
    def id(self) -> str:
        words = len(self.command.split())
        text = " ".join(self.argv[words:]) or self.command
        text = text.encode("unicode_escape").decode("ascii")
        return f"{self.argv[0] if self.argv else 'kmlp'}:{text[:70]}"

    @property
    def param(self) -> object:
        marks = [pytest.mark.xfail(reason=self.xfail, strict=False)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def rows(command: str, fragment: str, *variants: tuple[str, ...], xfail: str | None = None):
    """Rows sharing a command (with any leading arguments) and an expected fragment, one
    per argv variant."""
    return [Row(command, (*command.split(), *argv), fragment, xfail) for argv in variants]


TRAIN = [
    *rows("train", "--seed", ("--seed", "-1"), ("--seed", "1.5"), ("--seed", "1e3")),
    *rows("train", "--seed", ("--seed", "abc"), ("--seed", ""), ("--seed", "١٢")),
    *rows("train", "2^63-1", ("--seed", "99999999999999999999"), ("--seed", BIG)),
    *rows("train", "memory", ("--hidden", "100000000"), ("--hidden", "50,50,100000000")),
    *rows("train", "hidden widths entry", ("--hidden", "999999999999")),
    *rows("train", "hidden widths", ("--hidden", "0"), ("--hidden", "-5"), ("--hidden", "5.5")),
    *rows("train", "hidden widths", ("--hidden", "5 5"), ("--hidden", ","), ("--hidden", "²")),
    *rows("train", "hidden widths", ("--hidden", "50,,50"), ("--hidden", "1e3")),
    *rows("train", "hidden widths", ("--hidden", BIG)),
    *rows("train", "--lam", ("--lam", "-1"), ("--lam", "nan"), ("--lam", "inf")),
    *rows("train", "--lam", ("--lam", "-inf"), ("--lam", "1e999"), ("--lam", "")),
    *rows("train", "--lam", ("--lam", "abc"), ("--lam", "0x10"), ("--lam", BIG + "e9")),
    *rows("train", "--cycles", ("--cycles", "0"), ("--cycles", "-1"), ("--cycles", "1.5")),
    *rows("train", "--cycles", ("--cycles", "1000000000000")),
    *rows("train", "checkpoints", ("--cycles", "1000000")),
    *rows("train", "--batch-size", ("--batch-size", "0"), ("--batch-size", "2.5")),
    *rows("train", "--batch-size", ("--batch-size", "-1"), ("--batch-size", "abc")),
    *rows("train", "--eta-min", ("--eta-min", "0"), ("--eta-min", "-1"), ("--eta-min", "nan")),
    *rows("train", "--eta-max", ("--eta-max", "inf"), ("--eta-max", "0")),
    *rows("train", "min <= max", ("--eta-min", "1", "--eta-max", "0.1")),
    *rows("train", "--n-s", ("--n-s", "0"), ("--n-s", "-3"), ("--n-s", "2.5")),
    *rows("train", "init", ("--init", "foo"), ("--init", ""), ("--init", "sigma=")),
    *rows("train", "sigma", ("--init", "sigma=nan"), ("--init", "sigma=inf")),
    *rows("train", "sigma", ("--init", "sigma=0"), ("--init", "sigma=-1")),
    *rows("train", "sigma", ("--init", "sigma=1e400"), ("--init", "sigma=1e31")),
    *rows("train", "--dtype", ("--dtype", "float16"), ("--dtype", "")),
    *rows("train", "must be <= 45000", ("--n-train", "45001")),
    *rows("train", "--n-train", ("--n-train", "0"), ("--n-train", "-1"), ("--n-train", "1.5")),
    *rows("train", "must be <= 5000", ("--n-val", "5001")),
    *rows("train", "--n-val", ("--n-val", "0")),
    *rows("train", "does not exist", ("--data", "/nonexistent/kmlp-cifar")),
    *rows("train", "not a readable", ("--data", "{file}")),
    *rows("train", "has no cifar-10", ("--data", "{empty}")),
    *rows("train", "data_batch_1", ("--data", "{crafted}")),
    *rows("train", "forbidden global", ("--data", "{planted}")),
    *rows("train", "is a folder", ("--save", "{dir}"), ("--save", "{tmp}/new/")),
    *rows("train", "cannot write there", ("--save", "/proc/kmlp/m.npz")),
    *rows("train", "is not a folder", ("--save", "{file}/m.npz")),
    *rows("train", "unknown image format", ("--plot", "x.xyz"), ("--plot", "{tmp}/c.png.exe")),
    *rows("train", "is a folder", ("--plot", "{dir}")),
    *rows("train", "cannot write there", ("--plot", "/proc/kmlp/c.png")),
    *rows("train", "empty path", ("--plot", ""), ("--save", "")),
    *rows("train", "--blas-threads", ("--blas-threads", "0"), ("--blas-threads", "-1")),
    *rows("train", "--blas-threads", ("--blas-threads", "2.5")),
    *rows("train", "cores", ("--blas-threads", "1000000"), ("--blas-threads", str(CORES + 1))),
    *rows("train", "unrecognized arguments", ("--colour", "red")),
    *rows("train", "ignored explicit argument", ("--bn=yes",)),
]

GRADCHECK = [
    *rows("gradcheck", "--h", ("--h", "0"), ("--h", "-1"), ("--h", "nan"), ("--h", "inf")),
    *rows("gradcheck", "--h", ("--h", "-inf"), ("--h", "abc"), ("--h", "1e999")),
    *rows("gradcheck", "--h", ("--h", "2"), ("--h", ""), ("--h", "0.0")),
    *rows("gradcheck", "--seed", ("--seed", "-1"), ("--seed", "1.5")),
    *rows("gradcheck", "--samples", ("--samples", "0"), ("--samples", "2.5")),
    *rows("gradcheck", "memory", ("--samples", "1000000000"), ("--dims", "1000000000")),
    *rows("gradcheck", "memory", ("--hidden", "100000000")),
    *rows("gradcheck", "--dims", ("--dims", "0"), ("--dims", "-4")),
    *rows("gradcheck", "hidden widths", ("--hidden", "0"), ("--hidden", "x")),
    *rows("gradcheck", "--lam", ("--lam", "-1"), ("--lam", "nan")),
]

DATA = [
    *rows("data", "required", ()),
    *rows("data", "invalid choice", ("bogus",)),
    *rows("data info", "does not exist", ("--data", "/nonexistent/kmlp-cifar")),
    *rows("data info", "not a readable", ("--data", "{file}")),
    *rows("data info", "has no cifar-10", ("--data", "{empty}")),
    *rows("data info", "data_batch_1", ("--data", "{crafted}")),
    *rows("data info", "forbidden global", ("--data", "{planted}")),
    *rows("data info", "file name too long", ("--data", "/tmp/" + "x" * 5000)),
    *rows("data download", "cannot write the download", ("--dest", "/proc/kmlp")),
    *rows("data download", "cannot write the download", ("--dest", "{file}")),
]

L = "launch --study x --storage {kdb} --data {cifar}"  # a launch that would run
LAUNCH = [
    *rows(L, "--ranges", ("--ranges", ""), ("--ranges", ";"), ("--ranges", " ; ")),
    *rows(L, "range 1", ("--ranges", "-5,-1;x"), ("--ranges", "-5,-1;-3")),
    *rows(L, "range 0", ("--ranges", "-5"), ("--ranges", "a,b"), ("--ranges", "-5,-1,0")),
    *rows(L, "low must be < high", ("--ranges", "-1,-5"), ("--coarse", "1", "-1")),
    *rows(L, "finite", ("--ranges", "nan,1"), ("--ranges", "-inf,1"), ("--coarse", "nan", "1")),
    *rows(L, "finite", ("--coarse", "-5", "inf"), ("--coarse", "1e999", "1")),
    *rows(L, "within", ("--ranges", "-500,-1"), ("--coarse", "-1e308", "1e308")),
    *rows(L, "within", ("--coarse", "5", "400")),
    *rows(L, "at most 100", ("--ranges", "-5,-1;" * 101)),
    *rows(L, "--coarse", ("--coarse", "abc", "1"), ("--coarse", "1"), ("--coarse", BIG, "1")),
    *rows(L, "--trials", ("--trials", "0"), ("--trials", "-1"), ("--trials", "abc")),
    *rows(L, "--trials", ("--trials", ""), ("--trials", "1.5"), ("--trials", "1e3")),
    *rows(L, "--trials", ("--trials", "20,"), ("--trials", BIG), ("--trials", "٣")),
    *rows(L, "from 1 to 100000", ("--trials", "999999999"), ("--trials", "5,100001")),
    *rows(L, "one per stage", ("--trials", "5,5", "--stages", "3")),
    *rows(L, "--ranges gives 2", ("--ranges", "-5,-1;-3,-2", "--stages", "3")),
    *rows(L, "--stages", ("--stages", "0"), ("--stages", "101"), ("--stages", BIG)),
    *rows(L, "--stages", ("--stages", "1.5"), ("--stages", "-2")),
    *rows(L, "--top-k", ("--top-k", "0"), ("--top-k", "-1"), ("--top-k", BIG)),
    *rows(L, "--top-k", ("--top-k", "100001"), ("--top-k", "2.5")),
    *rows(L, "margin", ("--margin", "nan"), ("--margin", "0.7"), ("--margin", "0")),
    *rows(L, "margin", ("--margin", "-0.1"), ("--margin", "abc"), ("--margin", "inf")),
    *rows(L, "--seed", ("--seed", "-1"), ("--seed", "1.5"), ("--seed", BIG)),
    *rows(L, "--workers", ("--workers", "0"), ("--workers", "-1"), ("--workers", BIG)),
    *rows(
        L, "cores", ("--workers", str(CORES + 1)), ("--workers", "2", "--blas-threads", str(CORES))
    ),
    *rows(L, "cores", ("--blas-threads", "1000000"), ("--blas-threads", str(CORES + 1))),
    *rows(L, "--blas-threads", ("--blas-threads", "0"), ("--blas-threads", BIG)),
    *rows(L, "invalid choice", ("--sampler", "grid"), ("--dtype", "float16")),
    *rows(L, "invalid choice", ("--pruner", "hyperband"), ("--pruner", "")),
    *rows(L, "contradicts", ("--no-prune", "--pruner", "halving")),
    *rows(L, "--lockstep", ("--lockstep", "0"), ("--lockstep", "65"), ("--lockstep", "2.5")),
    *rows(L, "--lockstep", ("--lockstep", BIG), ("--lockstep", "x")),
    *rows(L, "in lockstep", ("--lockstep", "64", "--hidden", "20000")),
    *rows(L, "--study", *(("--study", name) for name in HOSTILE_NAMES)),
    *rows(L, "--storage", ("--storage", ""), ("--storage", "a\nb"), ("--storage", LONG)),
    *rows(L, "malformed storage URL", ("--storage", MALFORMED_PG), ("--storage", "garbage")),
    *rows(L, "refused", ("--storage", UNREACHABLE_PG)),
    *rows(L, "no database driver", ("--storage", "notascheme://")),
    *rows(L, "does not exist", ("--storage", "sqlite:////nonexistent/kmlp/k.db")),
    *rows(L, "is a folder", ("--storage", "sqlite:///{dir}")),
    *rows(L, "not a database", ("--storage", "sqlite:///{file}")),
    *rows(L, "artifact place", ("--artifacts", "ftp://x/y"), ("--artifacts", "s3://")),
    *rows(L, "cannot write there", ("--artifacts", "/proc/kmlp")),
    *rows(L, "is a file", ("--artifacts", "{file}")),
    *rows(L, "is not a folder", ("--artifacts", "{file}/a")),
    *rows(L, "--artifacts", ("--artifacts", ""), ("--artifacts", "a\0b")),
    *rows(L, "different configuration", ("--study", "kit", "--hidden", "20")),
    *rows(L, "different configuration", ("--study", "kit", "--trials", "3")),
    *rows(L, "memory", ("--hidden", "100000000"), ("--workers", "2", "--hidden", "50000000")),
    *rows(L, "does not exist", ("--data", "/nonexistent/kmlp-cifar"), ("--data", "{empty}/x")),
    *rows(L, "has no cifar-10", ("--data", "{empty}")),
    *rows(L, "data_batch_1", ("--data", "{crafted}")),
    *rows(L, "forbidden global", ("--data", "{planted}")),
    *rows(L, "--data", ("--data", ""), ("--data", "a\nb")),
    *rows(L, "--n-train", ("--n-train", "45001"), ("--n-train", "0"), ("--n-train", BIG)),
    *rows(L, "--n-val", ("--n-val", "5001"), ("--n-val", "x")),
    *rows(L, "unrecognized arguments", ("--colour", "red"), ("--lam", "0.1")),
    *rows("launch", "required", ("--storage", "{kdb}")),
]

W = "worker --storage {kdb}"
WORKER = [
    *rows(W, "no study named", ("--study", "nope"), ("--study", "$(touch pwned)")),
    *rows(W, "--study", *(("--study", name) for name in HOSTILE_NAMES)),
    *rows(W, "required", ()),
    *rows(W, "cores", ("--study", "kit", "--blas-threads", "1000000")),
    *rows(W, "--blas-threads", ("--study", "kit", "--blas-threads", "0")),
    *rows(
        W,
        "--lockstep",
        ("--study", "kit", "--lockstep", "0"),
        ("--study", "kit", "--lockstep", "x"),
    ),
    *rows(W, "does not exist", ("--study", "kit", "--data", "/nonexistent/kmlp-cifar")),
    *rows(W, "cannot write there", ("--study", "kit", "--artifacts", "/proc/kmlp")),
    *rows(W, "malformed storage URL", ("--study", "kit", "--storage", MALFORMED_PG)),
    *rows(W, "not a database", ("--study", "kit", "--storage", "sqlite:///{file}")),
    *rows(W, "does not exist", ("--study", "kit", "--storage", "sqlite:///{tmp}/none.db")),
    *rows(W, "other-app.db", ("--study", "kit", "--storage", "{foreign}")),
]

STUDIES = [
    *rows("studies", "not a database", ("--storage", "sqlite:///{file}")),
    *rows("studies", "does not exist", ("--storage", "sqlite:///{tmp}/none.db")),
    *rows("studies", "does not exist", ("--storage", "sqlite:////nonexistent/kmlp/k.db")),
    *rows("studies", "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("studies", "refused", ("--storage", UNREACHABLE_PG)),
    *rows("studies", "no database driver", ("--storage", "notascheme://x")),
    *rows("studies", "--storage", ("--storage", ""), ("--storage", "a\0b"), ("--storage", LONG)),
    *rows("studies", "that long", ("--storage", f"postgresql://u:{SECRET}@{LONG}/db")),
    *rows("studies", "newlines", ("--storage", f"postgresql://u:{SECRET}@h\n/db")),
    *rows("studies", "unrecognized arguments", ("--storage", "{kdb}", "extra")),
    *rows("studies", "other-app.db", ("--storage", "{foreign}")),
    *rows("studies", "other-app.db", ()),  # $KMLP_STORAGE
]

S = "show --storage {kdb}"
SHOW = [
    *rows(S, "no study named", ("--study", "nope"), ("--study", "$(touch pwned)")),
    *rows(S, "no study named", ("--study", "a b; rm -rf x"), ("--study", "λ-étude-研究")),
    *rows(S, "--study", *(("--study", name) for name in HOSTILE_NAMES)),
    *rows("show", "not a database", ("--storage", "sqlite:///{file}")),
    *rows("show", "does not exist", ("--storage", "sqlite:///{tmp}/none.db")),
    *rows("show", "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("show", "refused", ("--storage", UNREACHABLE_PG, "--study", "x")),
    *rows("show", "other-app.db", ("--storage", "{foreign}")),
    *rows("show", "other-app.db", ("--study", "kit")),  # $KMLP_STORAGE
]

E = "export --study kit --storage {kdb}"
EXPORT = [
    *rows(E, "empty path", ("-o", ""), ("--output", "")),
    *rows(E, "is a folder", ("-o", "{dir}"), ("-o", "{tmp}/new/")),
    *rows(E, "does not exist", ("-o", "{tmp}/new/best.json"), ("-o", "/nonexistent/b.json")),
    *rows(E, "cannot write there", ("-o", "/proc/kmlp/best.json")),
    *rows(E, "is not a folder", ("-o", "{file}/best.json")),
    *rows(E, "--output", ("-o", "a\nb.json"), ("-o", "a\0b")),
    *rows(E, "no study named", ("--study", "nope"), ("--study", "$(touch pwned)")),
    *rows(E, "--study", *(("--study", name) for name in HOSTILE_NAMES)),
    *rows("export --study kit", "not a database", ("--storage", "sqlite:///{file}")),
    *rows("export --study kit", "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("export --study kit", "other-app.db", ("--storage", "{foreign}")),
    *rows("export", "required", ("--storage", "{kdb}")),
]

# Export files made from the kit study's real export, each changed one way.
CRAFTED_EXPORTS = {
    "batch-float": ("config", "batch_size", 100.0),
    "cycles-float": ("config", "cycles", 1.5),
    "seed-string": ("config", "seed", "0"),
    "hidden-string": ("config", "hidden", "55"),
    "hidden-huge": ("config", "hidden", [100_000_000]),
    "cycles-huge": ("config", "cycles", 1_000_000),
    "lam-negative": ("config", "lam", -1.0),
    "config-extra": ("config", "evil", "$(touch pwned)"),
    "config-list": (None, "config", [1, 2]),
    "data-list": (None, "data", []),
    "data-string": (None, "data", "x"),
    "n-train-float": ("data", "n_train", 2.5),
    "threads": (None, "blas_threads", 1_000_000),
    "threads-huge": (None, "blas_threads", 10**30),
    "trial-huge": (None, "trial", BIG),  # written as a bare 5000-digit number
    "study-newline": (None, "study", "a\nb"),
    "study-empty": (None, "study", ""),
    "no-format": (None, "format", "something-else"),
    "version": (None, "format_version", 99),
    "storage-list": (None, "storage", ["x"]),
}
R = "retrain {export}"
RETRAIN = [
    *rows(R, "--cycles", ("--cycles", "0"), ("--cycles", "1.5"), ("--cycles", BIG)),
    *rows(R, "checkpoints", ("--cycles", "1000000")),
    *rows(R, "cores", ("--blas-threads", "1000000")),
    *rows(R, "--val-size", ("--val-size", "0"), ("--val-size", "x")),
    *rows(R, "val_pool", ("--val-size", "50000")),
    *rows(R, "n_train", ("--n-train", "999999"), ("--n-train", "49500", "--val-size", "1000")),
    *rows(R, "drop --n-train", ("--as-searched", "--n-train", "5")),
    *rows(R, "--seeds", ("--seeds", "0"), ("--seeds", "1.5"), ("--seeds", BIG)),
    *rows(R, "--jobs", ("--jobs", "0"), ("--jobs", "x"), ("--jobs", "1000")),
    *rows(R, "--seed", ("--seed", "-1"), ("--seed", BIG)),
    *rows(R, "drop --seeds", ("--seeds", "2", "--save", "{tmp}/m.npz")),
    *rows(R, "cannot write there", ("--save", "/proc/kmlp/m.npz")),
    *rows(R, "is a folder", ("--save", "{dir}")),
    *rows(R, "empty path", ("--save", ""), ("--data", "")),
    *rows(R, "does not exist", ("--data", "/nonexistent/kmlp-cifar")),
    *rows(R, "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("retrain", "empty path", ("",)),
    *rows("retrain", "no such export file", ("{tmp}/missing.json",)),
    *rows("retrain", "cannot read", ("{dir}",), ("{dbfile}",)),
    *rows("retrain", "not json", ("{file}",)),
    *rows("retrain", "too big", ("/dev/zero",)),
    *rows("retrain", "batch size", ("{x-batch-float}",)),
    *rows("retrain", "cycles", ("{x-cycles-float}",)),
    *rows("retrain", "seed", ("{x-seed-string}",)),
    *rows("retrain", "hidden", ("{x-hidden-string}",)),
    *rows("retrain", "memory", ("{x-hidden-huge}",)),
    *rows("retrain", "checkpoints", ("{x-cycles-huge}",)),
    *rows("retrain", "lam", ("{x-lam-negative}",)),
    *rows("retrain", "unknown training configuration keys", ("{x-config-extra}",)),
    *rows("retrain", '"config" must be an object', ("{x-config-list}",)),
    *rows("retrain", '"data" must be an object', ("{x-data-list}",), ("{x-data-string}",)),
    *rows("retrain", '"data.n_train"', ("{x-n-train-float}",)),
    *rows("retrain", "BLAS threads 1000000", ("{x-threads}",)),
    *rows("retrain", "31-digit number is too large", ("{x-threads-huge}",)),
    *rows("retrain", "number too long", ("{x-trial-huge}",)),
    *rows("retrain", '"study" must be a study name', ("{x-study-newline}",), ("{x-study-empty}",)),
    *rows("retrain", "not a kmlp export", ("{x-no-format}",)),
    *rows("retrain", "format version 99", ("{x-version}",)),
    *rows("retrain", '"storage" must be a string', ("{x-storage-list}",)),
]

D = "dashboard --storage {kdb}"
DASHBOARD = [
    *rows(D, "--port", ("--port", "99999"), ("--port", "-1"), ("--port", "abc")),
    *rows(D, "--port", ("--port", "1.5"), ("--port", BIG), ("--port", "")),
    *rows(D, "--host", ("--host", ""), ("--host", "a b"), ("--host", "a\nb"), ("--host", LONG)),
    *rows(D, "cannot listen on host", ("--host", "no-such-host.invalid", "--port", "0")),
    *rows(D, "unsupported artifact location", ("--artifacts", "ftp://x/y", "--port", "0")),
    *rows("dashboard", "not a database", ("--storage", "sqlite:///{file}")),
    *rows("dashboard", "does not exist", ("--storage", "sqlite:///{tmp}/none.db")),
    *rows("dashboard", "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("dashboard", "refused", ("--storage", UNREACHABLE_PG)),
    *rows("dashboard --port 0", "other-app.db", ("--storage", "{foreign}")),
]

P = "report --study kit --storage {kdb}"
REPORT = [
    *rows(P, "empty path", ("--out", "")),
    *rows(P, "is a file", ("--out", "{file}")),
    *rows(P, "cannot write there", ("--out", "/proc/kmlp")),
    *rows(P, "is not a folder", ("--out", "{file}/report")),
    *rows(P, "--out", ("--out", "a\nb"), ("--out", "a\0b")),
    *rows(P, "required", ()),
    *rows(P, "no study named", ("--study", "nope", "--out", "{tmp}/r")),
    *rows(P, "--study", *(("--study", name, "--out", "{tmp}/r") for name in HOSTILE_NAMES)),
    *rows("report --out {tmp}/r", "not a database", ("--storage", "sqlite:///{file}")),
    *rows("report --out {tmp}/r", "malformed storage URL", ("--storage", MALFORMED_PG)),
    *rows("report --out {tmp}/r", "other-app.db", ("--storage", "{foreign}")),
]

USAGE = [
    *rows("", "required: COMMAND", ()),
    *rows("", "invalid choice", ("bogus",), ("$(touch pwned)",), ("a\nb",)),
    *rows("", "unrecognized arguments", ("--colour", "studies")),
    *rows("show", "ambiguous option", (f"--st={MALFORMED_PG}",)),
]

STUDY_ROWS = [*LAUNCH, *WORKER, *STUDIES, *SHOW, *EXPORT, *RETRAIN, *DASHBOARD, *REPORT]
ROWS = [*TRAIN, *GRADCHECK, *DATA, *USAGE, *STUDY_ROWS]


# ---------------------------------------------------------------- the kit folder


@dataclass(frozen=True)
class Kit:
    root: Path
    places: dict[str, str]
    env: dict[str, str]

    def argv(self, row: Row) -> list[str]:
        filled = []
        for arg in row.argv:
            for name, value in self.places.items():
                arg = arg.replace("{" + name + "}", value)
            filled.append(arg)
        return filled

    def snapshot(self) -> dict[str, str]:
        """Every file and folder under the kit folder, with each file's sha256."""
        state = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
        return state


class _Planted:
    def __reduce__(self):
        return os.system, ("touch /tmp/kmlp-bad-input-pwned",)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    root = tmp_path_factory.mktemp("bad-input")
    places = {"tmp": root, "dir": root / "a-folder", "empty": root / "empty"}
    for folder in places.values():
        folder.mkdir(exist_ok=True)
    places["file"] = root / "notes.txt"
    places["file"].write_text("not CIFAR-10, not an archive\n")
    for name, content in (
        ("crafted", crafted_cifar_batch(rows=100_000, how="ndarray")),
        ("planted", pickle.dumps({b"data": _Planted(), b"labels": [0]}, protocol=2)),
    ):
        places[name] = root / name
        places[name].mkdir()
        for batch in CIFAR_FILES:
            (places[name] / batch).write_bytes(content)
    dbfile = root / "other-app.db"
    with contextlib.closing(sqlite3.connect(dbfile)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
        db.commit()
    text = {name: str(path) for name, path in places.items()}
    text |= {"dbfile": str(dbfile), "db": f"sqlite:///{dbfile}"}
    env = {
        "KMLP_DATA": str(root / "no-data-here"),  # loading data = the wrong error
        "KMLP_STORAGE": text["db"],
        "KMLP_CACHE": str(root / "cache"),
        "KMLP_CIFAR_URL": "http://127.0.0.1:9/cifar-10-python.tar.gz",  # never the internet
        "KMLP_ARTIFACTS": str(root / "artifacts"),
    }
    return Kit(root=root, places=text, env=env)


@pytest.fixture(scope="module")
def study_kit(kit: Kit) -> Kit:
    """The kit with a real kmlp study in it: ``kmlp launch`` on real CIFAR-10 (1 stage x
    2 trials, published for the dashboard), its export, and crafted exports."""
    folder = kit.root / "study"
    folder.mkdir()
    url = f"sqlite:///{folder / 'k.db'}"
    done = kmlp(
        "launch", "--study", "kit", "--storage", url, "--data", REAL_DATA or "", *SMALL,
        "--stages", "1", "--trials", "2", "--workers", "1", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    export = folder / "best.json"
    done = kmlp("export", "--study", "kit", "--storage", url, "-o", str(export), cwd=folder)
    assert done.returncode == 0, done.stderr
    places = {"kdb": url, "export": str(export), "cifar": REAL_DATA or ""}
    document = json.loads(export.read_text())
    crafted = kit.root / "crafted-exports"
    crafted.mkdir()
    for name, (section, key, value) in CRAFTED_EXPORTS.items():
        changed = json.loads(json.dumps(document))
        (changed[section] if section else changed)[key] = value
        path = crafted / f"{name}.json"
        path.write_text(json.dumps(changed).replace(f'"{BIG}"', BIG))
        places[f"x-{name}"] = str(path)
    kit.places.update(places)
    return kit


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_in_process(argv: list[str]) -> Outcome:
    """``kmlp *argv`` through ``main``, capturing its output; an escaping exception is a
    traceback and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue())


def assert_refused(outcome: Outcome, fragment: str) -> str:
    """Exit 2, nothing on stdout, one stderr line ``kmlp: error: ...`` holding
    ``fragment`` (case-insensitive) and no storage password; returns the line."""
    lines = outcome.stderr.splitlines()
    assert outcome.code == 2, (outcome.code, outcome.stderr)
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("kmlp: error: "), line
    assert "Traceback" not in line and "internal error" not in line
    assert SECRET not in line
    assert fragment.lower() in line.lower(), line
    assert outcome.stdout == "", outcome.stdout
    return line


@pytest.fixture
def in_kit(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> Kit:
    for name in [n for n in os.environ if n.startswith("KMLP_")]:
        monkeypatch.delenv(name)
    for name, value in kit.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(kit.places["empty"])
    return kit


_STUDY_PLACES = ("{kdb}", "{export}", "{x-", "{cifar}")


def needs_study(row: Row) -> bool:
    return any(place in arg for arg in row.argv for place in _STUDY_PLACES)


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Interrupt this process after ``seconds`` (a row that wrongly started serving the
    dashboard returns then, and fails its test, instead of hanging the suite)."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("row", [row.param for row in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(
    in_kit: Kit,
    row: Row,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    if needs_study(row):
        if not REAL_DATA:
            pytest.skip("set KMLP_DATA to the CIFAR-10 folder (the kit's study is real)")
        request.getfixturevalue("study_kit")
    argv = in_kit.argv(row)
    foreign = tmp_path / "other-app.db"  # a fresh copy each row: it must stay as it is
    foreign.write_bytes(Path(in_kit.places["dbfile"]).read_bytes())
    argv = [arg.replace("{foreign}", f"sqlite:///{foreign}") for arg in argv]
    # $KMLP_STORAGE too: a row that wrongly wrote into it must not change later rows
    monkeypatch.setenv("KMLP_STORAGE", f"sqlite:///{foreign}")
    before, foreign_before = in_kit.snapshot(), sha256(foreign)
    with watchdog(20):
        outcome = run_in_process(argv)
    try:
        assert_refused(outcome, row.fragment)
        assert SECRET not in outcome.stdout
    finally:  # nothing written, whatever the message
        assert in_kit.snapshot() == before  # the databases, the data, and no new files
        assert sha256(foreign) == foreign_before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.db"]
        assert not Path("/tmp/kmlp-bad-input-pwned").exists()
        assert not (Path(in_kit.places["empty"]) / "pwned").exists()


# Every 25th row (NUL cannot be passed to a process; the fresh foreign copy is in-process only).
SUBPROCESS_SAMPLE = [
    row
    for row in ROWS[::25]
    if not row.xfail and not any("\0" in arg or "{foreign}" in arg for arg in row.argv)
]


@pytest.mark.parametrize("row", [row.param for row in SUBPROCESS_SAMPLE])
def test_the_real_command_says_the_same(
    kit: Kit, row: Row, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
):
    """``python -m kmlp`` prints the very line the in-process run does, with exit 2."""
    if needs_study(row):
        if not REAL_DATA:
            pytest.skip("set KMLP_DATA to the CIFAR-10 folder (the kit's study is real)")
        request.getfixturevalue("study_kit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMLP_")} | kit.env
    proc = subprocess.run(
        [sys.executable, "-m", "kmlp", *kit.argv(row)],
        capture_output=True,
        text=True,
        env=env,
        cwd=kit.places["empty"],
        timeout=120,
    )
    line = assert_refused(Outcome(proc.returncode, proc.stdout, proc.stderr), row.fragment)
    for name in [n for n in os.environ if n.startswith("KMLP_")]:
        monkeypatch.delenv(name)
    for name, value in kit.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(kit.places["empty"])
    assert run_in_process(kit.argv(row)).stderr.strip() == line
    assert ROOT.is_dir()  # ran from outside the repository, as a user would
