"""Ctrl-C at any moment is one line and exit code 130, never a traceback.

A real ``kmlp`` process (the console script, else ``python -m kmlp``: the same entry
point) is started in a session of its own and sent SIGINT the way a terminal sends it,
to its whole process group, at several moments: while Python imports kmlp, NumPy and
SQLAlchemy, while CIFAR-10 is read, and during a launch (while its worker processes
start, and while they train). stderr must hold no traceback and only ``kmlp:`` lines,
the exit code must be 130, and no process of the group may outlive it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.studies import DATA, SMALL, cli_env

needs_data = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
SCRIPT = Path(sys.executable).with_name("kmlp")
KMLP = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "kmlp"]


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*KMLP, *args],
        cwd=cwd,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
    )


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C: SIGINT to the process group; returns (stdout, stderr) once all have ended."""
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # worker processes end after the parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return out, err
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"processes of the group outlived kmlp: {err}")


def assert_interrupted(proc: subprocess.Popen[str], err: str) -> None:
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("kmlp: ") for line in lines), err
    if proc.returncode == 0:  # it finished before the signal came (a fast machine)
        return
    assert proc.returncode == 130, (proc.returncode, err)
    assert any("interrupted" in line for line in lines), err


@pytest.mark.parametrize("delay", [0.1, 0.15, 0.2, 0.3, 0.45, 0.6])
def test_ctrl_c_while_starting_up(tmp_path: Path, delay: float) -> None:
    """During the imports of kmlp.cli.main (about half a second). (Earlier, within the
    first tens of milliseconds, CPython itself starts: a Ctrl-C in its ``site`` imports,
    before the console script runs a line of kmlp, is Python's to report.)"""
    proc = start("studies", "--storage", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    time.sleep(delay)
    _, err = interrupt(proc)
    if proc.returncode == 2:  # it got as far as the answer: no such file
        assert "does not exist" in err
        return
    assert_interrupted(proc, err)
    assert proc.returncode == 130


def wait_for_reading(proc: subprocess.Popen[str], megabytes: float, timeout: float) -> None:
    """Wait until ``proc`` has read ``megabytes`` (``rchar`` of /proc/PID/io: the CIFAR-10
    files are 180 MB, the interpreter and libraries a few tens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        fields = dict(
            line.split(": ") for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines()
        )
        if int(fields["rchar"]) >= megabytes * 1e6:
            return
        time.sleep(0.01)
    raise AssertionError(f"kmlp did not read {megabytes} MB (exit code {proc.poll()})")


@needs_data
@pytest.mark.parametrize("megabytes", [60, 120, 195])
def test_ctrl_c_while_loading_data(tmp_path: Path, megabytes: float) -> None:
    proc = start("data", "info", "--data", DATA or "", cwd=tmp_path)
    wait_for_reading(proc, megabytes, timeout=120)
    _, err = interrupt(proc)
    assert_interrupted(proc, err)


@needs_data
def test_ctrl_c_with_kmlp_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = start("data", "info", "--data", DATA or "", cwd=tmp_path, env={"KMLP_DEBUG": "1"})
    wait_for_reading(proc, 120, timeout=120)
    _, err = interrupt(proc)
    assert "Traceback" in err and "KeyboardInterrupt" in err


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """Read stdout until a line holds ``needle``; returns the lines read."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if needle in line:
                return lines
    raise AssertionError(f"no {needle!r} in {lines}")


LAUNCH = ["--stages", "2", "--trials", "12", "--top-k", "2", "--workers", "2", "--no-publish"]


@needs_data
@pytest.mark.parametrize("moment", ["starting", "workers-spawning", "training"])
def test_ctrl_c_during_a_launch(tmp_path: Path, moment: str) -> None:
    """While it starts (data loading), just after the first worker reported (the others
    are still starting), and while every worker trains."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = start(
        "launch", "--study", "c", "--storage", url, "--data", DATA or "", *SMALL, *LAUNCH,
        cwd=tmp_path,
    )  # fmt: skip
    if moment == "starting":
        time.sleep(1.5)
    elif moment == "workers-spawning":
        wait_for_line(proc, "stage 0:", timeout=120)
    else:
        wait_for_line(proc, "trial #", timeout=180)
        time.sleep(0.5)
    _, err = interrupt(proc)
    assert_interrupted(proc, err)
    if proc.returncode == 130 and moment != "starting":
        assert "To continue, rerun kmlp launch --study c" in err
