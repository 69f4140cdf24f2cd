"""The CIFAR-10 loader checks the official layout while it walks a batch's pickle, before
anything the file declares is allocated, and reads with little more memory than the data.

Crafted files name only NumPy's allowed globals; the old allow-list unpickler built every
one of them (a (100000, 3072) array of uninitialised memory for 200 KB of file).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from kmlp.network.cifar_files import find_source, read_batches
from kmlp.network.data import load_cifar10
from kmlp.network.errors import DataError
from tests.conftest import (
    CIFAR_FILES,
    ROOT,
    cifar_batch_bytes,
    crafted_cifar_batch,
    write_fake_cifar,
)

CRAFTED_KINDS = ("ndarray", "reconstruct", "build")
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def no_real_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KMLP_DATA", raising=False)
    monkeypatch.setenv("KMLP_CACHE", str(tmp_path / "cache"))


def crafted_folder(root: Path, how: str) -> Path:
    """Six crafted batch files (the loader stops at the first)."""
    folder = root / f"crafted-{how}" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    raw = crafted_cifar_batch(rows=100_000, how=how)
    for name in CIFAR_FILES:
        (folder / name).write_bytes(raw)
    return folder


@pytest.mark.parametrize("how", CRAFTED_KINDS)
def test_crafted_batch_is_refused_before_anything_is_allocated(tmp_path, how):
    folder = crafted_folder(tmp_path, how)
    assert 190_000 < (folder / "data_batch_1").stat().st_size < 210_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            load_cifar10(data_dir=folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and "data_batch_1" in message
    assert "not an official CIFAR-10 batch" in message
    assert peak < 5 * MB, f"refusing took {peak / MB:.1f} MB"


@pytest.mark.parametrize("how", CRAFTED_KINDS)
def test_crafted_batch_with_the_official_row_count_is_refused(tmp_path, how):
    """Declaring 10000 rows without supplying their bytes is refused as well."""
    folder = tmp_path / "c"
    folder.mkdir()
    raw = crafted_cifar_batch(rows=10_000, how=how)
    for name in CIFAR_FILES:
        (folder / name).write_bytes(raw)
    with pytest.raises(DataError, match=r"data_batch_1: .*\(10000, 3072\)"):
        load_cifar10(data_dir=folder)


# Linux keeps a process's peak RSS across fork and exec, so a child of this (large) test
# process would report the parent's peak as its own. The command therefore runs as the
# child of a small trampoline, which reports the peak from wait4.
_TRAMPOLINE = textwrap.dedent(
    """
    import json, os, subprocess, sys, tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(sys.argv[1:], stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        print(json.dumps({
            "code": child.returncode,
            "stdout": out.read().decode(),
            "stderr": err.read().decode(),
            "max_rss": usage.ru_maxrss * 1024,
        }))
    """
)

_LOAD = textwrap.dedent(
    """
    import json, sys, time
    from kmlp.network.data import load_cifar10
    from kmlp.network.errors import DataError

    start = time.process_time()
    try:
        load_cifar10(data_dir=sys.argv[1])
        message = None
    except DataError as exc:
        message = str(exc)
    print(json.dumps({"message": message, "cpu_seconds": time.process_time() - start}))
    """
)


def run_measured(*argv: str) -> dict:
    """Run ``argv`` from the trampoline: exit code, output and peak RSS in bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMLP_")}
    proc = subprocess.run(
        [sys.executable, "-c", _TRAMPOLINE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_measure_sees_the_commands_own_peak():
    """300 MB touched shows as >= 300 MB; an idle Python as far less."""
    big = run_measured(sys.executable, "-c", "import numpy; numpy.ones(300 * 2**20, 'u1')")
    small = run_measured(sys.executable, "-c", "pass")
    assert big["code"] == small["code"] == 0, big["stderr"] + small["stderr"]
    assert big["max_rss"] >= 300 * MB > 10 * small["max_rss"]


def test_crafted_batch_is_refused_within_a_second_and_200_mb(tmp_path):
    """The issue's file, in a fresh process: CPU time of the load call, and the process's
    whole peak resident memory (Python and NumPy included)."""
    folder = crafted_folder(tmp_path, "ndarray")
    run = run_measured(sys.executable, "-c", _LOAD, str(folder))
    assert run["code"] == 0, run["stderr"]
    result = json.loads(run["stdout"])
    assert result["message"] is not None and "data_batch_1" in result["message"]
    assert result["cpu_seconds"] < 1.0, result
    assert run["max_rss"] < 200 * MB, run["max_rss"]


def test_cli_refuses_the_crafted_batch_in_one_line_under_200_mb(tmp_path):
    folder = crafted_folder(tmp_path, "ndarray")
    run = run_measured(sys.executable, "-m", "kmlp", "data", "info", "--data", str(folder))
    lines = run["stderr"].splitlines()
    assert run["code"] == 2 and len(lines) == 1, lines
    assert lines[0].startswith("kmlp: error: ") and "data_batch_1" in lines[0]
    assert run["max_rss"] < 200 * MB, run["max_rss"]


# ---------------------------------------------------------------- other layouts


def _dict_pickle(entries: dict, protocol: int) -> bytes:
    return pickle.dumps(entries, protocol=protocol)


def test_variants_of_the_official_layout_still_load(tmp_path, small_cifar_batches):
    """str keys (a Python 3 re-pickle), protocol 2 to 4 framing, labels as an array."""
    rows = small_cifar_batches
    folder = tmp_path / "v"
    raw = write_fake_cifar(folder, rows=rows)
    data = raw["X_test"]
    labels = raw["y_test"]
    expected = load_cifar10(data_dir=folder).test
    variants = {
        "str keys, protocol 4": _dict_pickle({"data": data, "labels": labels.tolist()}, 4),
        "labels as an int64 array": _dict_pickle({b"data": data, b"labels": labels}, 3),
        "labels as a big-endian array": _dict_pickle(
            {b"data": data, b"labels": labels.astype(">i4")}, 4
        ),
    }
    for what, content in variants.items():
        (folder / "test_batch").write_bytes(content)
        loaded = load_cifar10(data_dir=folder).test
        assert np.array_equal(loaded.y, expected.y), what
        assert np.array_equal(loaded.X, expected.X), what


def _opcodes(*parts: bytes) -> bytes:
    return b"".join(parts)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        # NumPy's protocol-5 pickles rebuild arrays through another global
        (pickle.dumps({b"data": np.zeros((20, 3072), np.uint8)}, protocol=5), "_frombuffer"),
        (pickle.dumps([1, 2, 3], protocol=3), "holds a list of 3, not a dict"),
        (pickle.dumps({b"data": 1.5}, protocol=3), "opcode BINFLOAT"),
        (pickle.dumps({b"data": b"x" * 1000, b"labels": [0] * 20}, 3), r"shape \(1000,\)"),
        (pickle.dumps({(1, 2): 3}, protocol=3), "dict key"),
        (pickle.dumps({str(i): i for i in range(65)}, protocol=3), "more than 64 entries"),
        (pickle.dumps({b"x": "é" * 300}, protocol=3), "text string of 600 bytes"),
        (_opcodes(b"\x80\x02}", b"q\x00" * 2000, b"."), "more than 1184 pickle opcodes"),
        (_opcodes(b"\x80\x02", b"(inumpy\ndtype\n", b"."), "INST call of numpy.dtype"),
        (_opcodes(b"\x80\x02", b"(i__builtin__\nlist\n", b"."), "forbidden global '__bui"),
        (_opcodes(b"\x80\x02", b"cposix\nsystem\n", b"."), "forbidden global 'posix.system'"),
        (_opcodes(b"\x80\x02}", b"(", b"U\x04data", b"K\x01", b"u"), "ends before"),
        (_opcodes(b"\x80\x02}", b"B\xff\xff\xff\x7f", b"."), "truncated or corrupt"),
        (_opcodes(b"\x80\x02", b"cnumpy\ndtype\n(U\x04V999NNt", b"R."), "numpy.dtype called"),
    ],
)
def test_unknown_structures_are_refused_in_one_line(
    tmp_path, small_cifar_batches, content, complaint
):
    folder = tmp_path / "u"
    write_fake_cifar(folder, rows=small_cifar_batches)
    (folder / "data_batch_2").write_bytes(content)
    with pytest.raises(DataError, match=f"data_batch_2: .*{complaint}") as err:
        load_cifar10(data_dir=folder)
    assert "\n" not in str(err.value)


def test_a_batch_too_big_for_the_layout_is_not_read(tmp_path, small_cifar_batches):
    folder = tmp_path / "big"
    write_fake_cifar(folder, rows=small_cifar_batches)
    extra = np.zeros((small_cifar_batches, 3072), np.uint8)
    (folder / "data_batch_1").write_bytes(
        cifar_batch_bytes(extra, [0] * small_cifar_batches) + b"\0" * 10 * MB
    )
    with pytest.raises(DataError, match=r"data_batch_1: .*too big"):
        load_cifar10(data_dir=folder)


# ---------------------------------------------------------------- memory while reading


def _peak_bytes(func):
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_needs_little_more_than_the_data(full_size_cifar):
    """Six full-size batches: the read holds each file once, the images are views of it."""
    batches, peak = _peak_bytes(lambda: read_batches(find_source(full_size_cifar)))
    size = sum(b.data.nbytes + b.labels.nbytes for b in batches.values())
    assert size == 6 * 10000 * (3072 + 8)
    assert peak <= 2 * size, f"peak {peak / MB:.0f} MB for {size / MB:.0f} MB of data"
    assert peak <= 1.1 * size, f"peak {peak / MB:.0f} MB for {size / MB:.0f} MB of data"
    for name, batch in batches.items():
        assert batch.data.flags.writeable and batch.data.shape == (10000, 3072)
        raw = (full_size_cifar / name).read_bytes()
        assert batch.sha256 == hashlib.sha256(raw).hexdigest()
        trusted = pickle.loads(raw, encoding="bytes")  # our own file: plain pickle is safe
        assert np.array_equal(batch.data, trusted[b"data"])
        assert np.array_equal(batch.labels, trusted[b"labels"])


def test_loading_peaks_within_twice_the_dataset(full_size_cifar):
    data, peak = _peak_bytes(lambda: load_cifar10(data_dir=full_size_cifar))
    size = sum(s.X.nbytes + s.y.nbytes for s in (data.train, data.val, data.test))
    assert peak <= 2 * size, f"peak {peak / MB:.0f} MB for {size / MB:.0f} MB of data"


@pytest.mark.data
def test_real_batches_read_exactly_as_pickle_reads_them(real_data_dir):
    """The walk gives the official files' arrays bit for bit (so the same fingerprint)."""
    batches, peak = _peak_bytes(lambda: read_batches(find_source(real_data_dir)))
    size = sum(b.data.nbytes + b.labels.nbytes for b in batches.values())
    assert peak <= 2 * size
    for name, batch in batches.items():
        raw = (real_data_dir / name).read_bytes()
        trusted = pickle.loads(raw, encoding="bytes")  # the official files, trusted here
        assert np.array_equal(batch.data, trusted[b"data"]), name
        assert np.array_equal(batch.labels, np.array(trusted[b"labels"])), name
        assert batch.sha256 == hashlib.sha256(raw).hexdigest()
