"""Every command kmlp prints is safe to paste into a shell.

Studies named ``$(touch pwned)`` and ``a b; rm -rf x`` are launched on real CIFAR-10;
the commands kmlp prints for them (the "next:" lines of a launch, the resume hint after
Ctrl-C, the export command in the study's note and in the report, ``kmlp export``'s own
"next:") are pasted into ``bash -c`` in a folder holding ``x``: the injected commands
must not run, and the shell must hand kmlp exactly the intended arguments. The export and
report commands are then run for real from what was pasted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.studies import DATA, ROOT, SMALL, cli_env, kmlp

pytestmark = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
NAMES = ["$(touch pwned)", "a b; rm -rf x"]
# The shell function records the arguments bash hands to kmlp, NUL-separated.
CAPTURE = 'kmlp() { printf "%s\\0" "$@" > "$KMLP_ARGS"; }'
REAL = 'kmlp() { "$KMLP_PYTHON" -m kmlp "$@"; }'


def paste(command: str, folder: Path, *, real: bool = False) -> list[str]:
    """Run ``command`` as pasted into bash in ``folder`` (which holds a folder ``x``);
    returns the arguments kmlp received (captured, or None-run for real)."""
    args_file = folder / "args"
    env = cli_env({"KMLP_ARGS": str(args_file), "KMLP_PYTHON": sys.executable})
    script = f"{REAL if real else CAPTURE}\n{command}\n"
    done = subprocess.run(
        ["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (command, done.stderr)
    assert not (folder / "pwned").exists(), command  # $(touch pwned) did not run
    assert (folder / "x" / "keep").exists(), command  # rm -rf x did not run
    if real:
        return []
    return args_file.read_bytes().decode().split("\0")[:-1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """Both studies in one SQLite file; returns (folder, URL, {name: launch stdout})."""
    folder = tmp_path_factory.mktemp("hostile names")
    url = f"sqlite:///{folder / 'k.db'}"
    out = {}
    for name in NAMES:
        done = kmlp(
            "launch", "--study", name, "--storage", url, "--data", DATA or "", *SMALL,
            "--stages", "1", "--trials", "2", "--workers", "1", cwd=folder,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out[name] = done.stdout
    return folder, url, out


@pytest.fixture
def pasteboard(tmp_path: Path) -> Path:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("rm -rf x must not reach me\n")
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
def test_the_next_commands_of_a_launch_paste_safely(launched, pasteboard, name) -> None:
    _, url, out = launched
    lines = out[name].splitlines()
    commands = [line.strip() for line in lines[lines.index("next:") + 1 :]]
    assert len(commands) == 3 and all(c.startswith("kmlp ") for c in commands)
    dashboard, export, report = (paste(c, pasteboard) for c in commands)
    assert dashboard == ["dashboard", "--storage", url]
    assert export == ["export", "--study", name, "--storage", url, "-o", "best.json"]
    assert report == ["report", "--study", name, "--storage", url, "--out", f"report-{name}"]

    # run them for real, as pasted: the export file and the report folder appear
    paste(commands[1], pasteboard, real=True)
    assert (pasteboard / "best.json").is_file()
    paste(commands[2], pasteboard, real=True)
    summary = (pasteboard / f"report-{name}" / "summary.md").read_text()
    (in_report,) = [line for line in summary.splitlines() if line.startswith("kmlp export")]
    assert paste(in_report, pasteboard) == export


@pytest.mark.parametrize("name", NAMES)
def test_the_export_command_in_the_note_and_the_retrain_hint_paste_safely(
    launched, pasteboard, name
) -> None:
    import optuna
    from optuna_dashboard import get_note

    _, url, _ = launched
    note = get_note(optuna.load_study(study_name=name, storage=url))
    (in_note,) = [line for line in note.splitlines() if line.startswith("kmlp export")]
    assert paste(in_note, pasteboard) == [
        "export", "--study", name, "--storage", url, "-o", "best.json",
    ]  # fmt: skip

    target = f"best of {name}.json"
    done = kmlp("export", "--study", name, "--storage", url, "-o", target, cwd=pasteboard)
    assert done.returncode == 0, done.stderr
    (hint,) = re.findall(r"^next: (kmlp retrain .*)$", done.stdout, re.M)
    assert paste(hint, pasteboard) == ["retrain", target]


def test_the_resume_hint_pastes_safely(tmp_path: Path, pasteboard: Path) -> None:
    """Ctrl-C during a launch of ``$(touch pwned)``: the "To continue, rerun ..." command."""
    name = NAMES[0]
    url = f"sqlite:///{tmp_path / 'k.db'}"
    argv = [
        "launch", "--study", name, "--storage", url, "--data", DATA or "", *SMALL,
        "--stages", "1", "--trials", "20", "--workers", "1", "--no-publish",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmlp", *argv],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "trial #" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (hint,) = re.findall(r"To continue, rerun (kmlp .*)$", err, re.M)
    assert paste(hint, pasteboard) == argv
    assert not Path(os.getcwd(), "pwned").exists()
