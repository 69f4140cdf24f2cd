"""``kmlp reproduce --quick`` on the real CIFAR-10, as a user runs it: interrupted with
SIGINT mid-run, run again to the end, then once more; its report, its results and the
studies it leaves in the storage. Bad input is refused in one line before any work."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from kmlp.storage.locks import LOCK_PREFIX
from tests.conftest import assert_one_line_error, run_cli
from tests.helpers.studies import DATA, cli_env

KINDS = ("networks", "init", "retrain", "gradcheck", "search-published", "search-auto")
PREFIX = "reproduce-quick"


def _trials(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = optuna.storages.RDBStorage(url)
    out = {}
    for s in storage.get_all_studies():
        if s.study_name.startswith(LOCK_PREFIX):  # the storage lock's tickets, not runs
            continue
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        out[s.study_name] = study.get_trials(deepcopy=False)
    return out


def _start(folder: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kmlp",
            "reproduce",
            "--quick",
            "--storage",
            url,
            "--out",
            str(folder / "report"),
            "--data",
            str(DATA),
        ],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Interrupt a quick reproduction once some fixed runs finished, then finish it."""
    if not DATA:
        pytest.skip("set KMLP_DATA to the CIFAR-10 folder")
    folder = tmp_path_factory.mktemp("reproduce")
    url = f"sqlite:///{folder / 'k.db'}"
    proc = _start(folder, url)
    seen: list[str] = []
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 5)
        line = proc.stdout.readline() if ready else ""
        if line:
            seen.append(line)
        if f"[{PREFIX}/init]" in line or (not line and proc.poll() is not None):
            break
    assert proc.poll() is None, "".join(seen) + proc.stderr.read()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)  # to the command only, as `kill -INT` would
    out, err = proc.communicate(timeout=120)
    before = _trials(url)
    second = run_cli(
        "reproduce",
        "--quick",
        "--storage",
        url,
        "--out",
        str(folder / "report"),
        "--data",
        str(DATA),
        cwd=folder,
        env=cli_env(),
        timeout=600,
    )
    after = _trials(url)
    third = run_cli(
        "reproduce",
        "--quick",
        "--storage",
        url,
        "--out",
        str(folder / "report"),
        "--data",
        str(DATA),
        cwd=folder,
        env=cli_env(),
        timeout=600,
    )
    return {
        "folder": folder,
        "url": url,
        "interrupted": (proc.returncode, "".join(seen) + out, err),
        "before": before,
        "second": second,
        "after": after,
        "third": third,
        "final": _trials(url),
    }


