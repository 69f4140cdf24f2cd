from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real CIFAR-10 folder from $KMLP_DATA; skips the test when it is not set."""
    path = os.environ.get("KMLP_DATA")
    if not path or not Path(path).exists():
        pytest.skip("KMLP_DATA is not set to the CIFAR-10 folder (.ci/run sets it)")
    return Path(path)


@pytest.fixture(scope="session")
def real_data(real_data_dir: Path):
    from kmlp.network import load_cifar10

    return load_cifar10(data_dir=real_data_dir, progress=False)


def synthetic_dataset(
    *, n_train: int = 600, n_val: int = 200, d: int = 30, seed: int = 0, dtype: str = "float32"
):
    """A small learnable problem: class means in d dimensions plus noise."""
    from kmlp.network import Dataset, Split

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(10, d))

    def split(n: int) -> Split:
        y = rng.integers(0, 10, size=n)
        X = centres[y] + rng.normal(0, 1.0, size=(n, d))
        return Split(X=X.astype(dtype), y=y.astype(np.int64))

    return Dataset(
        train=split(n_train),
        val=split(n_val),
        test=split(n_val),
        fingerprint="synthetic",
        source="synthetic",
    )


@pytest.fixture
def small_data():
    return synthetic_dataset()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> CliResult:
    """Run ``python -m kmlp ARGS`` in a subprocess, as a user would run ``kmlp``."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "kmlp", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or ROOT,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """A user error: non-zero exit, one line on stderr, no traceback."""
    assert result.code != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


# ---------------------------------------------------------------- CIFAR-10 files of our own

CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def cifar_batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    """One batch file's bytes, pickled as a Python 3 re-pickle of the official dict.

    Protocol 3 writes only the globals the official files use (protocol 2 from Python 3
    would add _codecs.encode for the bytes keys; the official files are Python 2 pickles).
    """
    return pickle.dumps({b"batch_label": b"fake", b"labels": labels, b"data": data}, protocol=3)


def write_fake_cifar(folder: Path, *, seed: int = 0, rows: int) -> dict[str, np.ndarray]:
    """Batch files of random images in ``folder``; returns the raw arrays (train = the five
    training batches stacked). ``rows`` other than 10000 needs ``small_cifar_batches``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data, labels = {}, {}
    for name in CIFAR_FILES:
        data[name] = rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8)
        labels[name] = rng.integers(0, 10, size=rows).tolist()
        (folder / name).write_bytes(cifar_batch_bytes(data[name], labels[name]))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}, 3))
    return {
        "X": np.concatenate([data[n] for n in CIFAR_FILES[:5]]),
        "y": np.concatenate([labels[n] for n in CIFAR_FILES[:5]]),
        "X_test": data["test_batch"],
        "y_test": np.array(labels["test_batch"]),
    }


def crafted_cifar_batch(*, rows: int = 100_000, how: str = "ndarray") -> bytes:
    """A hostile batch file that names only NumPy's allowed globals but declares ``rows``
    images and carries ``rows`` labels (about 2 bytes per row: 200 KB for 100000).

    ``how`` is the way it asks NumPy for a (rows, 3072) uint8 array without supplying the
    bytes: ``ndarray`` calls ``numpy.ndarray(shape, dtype)`` (uninitialised memory),
    ``reconstruct`` passes the shape to ``_reconstruct``, ``build`` gives an empty array a
    state with that shape and no data.
    """
    P = pickle

    def binint(v: int) -> bytes:
        return P.BININT + struct.pack("<i", v)

    shape = P.MARK + binint(rows) + binint(3072) + P.TUPLE
    u1 = (
        b"cnumpy\ndtype\n"
        + P.SHORT_BINSTRING + b"\x02u1" + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
        + P.MARK + P.BININT1 + b"\x03" + P.SHORT_BINSTRING + b"\x01|" + P.NONE * 3
        + binint(-1) + binint(-1) + P.BININT1 + b"\x00" + P.TUPLE + P.BUILD
    )  # fmt: skip
    reconstruct = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    if how == "ndarray":
        array = b"cnumpy\nndarray\n" + shape + u1 + P.TUPLE2 + P.REDUCE
    elif how == "reconstruct":
        array = reconstruct + shape + P.SHORT_BINSTRING + b"\x01B" + P.TUPLE3 + P.REDUCE
    elif how == "build":
        empty = P.MARK + P.BININT1 + b"\x00" + P.TUPLE + P.SHORT_BINSTRING + b"\x01b"
        state = P.MARK + P.BININT1 + b"\x01" + shape + u1 + P.NEWFALSE
        state += P.SHORT_BINSTRING + b"\x00" + P.TUPLE
        array = reconstruct + empty + P.TUPLE3 + P.REDUCE + state + P.BUILD
    else:
        raise ValueError(how)
    labels = b"".join(
        P.MARK + (P.BININT1 + bytes([i % 10])) * min(1000, rows - start) + P.APPENDS
        for i, start in enumerate(range(0, rows, 1000))
    )
    return (
        P.PROTO + b"\x02" + P.EMPTY_DICT + P.MARK
        + P.SHORT_BINSTRING + b"\x06labels" + P.EMPTY_LIST + labels
        + P.SHORT_BINSTRING + b"\x04data" + array
        + P.SETITEMS + P.STOP
    )  # fmt: skip


@pytest.fixture
def small_cifar_batches(monkeypatch: pytest.MonkeyPatch) -> int:
    """Let the loader read batch files of 20 images (the official ones have 10000), so that
    format tests work on small copies; returns the row count."""
    import kmlp.network.cifar_files

    monkeypatch.setattr(kmlp.network.cifar_files, "BATCH_ROWS", 20)
    return 20


@pytest.fixture(scope="session")
def full_size_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of six full-size batch files (10000 random images each, 184 MB), written
    once per session, for what must run on the official layout (the CLI, peak memory)."""
    folder = tmp_path_factory.mktemp("full-size") / "cifar-10-batches-py"
    write_fake_cifar(folder, seed=11, rows=10000)
    return folder
