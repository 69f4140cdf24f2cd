"""Builders the study, dashboard and report tests share: studies made by running kmlp.

Every study here is made the way a user makes one: ``kmlp launch`` as a subprocess on the
real CIFAR-10 (:func:`launch_real`), or the library's ``launch`` on a small synthetic
dataset with the dashboards' publishing hooks (:func:`launch_published`). No test writes
study attributes by hand.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from kmlp.network import Dataset, Split, TrainConfig
from kmlp.storage import HeartbeatSettings
from kmlp.study import SearchConfig, launch

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("KMLP_DATA")
PG_URL = os.environ.get("KMLP_TEST_POSTGRES_URL")
HEARTBEAT = HeartbeatSettings(interval=1, grace_period=3)
# A small real study: seconds per trial on 2 cores.
SMALL = [
    "--n-train", "1000", "--n-val", "300", "--hidden", "10", "--cycles", "1", "--n-s", "50",
]  # fmt: skip


@dataclass(frozen=True)
class SyntheticSource:
    """Ten Gaussian blobs in ``d`` dimensions: a Dataset that trains in milliseconds."""

    n_train: int = 400
    n_val: int = 200
    d: int = 32
    seed: int = 0

    def __call__(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        centres = rng.normal(size=(10, self.d))

        def split(n: int) -> Split:
            y = rng.integers(0, 10, size=n)
            X = centres[y] + rng.normal(scale=1.5, size=(n, self.d))
            return Split(X=X.astype(np.float32), y=y.astype(np.int64))

        return Dataset(
            train=split(self.n_train),
            val=split(self.n_val),
            test=split(100),
            fingerprint=f"synthetic-{self.seed}-{self.n_train}-{self.n_val}-{self.d}",
            source="synthetic",
        )


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``python -m kmlp`` from the repository, free of the user's settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("KMLP_STORAGE", "KMLP_ARTIFACTS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | (extra or {})


def kmlp(
    *args: str, cwd: Path = ROOT, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kmlp ARGS`` to completion, as a user runs ``kmlp``."""
    return subprocess.run(
        [sys.executable, "-m", "kmlp", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- studies ---------------------------------------------------------------------------

STUDY = "demo"
DEMO_CONFIG = TrainConfig(hidden=(16,), cycles=1, n_s=15, batch_size=50)
DEMO_SEARCH = SearchConfig(stages=2, trials=(4, 3), top_k=2, prune=False)


def launch_published(
    folder: Path,
    *,
    name: str = STUDY,
    search: SearchConfig = DEMO_SEARCH,
    storage_url: str | None = None,
    artifacts: str | None = None,
    after_told: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> str:
    """A study launched with the library on synthetic data, published like ``kmlp launch``.

    Storage ``folder/kmlp.db`` unless ``storage_url``; artifacts in ``artifacts``, else the
    default (``folder/kmlp-artifacts`` for that SQLite file). The hooks are the CLI's
    (``Publisher``), pickled as a worker process receives them; ``after_told`` is called
    after the publisher's ``on_trial_told`` and a ``flush()`` (to observe it). Returns the
    storage URL.
    """
    from kmlp.dashboards.hooks import publisher_for

    url = storage_url or f"sqlite:///{folder / 'kmlp.db'}"
    publisher = pickle.loads(pickle.dumps(publisher_for(url, artifacts)))
    hooks = publisher.hooks()
    if after_told is not None:

        def told(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            publisher.on_trial_told(study, trial)
            publisher.flush()  # the refresh runs in the background; observe its result
            after_told(study, trial)

        hooks["on_trial_told"] = told
    launch(
        study_name=name,
        storage_url=url,
        train_config=DEMO_CONFIG,
        search=search,
        data=SyntheticSource(n_train=300, n_val=200)(),
        heartbeat=HEARTBEAT,
        out=io.StringIO(),
        **hooks,
    )
    return url


_SHARED: dict[str, tuple[str, Path]] = {}


def shared_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(storage URL, folder) of one :func:`launch_published` per session; tests only read it."""
    if "study" not in _SHARED:
        folder = tmp_path_factory.mktemp("shared-study")
        _SHARED["study"] = (launch_published(folder), folder)
    return _SHARED["study"]


def launch_real(folder: Path, name: str, *extra: str) -> tuple[str, subprocess.CompletedProcess]:
    """``kmlp launch`` of a small study on the real CIFAR-10 in ``folder/k.db``.

    2 stages x 3 trials, top-k 2, 2 workers; ``extra`` flags are added. Skips the test
    without ``$KMLP_DATA``. Returns (storage URL, the finished process).
    """
    if not DATA:
        pytest.skip("set KMLP_DATA to the CIFAR-10 folder")
    url = f"sqlite:///{folder / 'k.db'}"
    done = kmlp(
        "launch", "--study", name, "--storage", url, "--data", DATA, *SMALL,
        "--stages", "2", "--trials", "3", "--top-k", "2", "--workers", "2", *extra,
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return url, done


# --- the dashboard ---------------------------------------------------------------------


def start_dashboard(storage_url: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``kmlp dashboard --port 0`` and return (process, base URL) once it answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmlp", "dashboard", "--storage", storage_url, "--port", "0",
         *extra],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
    if "http://" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"dashboard did not start: {line!r} {err!r}")
    base = line.split("http://", 1)[1].split("/dashboard/", 1)[0]
    base_url = f"http://{base}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/api/meta", timeout=5) as resp:
                if resp.status == 200:
                    return proc, base_url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def get_json(url: str) -> Any:
    import json

    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())