@pytest.mark.slow
@pytest.mark.data
def test_an_interrupted_reproduction_finishes_without_repeating_a_run(reproduced) -> None:
    code, out, err = reproduced["interrupted"]
    assert code == 130, (out, err)
    assert "Traceback" not in err
    assert "interrupted; the finished runs are kept" in err
    assert "kmlp reproduce --storage" in err  # the command to run again
    before, after = reproduced["before"], reproduced["after"]
    # The fixed runs' trials that were running were failed when interrupted. (A search
    # trial whose FAIL SQLite refused, "database is locked", stays RUNNING until its
    # heartbeat goes stale; the rerun below then fails and reruns it.)
    for name, trials in before.items():
        if not name.split("/")[1].startswith("search"):
            assert all(t.state != TrialState.RUNNING for t in trials), name
    finished = {
        (name, t.number)
        for name, trials in before.items()
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    }
    assert any(name.endswith("/init") for name, _ in finished)
    second = reproduced["second"]
    assert second.code == 0, second.stderr
    runs = [f for f in finished if not f[0].endswith("/gradcheck")]
    assert f"{len(runs)} finished earlier and reused" in second.stdout
    for name, trials in after.items():
        by_number = {t.number: t for t in trials}
        # every run finished before the interrupt is still there, unchanged
        for study, number in finished:
            if study == name:
                assert by_number[number].state in (TrialState.COMPLETE, TrialState.PRUNED)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        if name.split("/")[1] in ("networks", "init", "retrain", "gradcheck"):
            keys = [t.user_attrs["run_key"] for t in done]
            assert len(keys) == len(set(keys)), f"{name}: a finished run was repeated"
        else:  # a search: exactly its budget per stage, none repeated
            stages = [t.user_attrs["stage"] for t in done]
            assert sorted(stages) == sorted([0, 1, 2] * (len(done) // 3)), name
    counts = {"networks": 4, "init": 12, "gradcheck": 8}
    for kind, n in counts.items():
        assert sum(t.state == TrialState.COMPLETE for t in after[f"{PREFIX}/{kind}"]) == n


@pytest.mark.slow
@pytest.mark.data
def test_rerunning_a_finished_reproduction_runs_nothing(reproduced) -> None:
    third = reproduced["third"]
    assert third.code == 0, third.stderr
    assert "0 runs to do" in third.stdout and "nothing left to run" in third.stdout
    counts = {name: len(trials) for name, trials in reproduced["after"].items()}
    assert {name: len(trials) for name, trials in reproduced["final"].items()} == counts


@pytest.mark.slow
@pytest.mark.data
def test_the_report_has_every_published_figure_beside_kmlps(reproduced) -> None:
    report = reproduced["folder"] / "report"
    rows = json.loads((report / "results.json").read_text())
    assert len(rows) >= 14
    for row in rows:
        assert {"name", "metric", "published", "measured", "gap", "spread", "note"} <= set(row)
        assert row["measured"] is not None, row
    by_key = {row["key"]: row for row in rows}
    net = by_key["networks/3-layer-bn"]
    assert net["published"] == 54.0 and 10.0 < net["measured"] < 60.0
    assert net["gap"] == pytest.approx(net["measured"] - 54.0, abs=0.01)
    assert net["spread"] > 0
    # the quick run is far from the published numbers, and says so plainly
    assert net["within_spread"] is False and "Differs" in net["note"]
    assert "not comparable" in net["note"]
    assert by_key["gradcheck/3-layer"]["measured"] < 1e-8
    for png in ("gradient-norms", "networks", "init-loss", "search-published", "search-auto"):
        assert (report / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    for text in (md, page):
        for section in (
            "Verdict",
            "Gradient check",
            "Test accuracy",
            "Coarse-to-fine search",
            "Sensitivity to initialisation",
        ):
            assert section in text
        assert "published" in text and "kmlp" in text and "gap" in text
    assert page.count("<table>") >= 6 and "plotly" in page
    assert len(page) > 1_000_000 and "<script src=" not in page  # plotly.js inline


@pytest.mark.slow
@pytest.mark.data
def test_the_runs_are_studies_a_person_recognises_in_the_dashboard(reproduced) -> None:
    url = reproduced["url"]
    storage = optuna.storages.RDBStorage(url)
    names = {s.study_name for s in storage.get_all_studies()}
    assert {f"{PREFIX}/{kind}" for kind in KINDS} <= names
    networks = optuna.load_study(study_name=f"{PREFIX}/networks", storage=storage)
    assert networks.metric_names == ["test accuracy"]
    done = networks.get_trials(states=(TrialState.COMPLETE,))
    assert {(t.params["layers"], t.params["batch_norm"]) for t in done} == {
        (3, False),
        (3, True),
        (9, False),
        (9, True),
    }
    assert {t.params["init"] for t in done} == {"he"} and {t.params["cycles"] for t in done} == {1}
    for t in done:
        assert t.value == pytest.approx(t.user_attrs["test_accuracy"])
        assert t.intermediate_values  # validation accuracy per checkpoint
        files = {m.filename for m in get_all_artifact_meta(t, storage=storage)}
        assert files == {f"trial-{t.number}-curves.png", f"trial-{t.number}-curves.csv"}
    init = optuna.load_study(study_name=f"{PREFIX}/init", storage=storage)
    # the three σ of each network trained together (a group cut by the interrupt reruns
    # only its unfinished members)
    assert 3 in {t.user_attrs["lockstep"] for t in init.get_trials(states=(TrialState.COMPLETE,))}
    search = optuna.load_study(study_name=f"{PREFIX}/search-published", storage=storage)
    assert search.metric_names == ["validation accuracy"]
    assert [s["low"] for s in search.user_attrs["stages"]] == [-5.0, -3.0, -3.0]
    assert os.path.isdir(reproduced["folder"] / "k-artifacts")


# --- bad input: one line, non-zero, before any work ---------------------------------------


def test_an_unknown_option_is_one_line(tmp_path: Path) -> None:
    result = run_cli("reproduce", "--quick", "--bogus", cwd=tmp_path, env=cli_env())
    assert_one_line_error(result, "unrecognized arguments: --bogus")
    assert result.code == 2


def test_more_processes_than_cores_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    result = run_cli(
        "reproduce",
        "--quick",
        "--processes",
        "999",
        "--storage",
        f"sqlite:///{db}",
        cwd=tmp_path,
        env=cli_env(),
    )
    assert_one_line_error(result, "kmlp: error:", "--processes 999")
    assert result.code == 2 and not db.exists()


def test_an_unwritable_report_folder_is_refused_before_the_storage_is_touched(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = tmp_path / "k.db"
    result = run_cli(
        "reproduce",
        "--quick",
        "--storage",
        f"sqlite:///{db}",
        "--out",
        str(blocker / "report"),
        cwd=tmp_path,
        env=cli_env(),
    )
    assert_one_line_error(result, "kmlp: error:", "cannot write the report")
    assert result.code == 2
    assert not db.exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:1/nothing", "sqlite:////no/such/folder/k.db"],
    ids=["refused-connection", "missing-folder"],
)
def test_an_unreachable_storage_is_one_line(tmp_path: Path, url: str) -> None:
    result = run_cli(
        "reproduce",
        "--quick",
        "--storage",
        url,
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
        env=cli_env(),
        timeout=120,
    )
    assert_one_line_error(result, "kmlp: error:", "cannot open")
    assert result.code == 2


def test_missing_data_is_one_line_before_any_study_is_made(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    result = run_cli(
        "reproduce",
        "--quick",
        "--storage",
        f"sqlite:///{db}",
        "--out",
        str(tmp_path / "r"),
        "--data",
        str(tmp_path / "nowhere"),
        cwd=tmp_path,
        env=cli_env(),
    )
    assert_one_line_error(result, "kmlp: error:", "does not exist")
    assert result.code == 2
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    assert storage.get_all_studies() == []
