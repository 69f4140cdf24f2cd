"""A study database lost while kmlp runs is named as the cause, in one line.

The SQLite file is deleted while a launch trains (SQLite then answers "attempt to write
a readonly database", which Optuna wraps as "invalid data in the commit, e.g. exceeding
max length"): kmlp must say that the storage was lost, exit 2, no traceback.
"""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.studies import DATA, SMALL, cli_env

pytestmark = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_database_deleted_mid_launch_is_named(tmp_path: Path, workers: int) -> None:
    db = tmp_path / "k.db"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "kmlp", "launch", "--study", "lost",
            "--storage", f"sqlite:///{db}", "--data", DATA or "", *SMALL,
            "--n-s", "200", "--stages", "1", "--trials", "40", "--workers", str(workers),
            "--no-publish",
        ],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    while True:  # the first trial is in: the database is in use
        ready, _, _ = select.select([proc.stdout], [], [], 180)
        line = proc.stdout.readline() if ready else ""
        assert line, f"launch ended early: {proc.communicate(timeout=60)}"
        if "trial #" in line:
            break
    db.unlink()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (
        f"kmlp: error: the study storage sqlite:///{db} was lost: its file {db} was deleted "
        "or moved while kmlp ran; trials finished before are gone with it unless the file "
        "is restored"
    ), err
    if workers == 1:
        assert len(lines) == 1, err
    assert all(line.startswith("kmlp: ") for line in lines), err
    assert "exceeding max length" not in err
