"""``kmlp storage-proxy`` and ``--storage grpc://HOST:PORT``: real proxies, real databases."""

from __future__ import annotations

import os
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from kmlp.storage import RetrySettings, StorageError, open_storage
from kmlp.storage.grpc_proxy import grpc_address
from tests.conftest import assert_one_line_error, run_cli
from tests.helpers.databases import PG_URL, free_port, needs_pg, storage_proxy
from tests.helpers.tcp_proxy import TcpProxy

DATA = os.environ.get("KMLP_DATA")
SMALL = [
    "--n-train", "1000", "--n-val", "300", "--hidden", "10", "--cycles", "1", "--n-s", "50",
]  # fmt: skip


def test_kmlp_commands_take_a_grpc_storage(tmp_path):
    with storage_proxy(f"sqlite:///{tmp_path / 'k.db'}") as url:
        storage = open_storage(url)
        assert storage.rdb is None and storage.url == url
        study = optuna.create_study(study_name="plain", storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        listed = run_cli("studies", "--storage", url, timeout=120)
        assert listed.code == 0 and "plain" in listed.stdout and "kmlp-lock" not in listed.stdout
        shown = run_cli("show", "--study", "plain", "--storage", url, timeout=120)
        assert_one_line_error(shown, "not created by kmlp launch")
        reader = open_storage(url, read_only=True)
        with pytest.raises(StorageError, match="read-only"):
            optuna.load_study(study_name="plain", storage=reader).set_user_attr("k", 1)
        assert len(optuna.load_study(study_name="plain", storage=reader).trials) == 3


@pytest.mark.data
@pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
def test_launch_and_worker_through_the_proxy_keep_exact_budgets(tmp_path):
    with storage_proxy(f"sqlite:///{tmp_path / 'k.db'}") as url:
        args = ["--study", "p", "--storage", url, "--data", DATA, *SMALL]
        launch = run_cli(
            "launch", *args, "--stages", "2", "--trials", "4", "--top-k", "2", "--workers", "2",
            timeout=600, cwd=tmp_path,
        )  # fmt: skip
        assert launch.code == 0, launch.stderr
        assert "Traceback" not in launch.stderr
        study = optuna.load_study(study_name="p", storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert sorted(t.user_attrs["stage"] for t in done) == [0] * 4 + [1] * 4
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        shown = run_cli("show", "--study", "p", "--storage", url, timeout=120)
        assert shown.code == 0 and "grpc://127.0.0.1" in shown.stdout


def test_client_rides_out_a_proxy_restart(tmp_path, capsys):
    db, port = f"sqlite:///{tmp_path / 'k.db'}", free_port()
    with storage_proxy(db, port=port) as url:
        storage = open_storage(url, retry=RetrySettings(timeout=60, max_delay=1.0))
        optuna.create_study(study_name="s", storage=storage)
    restarted, done = threading.Event(), threading.Event()

    def restart_later() -> None:
        time.sleep(3.0)
        with storage_proxy(db, port=port):
            restarted.set()
            done.wait(60)  # the proxy stops when the test is done with it

    thread = threading.Thread(target=restart_later, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        names = [s.study_name for s in storage.get_all_studies()]  # stalls until it is back
    finally:
        done.set()
        thread.join(timeout=60)
    assert names == ["s"] and restarted.is_set() and time.monotonic() - started >= 2.5
    err = capsys.readouterr().err
    assert err.count("unreachable") == 1 and f"grpc://127.0.0.1:{port}" in err


@needs_pg
def test_proxy_rides_out_a_database_outage():
    assert PG_URL
    proxy_err: list[str] = []
    name = f"kmlp-proxy-{uuid.uuid4().hex[:8]}"
    with TcpProxy.for_url(PG_URL) as tcp, storage_proxy(tcp.url(PG_URL), err=proxy_err) as url:
        storage = open_storage(url)
        study = optuna.create_study(study_name=name, storage=storage)
        tcp.cut_for(6.0)
        started = time.monotonic()
        study.set_user_attr("during", "outage")  # stalls in the proxy, then lands
        assert time.monotonic() - started > 4.0
        assert optuna.load_study(study_name=name, storage=storage).user_attrs["during"] == "outage"
        optuna.delete_study(study_name=name, storage=storage)
    assert sum("unreachable" in line for line in proxy_err) == 1, proxy_err


@pytest.mark.parametrize(
    "url, message",
    [
        ("grpc://", "expected grpc://HOST:PORT"),
        ("grpc://127.0.0.1:notaport", "malformed storage proxy URL"),
        ("grpc://127.0.0.1:13000/db", "expected grpc://HOST:PORT"),
        ("grpc://user:pw@127.0.0.1:13000", "expected grpc://HOST:PORT"),
    ],
)
def test_malformed_grpc_urls(url, message):
    with pytest.raises(StorageError, match=message):
        grpc_address(url)


def test_no_proxy_there_is_one_line():
    port = free_port()
    result = run_cli("studies", "--storage", f"grpc://127.0.0.1:{port}", timeout=120)
    assert_one_line_error(result, f"no storage proxy answers at grpc://127.0.0.1:{port}")


def test_proxy_refuses_bad_input_in_one_line(tmp_path):
    result = run_cli("storage-proxy", "--storage", "grpc://127.0.0.1:1", timeout=60)
    assert_one_line_error(result, "serves a database")
    result = run_cli("storage-proxy", "--port", "70000", timeout=60)
    assert_one_line_error(result, "at most 65535")
    db = f"sqlite:///{tmp_path / 'k.db'}"
    with storage_proxy(db) as url:
        _, port = grpc_address(url)
        result = run_cli("storage-proxy", "--storage", db, "--port", str(port), timeout=60)
        assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
