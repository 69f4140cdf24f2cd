"""The bad-input kit: every hostile value is one ``kmlp ...: error:`` line, exit 2, no
traceback, decided before any work, and nothing on disk changes.

Each row of ``ROWS`` is (subcommand, argv, a fragment the error line must contain). Rows
run ``kmlp.cli.main.main`` in this process (the subprocess sample below shows the real
``python -m kmlp`` gives the same line and code). Every run happens in a kit folder:

- ``$KMLP_DATA`` points at a folder that does not exist, so a command that got as far as
  loading data would fail with *that* message instead of the row's fragment: passing rows
  were refused before any work;
- ``$KMLP_STORAGE`` is ``{db}``, another application's SQLite file, whose sha256 must be
  the same after every row; and no file in the kit folder may appear, change or vanish.

Placeholders in argv: ``{tmp}`` the kit folder, ``{dir}`` an existing folder, ``{file}`` a
text file, ``{crafted}`` CIFAR-10 files declaring 100000 images, ``{planted}`` CIFAR-10
files whose pickle calls ``os.system``, ``{empty}`` an empty folder, ``{db}`` the SQLite
URL, ``{dbfile}`` its path.

Phase 2 adds rows for the study commands (launch, worker, studies, show, export,
retrain, dashboard, report) with ``--storage {db}`` and a place holding a real kmlp
study; the same checks then prove read-only commands leave the database untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kmlp.cli.main import main
from kmlp.network.threads import usable_cores
from tests.conftest import CIFAR_FILES, ROOT, crafted_cifar_batch

BIG = "9" * 5000  # a 5000-digit number
CORES = usable_cores()


@dataclass(frozen=True)
class Row:
    """One hostile invocation: ``kmlp *argv`` must fail with ``fragment`` in its one line."""

    command: str
    argv: tuple[str, ...]
    fragment: str

    @property
    def id(self) -> str:
        text = " ".join(self.argv[1:]) or self.command
        return f"{self.command}:{text[:60]}"


def rows(command: str, fragment: str, *variants: tuple[str, ...]) -> list[Row]:
    """Rows sharing a command and an expected fragment, one per argv variant."""
    return [Row(command, (*command.split(), *argv), fragment) for argv in variants]


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

# Phase 2: + study rows (launch, worker, studies, show, export, retrain, dashboard, report).
ROWS = [*TRAIN, *GRADCHECK, *DATA]


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
    """Exit 2, nothing on stdout, one stderr line ``kmlp[ cmd]: error: ...`` holding
    ``fragment`` (case-insensitive); returns the line."""
    lines = outcome.stderr.splitlines()
    assert outcome.code == 2, (outcome.code, outcome.stderr)
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    head, sep, _ = line.partition(": error: ")
    assert sep and head.split()[0] == "kmlp", line
    assert "Traceback" not in line and "internal error" not in line
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


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(in_kit: Kit, row: Row):
    before = in_kit.snapshot()
    assert_refused(run_in_process(in_kit.argv(row)), row.fragment)
    assert in_kit.snapshot() == before  # the database, the data, and no new files
    assert not Path("/tmp/kmlp-bad-input-pwned").exists()


SUBPROCESS_SAMPLE = [ROWS[i] for i in range(0, len(ROWS), max(1, len(ROWS) // 6))]


@pytest.mark.parametrize("row", SUBPROCESS_SAMPLE, ids=[row.id for row in SUBPROCESS_SAMPLE])
def test_the_real_command_says_the_same(kit: Kit, row: Row, monkeypatch: pytest.MonkeyPatch):
    """``python -m kmlp`` prints the very line the in-process run does, with exit 2."""
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
