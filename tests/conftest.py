from __future__ import annotations

import os
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
