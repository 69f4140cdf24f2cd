"""``kmlp dashboard`` as a user runs it: a subprocess serving optuna-dashboard's HTTP API.

Also bad input: a port in use, an unreachable storage (one line, exit 2, no traceback).
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmlp.dashboards.publish import CURVES_FIGURE_ID, SEARCH_FIGURE_ID
from kmlp.study.record import METRIC_NAME
from tests.helpers.studies import (
    DEMO_SEARCH,
    PG_URL,
    STUDY,
    get_json,
    kmlp,
    launch_published,
    shared_study,
    start_dashboard,
    stop,
)


def run_cli(*args: str, timeout: float = 60):
    return kmlp(*args, timeout=timeout)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(storage URL, dashboard base URL) of a running ``kmlp dashboard``."""
    storage_url, _ = shared_study(tmp_path_factory)
    proc, base_url = start_dashboard(storage_url)
    yield storage_url, base_url
    stop(proc)


def test_api_shows_study_trials_intermediate_values_artifacts_and_figure(
    dashboard: tuple[str, str],
) -> None:
    _, base = dashboard
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == STUDY]
    attrs = {a["key"] for a in summary["user_attrs"]}
    assert {"config", "stages"} <= attrs
    detail = get_json(f"{base}/api/studies/{summary['study_id']}")
    trials = detail["trials"]
    assert len(trials) == sum(DEMO_SEARCH.trials)
    assert detail["objective_names"] == [METRIC_NAME]  # not "Objective 0"
    for trial in trials:
        assert len(trial["intermediate_values"]) >= 10  # one per checkpoint (10 per cycle)
        names = sorted(a["filename"] for a in trial["artifacts"])
        n = trial["number"]
        assert names == [f"trial-{n}-curves.csv", f"trial-{n}-curves.png"]
        user_attrs = {a["key"] for a in trial["user_attrs"]}
        assert {"stage", "lambda", "val_accuracy", "train_accuracy", "seconds"} <= user_attrs
    # Artifacts are served from kmlp's store (the default folder beside the database).
    trial = trials[0]
    png = next(a for a in trial["artifacts"] if a["mimetype"] == "image/png")
    url = f"{base}/artifacts/{summary['study_id']}/{trial['trial_id']}/{png['artifact_id']}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.read(8) == b"\x89PNG\r\n\x1a\n"
    # The study's figures and note.
    figures = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert set(figures) == {SEARCH_FIGURE_ID, CURVES_FIGURE_ID}
    search = figures[SEARCH_FIGURE_ID]
    assert search["layout"]["title"]["text"].startswith(f"λ search of {STUDY}")
    points = sum(len(t["x"]) for t in search["data"] if t["name"].startswith("stage"))
    assert points == len(trials)
    assert sorted(a["filename"] for a in detail["artifacts"]) == [
        "search-stage0-4trials.png",
        "search-stage1-7trials.png",
    ]
    assert "kmlp export --study demo" in detail["note"]["body"]
    assert "How each range was chosen:" in detail["note"]["body"]


def test_port_in_use_is_one_line_exit_2(tmp_path_factory: pytest.TempPathFactory) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli("dashboard", "--storage", storage_url, "--port", str(port))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"kmlp: error: port {port} on 127.0.0.1 is already in use; choose another with --port"
    ]


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda tmp: f"sqlite:///{tmp / 'nope.db'}", "no study storage at sqlite:///"),
        (lambda tmp: f"sqlite:///{tmp / 'no' / 'dir' / 'k.db'}", "no study storage at"),
        (lambda tmp: "postgresql+psycopg2://kmlp:secret@127.0.0.1:1/none", "127.0.0.1"),
    ],
    ids=["missing-file", "missing-folder", "refused-postgres"],
)
def test_unreachable_storage_is_one_line_exit_2(tmp_path: Path, make_url, expected: str) -> None:
    res = run_cli("dashboard", "--storage", make_url(tmp_path), "--port", "0")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmlp: error: ") and expected in lines[0]
    assert "secret" not in res.stderr and "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing created where the URL pointed


def test_non_loopback_host_warns_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    proc, base = start_dashboard(storage_url, "--host", "0.0.0.0")
    try:
        assert get_json(f"{base}/api/meta")["artifact_is_available"] is True
    finally:
        stop(proc)
    err = proc.stderr.read()  # type: ignore[union-attr]
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "reachable from other machines" in warnings[0]


def test_workers_writing_beside_the_dashboard_never_fail(tmp_path: Path) -> None:
    """A writer (as a worker) adds trials while the dashboard is read continuously."""
    import threading

    import optuna

    from kmlp.storage import open_storage

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    study = optuna.create_study(study_name="busy", storage=open_storage(url), direction="maximize")
    proc, base = start_dashboard(url)
    statuses: list[int] = []
    done = threading.Event()

    def browse() -> None:
        while not done.is_set():
            with urllib.request.urlopen(f"{base}/api/studies/{study._study_id}", timeout=30) as r:
                statuses.append(r.status)

    reader = threading.Thread(target=browse)
    reader.start()
    try:
        dist = {"log10_lambda": optuna.distributions.FloatDistribution(-5, -1)}
        for i in range(40):
            trial = study.ask(dist)
            for step in range(5):
                trial.report(0.1 * step, step)
            trial.set_user_attr("stage", 0)
            study.tell(trial, 0.01 * i)
    finally:
        done.set()
        reader.join(timeout=60)
        stop(proc)
    assert len(study.get_trials()) == 40
    assert len(statuses) >= 5 and set(statuses) == {200}


def test_dashboard_on_postgresql(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("set KMLP_TEST_POSTGRES_URL to a PostgreSQL database (.ci/run does)")
    import uuid

    import optuna

    name = f"kmlp-dashboard-test-{uuid.uuid4().hex[:8]}"
    artifacts = tmp_path / "shared-artifacts"
    try:
        launch_published(tmp_path, name=name, storage_url=PG_URL, artifacts=str(artifacts))
        study = optuna.load_study(study_name=name, storage=PG_URL)
        proc, base = start_dashboard(PG_URL, "--artifacts", str(artifacts))
        try:
            detail = get_json(f"{base}/api/studies/{study._study_id}")
        finally:
            stop(proc)
        assert {g["id"] for g in detail["plotly_graph_objects"]} == {
            SEARCH_FIGURE_ID,
            CURVES_FIGURE_ID,
        }
        assert sorted(a["filename"] for a in detail["artifacts"]) == [
            "search-stage0-4trials.png",
            "search-stage1-7trials.png",
        ]
        assert len(detail["trials"]) == 7 and detail["objective_names"] == [METRIC_NAME]
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=PG_URL)
