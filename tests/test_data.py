"""CIFAR-10 loading: layouts, safe unpickling, validation, splits, download, CLI.

Format tests build tiny fake CIFAR-10 files (20 images per batch, read with the
``small_cifar_batches`` fixture); the CLI and peak-memory tests use full-size files of random
images; only the tests marked ``data`` read the real copy at $KMLP_DATA.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import http.server
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import kmlp.network.download
from kmlp.network.data import (
    Dataset,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
    resolve_data_dir,
)
from kmlp.network.errors import ConfigError, DataError
from tests.conftest import cifar_batch_bytes as batch_bytes
from tests.conftest import write_fake_cifar

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = os.environ.get("KMLP_DATA")  # read before the autouse fixture clears it
ROWS = 20  # images per fake batch: 100 training images -> 90 train + 10 validation
FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


# ---------------------------------------------------------------- fake CIFAR-10 files


def write_fake(folder: Path, seed: int = 0, rows: int = ROWS) -> dict[str, np.ndarray]:
    return write_fake_cifar(folder, seed=seed, rows=rows)


def make_archive(folder: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the real data, the user's cache, or a real download URL."""
    for var in ("KMLP_DATA", "KMLP_CIFAR_URL", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KMLP_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def fake(tmp_path: Path, small_cifar_batches: int) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / "parent" / "cifar-10-batches-py"
    return folder, write_fake(folder)


# ---------------------------------------------------------------- layouts


def test_folder_parent_and_archive_read_the_same_data(fake, tmp_path):
    folder, raw = fake
    archive = make_archive(folder, tmp_path / "arch" / "cifar-10-python.tar.gz")
    places = [folder, folder.parent, archive, archive.parent]
    loaded = [load_cifar10(data_dir=p) for p in places]
    assert [d.source for d in loaded] == [str(folder), str(folder), str(archive), str(archive)]
    first = loaded[0]
    assert np.array_equal(first.train.y, raw["y"][:90])
    assert np.array_equal(first.test.y, raw["y_test"])
    for other in loaded[1:]:
        assert other.fingerprint == first.fingerprint  # content, not container, is hashed
        for part in ("train", "val", "test"):
            assert np.array_equal(getattr(other, part).X, getattr(first, part).X)


def test_archive_member_missing_or_archive_corrupt(fake, tmp_path):
    folder, _ = fake
    (folder / "data_batch_2").unlink()
    archive = make_archive(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="data_batch_2"):
        load_cifar10(data_dir=archive)
    archive.write_bytes(archive.read_bytes()[:5000])  # truncated download
    with pytest.raises(DataError, match="not a readable"):
        load_cifar10(data_dir=archive)
    archive.write_bytes(b"<html>not an archive</html>")
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz"):
        load_cifar10(data_dir=archive)


# ---------------------------------------------------------------- safe unpickling


class _Planted:
    """Unpickling this calls ``func(*args)`` -- what a malicious batch file would do."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _planted(kind: str, marker: Path) -> tuple[_Planted, str]:
    if kind == "os.system":
        return _Planted(os.system, (f"touch {marker}",)), f"{os.system.__module__}.system"
    if kind == "eval":
        return _Planted(builtins.eval, (f"open({str(marker)!r}, 'w').close()",)), "builtins.eval"
    return _Planted(subprocess.call, (["touch", str(marker)],)), "subprocess.call"


@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess"])
def test_planted_pickle_is_refused_without_running(fake, tmp_path, kind):
    folder, _ = fake
    marker = tmp_path / "pwned"
    payload, qualified = _planted(kind, marker)
    evil = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=3)
    # The payload is live: plain pickle would run it (so the assertion below can fail).
    pickle.loads(evil)
    assert marker.exists()
    marker.unlink()

    (folder / "data_batch_3").write_bytes(evil)
    with pytest.raises(DataError) as err:
        load_cifar10(data_dir=folder)
    message = str(err.value)
    assert "data_batch_3" in message and qualified in message and "forbidden" in message
    assert not marker.exists()


def test_planted_pickle_in_archive_is_refused(fake, tmp_path):
    folder, _ = fake
    marker = tmp_path / "pwned"
    payload, qualified = _planted("os.system", marker)
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    archive = make_archive(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=f"test_batch.*{qualified}"):
        load_cifar10(data_dir=archive)
    assert not marker.exists()


# ---------------------------------------------------------------- damaged files


def test_truncated_file(fake):
    folder, _ = fake
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:30000])
    with pytest.raises(DataError, match="data_batch_2: truncated or corrupt"):
        load_cifar10(data_dir=folder)


def test_missing_file_is_named(fake):
    folder, _ = fake
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 file.*data_batch_4"):
        load_cifar10(data_dir=folder.parent)


@pytest.mark.parametrize(
    ("data", "labels", "complaint"),
    [
        (np.zeros((ROWS, 3000), np.uint8), [0] * ROWS, r"shape \(20, 3000\)"),
        (np.zeros(ROWS * 3072, np.uint8), [0] * ROWS, "shape"),
        (np.zeros((ROWS, 3072), np.int8), [0] * ROWS, r"shape \(20, 3072\) int8.*uint8"),
        (np.zeros((ROWS, 3072), np.float32), [0] * ROWS, "too big for a CIFAR-10 batch"),
        (np.zeros((ROWS, 3072), np.uint8), [0] * (ROWS + 1), "list of more than 20 entries"),
        (np.zeros((ROWS + 1, 3072), np.uint8), [0] * ROWS, r"shape \(21, 3072\)"),
        (np.zeros((ROWS - 1, 3072), np.uint8), [0] * ROWS, r"shape \(19, 3072\)"),
        (np.zeros((ROWS, 3072), np.uint8).T, [0] * ROWS, r"shape \(3072, 20\)"),
        (np.zeros((ROWS, 3072), np.uint8), [0.5] * ROWS, "opcode BINFLOAT"),
        (np.zeros((ROWS, 3072), np.uint8), [True] * ROWS, "not a list of integers"),
        (np.zeros((ROWS, 3072), np.uint8), [-1] * ROWS, r"labels outside 0\.\.9"),
        (np.zeros((ROWS, 3072), np.uint8), np.full(ROWS, 10), r"labels outside 0\.\.9"),
        (np.zeros((ROWS, 3072), np.uint8), [2**70] * ROWS, r"labels outside 0\.\.9"),
        (np.zeros((ROWS, 3072), np.uint8), [0] * (ROWS - 1), "19 labels for 20 images"),
        (np.zeros((ROWS, 3072), np.uint8), [10] * ROWS, r"labels outside 0\.\.9"),
        (np.zeros((ROWS, 3072), np.uint8), ["cat"] * ROWS, "not a list of integers"),
    ],
)
def test_malformed_batch(fake, data, labels, complaint):
    folder, _ = fake
    (folder / "data_batch_5").write_bytes(batch_bytes(data, labels))
    with pytest.raises(DataError, match=f"data_batch_5: .*{complaint}"):
        load_cifar10(data_dir=folder)


def test_not_a_batch_dict(fake):
    folder, _ = fake
    (folder / "test_batch").write_bytes(pickle.dumps({b"pixels": 1}, protocol=3))
    with pytest.raises(DataError, match="test_batch: no 'data' entry"):
        load_cifar10(data_dir=folder)
    (folder / "test_batch").write_bytes(os.urandom(64))
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(data_dir=folder)


# ---------------------------------------------------------------- where data is looked for


def test_precedence_argument_env_cache(tmp_path, monkeypatch, small_cifar_batches):
    places = {name: tmp_path / name for name in ("arg", "env", "cache")}
    for seed, folder in enumerate(places.values()):
        write_fake(folder, seed=seed)
    fingerprints = {name: load_cifar10(data_dir=p).fingerprint for name, p in places.items()}
    assert len(set(fingerprints.values())) == 3
    monkeypatch.setenv("KMLP_CACHE", str(places["cache"]))
    assert load_cifar10().fingerprint == fingerprints["cache"]
    monkeypatch.setenv("KMLP_DATA", str(places["env"]))
    assert resolve_data_dir() == places["env"]
    assert load_cifar10().fingerprint == fingerprints["env"]
    assert resolve_data_dir(places["arg"]) == places["arg"]
    assert load_cifar10(data_dir=places["arg"]).fingerprint == fingerprints["arg"]


def test_explicit_place_without_data_never_downloads(tmp_path, monkeypatch, http_server):
    monkeypatch.setenv("KMLP_CIFAR_URL", f"{http_server.url}/cifar-10-python.tar.gz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="has no CIFAR-10"):
        load_cifar10(data_dir=empty)
    monkeypatch.setenv("KMLP_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere \(\$KMLP_DATA\) does not exist"):
        load_cifar10()
    assert http_server.requests == []
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KMLP_CACHE")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "kmlp"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kmlp"
    monkeypatch.setenv("KMLP_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert resolve_data_dir() == tmp_path / "mine"


# ---------------------------------------------------------------- splits and standardisation


def test_standardised_with_training_statistics(fake):
    folder, raw = fake
    data = load_cifar10(data_dir=folder, dtype="float64")
    train_raw = raw["X"][:90].astype(np.float64)
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    assert np.abs(data.train.X.mean(axis=0)).max() < 1e-12
    assert np.abs(data.train.X.std(axis=0) - 1).max() < 1e-12
    assert np.allclose(data.val.X, (raw["X"][90:] - mean) / std, rtol=0, atol=1e-12)
    assert np.allclose(data.test.X, (raw["X_test"] - mean) / std, rtol=0, atol=1e-12)


def test_constant_feature_stays_finite(tmp_path, small_cifar_batches):
    folder = tmp_path / "c"
    write_fake(folder)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4"):
        batch = pickle.loads((folder / name).read_bytes(), encoding="bytes")
        batch[b"data"][:, 7] = 100  # constant on the 80 training images used
        (folder / name).write_bytes(batch_bytes(batch[b"data"], batch[b"labels"]))
    data = load_cifar10(data_dir=folder, n_train=80)
    assert np.all(data.train.X[:, 7] == 0)
    assert np.all(np.isfinite(data.val.X)) and np.all(np.isfinite(data.test.X))
    assert np.abs(data.test.X[:, 7]).max() <= 155  # centred only: |x - 100| <= 155


def test_dtypes(fake):
    folder, _ = fake
    default = load_cifar10(data_dir=folder)
    wide = load_cifar10(data_dir=folder, dtype="float64")
    for d, dtype in ((default, np.float32), (wide, np.float64)):
        assert {s.X.dtype for s in (d.train, d.val, d.test)} == {np.dtype(dtype)}
        assert {s.y.dtype for s in (d.train, d.val, d.test)} == {np.dtype(np.int64)}
        assert d.train.X.flags.c_contiguous
    assert np.allclose(default.test.X, wide.test.X, atol=1e-5)
    assert default.fingerprint == wide.fingerprint
    with pytest.raises(ConfigError, match="dtype"):
        load_cifar10(data_dir=folder, dtype="float16")


def test_default_split_validation_is_the_last_images(fake):
    folder, raw = fake
    data = load_cifar10(data_dir=folder)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, ROWS)
    assert data.train.X.shape == (90, 3072)
    assert np.array_equal(data.val.y, raw["y"][90:])  # last tenth of data_batch_1..5
    assert np.array_equal(data.train.y, raw["y"][:90])


def test_subsets_take_the_first_of_each_pool(fake):
    folder, raw = fake
    data = load_cifar10(data_dir=folder, n_train=30, n_val=4, dtype="float64")
    assert np.array_equal(data.train.y, raw["y"][:30])
    assert np.array_equal(data.val.y, raw["y"][90:94])
    assert len(data.test) == ROWS
    sub = raw["X"][:30].astype(np.float64)  # statistics of the training images used
    expected = (raw["X"][90:94] - sub.mean(axis=0)) / sub.std(axis=0)
    assert np.allclose(data.val.X, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_train": 0}, "n_train must be between 1 and 45000"),
        ({"n_train": 45001}, "n_train must be between 1 and 45000"),
        ({"n_val": 5001}, "n_val must be between 1 and 5000"),
        ({"n_val": -1}, "n_val must be between"),
        ({"n_train": True}, "n_train must be an integer"),
        ({"n_train": 2.5}, "n_train must be an integer"),
        ({"n_train": "50"}, "n_train must be an integer, got '50'"),
        ({"n_val": 10**5000}, "n_val must be between 1 and 5000, got a 5001-digit number"),
        ({"n_train": 91}, "only 90 training images"),
        ({"n_val": 11}, "only 10 validation images"),
    ],
)
def test_bad_subset_sizes(fake, kwargs, error):
    folder, _ = fake
    with pytest.raises(ConfigError, match=error):
        load_cifar10(data_dir=folder, **kwargs)


def test_fingerprint_identifies_files_and_subset(fake):
    folder, _ = fake
    base = load_cifar10(data_dir=folder).fingerprint
    assert len(base) == 64 and int(base, 16) >= 0
    assert load_cifar10(data_dir=folder).fingerprint == base
    assert load_cifar10(data_dir=folder, n_train=90, n_val=10).fingerprint == base
    assert load_cifar10(data_dir=folder, n_train=89).fingerprint != base
    assert load_cifar10(data_dir=folder, n_val=9).fingerprint != base
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    batch[b"data"][0, 0] ^= 1
    (folder / "test_batch").write_bytes(batch_bytes(batch[b"data"], batch[b"labels"]))
    assert load_cifar10(data_dir=folder).fingerprint != base


def test_dataset_is_frozen(fake):
    data = load_cifar10(data_dir=fake[0])
    assert isinstance(data, Dataset)
    with pytest.raises(AttributeError):
        data.fingerprint = "x"  # type: ignore[misc]


# ---------------------------------------------------------------- download


class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path: Path, small_cifar_batches: int) -> Iterator[_Server]:
    root = tmp_path / "www"
    make_archive_dir = tmp_path / "served-src" / "cifar-10-batches-py"
    write_fake(make_archive_dir, seed=5)
    root.mkdir()
    make_archive(make_archive_dir, root / "cifar-10-python.tar.gz")
    server = _Server(root)
    yield server
    server.close()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_download_verifies_and_loads(tmp_path, monkeypatch, http_server, capsys):
    served = tmp_path / "www" / "cifar-10-python.tar.gz"
    monkeypatch.setenv("KMLP_CIFAR_URL", f"{http_server.url}/cifar-10-python.tar.gz")
    dest = tmp_path / "dl"
    path = download_cifar10(dest=dest, progress=True, md5=_md5(served))
    assert path == dest / "cifar-10-python.tar.gz"
    assert path.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz"]  # no .part
    assert "CIFAR-10" in capsys.readouterr().err  # the progress bar was drawn
    assert len(load_cifar10(data_dir=dest).test) == ROWS


def test_download_md5_mismatch_deletes(tmp_path, http_server):
    dest = tmp_path / "dl"
    with pytest.raises(DataError, match="md5") as err:
        download_cifar10(dest=dest, progress=False, url=f"{http_server.url}/cifar-10-python.tar.gz")
    assert "c58f30108f718f92721af3b95e74349a" in str(err.value)  # the published md5
    assert list(dest.iterdir()) == []


def test_download_http_error(tmp_path, http_server):
    with pytest.raises(DataError, match="HTTP 404"):
        download_cifar10(dest=tmp_path / "dl", progress=False, url=f"{http_server.url}/nope")
    assert list((tmp_path / "dl").iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_without_network_says_how_to_use_a_local_copy(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(DataError) as err:
        download_cifar10(dest=tmp_path / "dl", progress=False, url=url, timeout=5)
    message = str(err.value)
    assert "\n" not in message
    assert "--data DIR" in message and "KMLP_DATA=" in message
    assert list((tmp_path / "dl").iterdir()) == []


def test_download_errors_do_not_show_a_password_in_the_url(tmp_path):
    url = f"http://mirror-user:S3cretPW@127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(DataError) as err:
        download_cifar10(dest=tmp_path / "dl", progress=False, url=url, timeout=5)
    assert "S3cretPW" not in str(err.value) and "mirror-user:***@127.0.0.1" in str(err.value)


def test_missing_cache_downloads_first(tmp_path, monkeypatch, http_server):
    served = tmp_path / "www" / "cifar-10-python.tar.gz"
    monkeypatch.setenv("KMLP_CIFAR_URL", f"{http_server.url}/cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="kmlp data download"):
        load_cifar10(download=False)
    assert http_server.requests == []
    monkeypatch.setattr(kmlp.network.download, "CIFAR10_MD5", _md5(served))
    data = load_cifar10(progress=False)
    assert data.source == str(tmp_path / "cache" / "cifar-10-python.tar.gz")
    assert http_server.requests == ["/cifar-10-python.tar.gz"]
    load_cifar10(progress=False)  # found in the cache now: no second download
    assert len(http_server.requests) == 1


# ---------------------------------------------------------------- CLI


def run_cli(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KMLP_")}
    environ.update(KMLP_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run(
        [sys.executable, "-m", "kmlp", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmlp: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_cli_info_bad_places(fake, tmp_path):
    folder, _ = fake
    _assert_one_line_error(
        run_cli("data", "info", "--data", str(tmp_path / "missing"), tmp_path=tmp_path),
        "does not exist",
    )
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps(_planted("os.system", marker)[0], 2))
    _assert_one_line_error(
        run_cli("data", "info", "--data", str(folder), tmp_path=tmp_path), "data_batch_1"
    )
    assert not marker.exists()


def test_cli_info_and_download(full_size_cifar, tmp_path):
    folder = full_size_cifar
    proc = run_cli("data", "info", "--data", str(folder.parent), "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    loaded = load_cifar10(data_dir=folder)
    assert info["fingerprint"] == loaded.fingerprint
    assert info["class_counts"]["test"] == np.bincount(loaded.test.y, minlength=10).tolist()
    assert (info["n_train"], info["n_val"], info["n_test"], info["source"]) == (
        45000,
        5000,
        10000,
        str(folder),
    )
    url = f"http://127.0.0.1:{_closed_port()}/x.tar.gz"
    proc = run_cli(
        "data", "download", "--dest", str(tmp_path / "d"), tmp_path=tmp_path, KMLP_CIFAR_URL=url
    )
    _assert_one_line_error(proc, "KMLP_DATA")


# ---------------------------------------------------------------- the real data


@pytest.mark.data
@pytest.mark.skipif(not REAL_DATA, reason="set KMLP_DATA to the real CIFAR-10 to run")
def test_real_cifar10():
    start = time.perf_counter()
    data = load_cifar10(data_dir=REAL_DATA)
    seconds = time.perf_counter() - start
    assert data.train.X.shape == (45000, 3072) and data.train.X.dtype == np.float32
    assert data.val.X.shape == (5000, 3072) and data.test.X.shape == (10000, 3072)
    assert set(np.unique(data.test.y)) == set(range(10))
    assert np.abs(data.train.X.mean(axis=0, dtype=np.float64)).max() < 1e-5
    assert seconds < 10, f"loading took {seconds:.1f} s"
    small = load_cifar10(data_dir=REAL_DATA, n_train=2000, n_val=500)
    assert small.fingerprint != data.fingerprint


def test_val_pool_holds_out_fewer_images_for_the_final_training(real_data_dir) -> None:
    from kmlp.network.data import load_cifar10 as load

    default = load(data_dir=real_data_dir, n_val=1000, progress=False)
    final = load(data_dir=real_data_dir, val_pool=1000, progress=False)
    assert len(final.train) == 49000 and len(final.val) == 1000 and len(final.test) == 10000
    assert final.fingerprint != default.fingerprint
    # the held-out images are the last 1000; the search's validation starts 4000 earlier
    raw_train = load(data_dir=real_data_dir, val_pool=1000, n_train=49000, progress=False)
    assert np.array_equal(raw_train.val.y, final.val.y)
    assert np.array_equal(final.train.y[45000:46000], default.val.y[:1000])
    with pytest.raises(ConfigError):
        load(data_dir=real_data_dir, val_pool=1000, n_val=2000, progress=False)
