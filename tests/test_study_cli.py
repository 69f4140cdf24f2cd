"""The study commands end to end: launch, show, studies, export, retrain, Optuna's CLI,
and bad input (one line ``kmlp: error: ...``, exit 2, nothing stored lost)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from kmlp.cli.main import main
from kmlp.network import TrainConfig
from kmlp.storage import open_storage
from kmlp.study import SearchConfig
from kmlp.study.launch import prepare_study

DATA = os.environ.get("KMLP_DATA")
ROOT = Path(__file__).resolve().parents[1]
OPTUNA = Path(sys.executable).with_name("optuna")
needs_data = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
PG_URL = os.environ.get("KMLP_TEST_POSTGRES_URL")

SMALL = [
    "--n-train", "1000", "--n-val", "300", "--hidden", "10", "--cycles", "1", "--n-s", "50",
]  # fmt: skip


def kmlp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "kmlp", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A small finished study on real data (2 stages x 3 trials, 2 workers), published for
    dashboards."""
    if not DATA:
        pytest.skip("set KMLP_DATA to the CIFAR-10 folder")
    folder = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{folder / 'k.db'}"
    done = kmlp(
        "launch", "--study", "cli", "--storage", url, "--data", DATA, *SMALL,
        "--stages", "2", "--trials", "3", "--top-k", "2", "--workers", "2",
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert (
        sum(bool(re.search(r"stage \d trial #\d+ \(\d/3\): lambda", line)) for line in lines) == 6
    )
    assert any(re.match(r"\[w\d\] stage 1: log10 lambda in \[", line) for line in lines)
    assert any("best:" in line for line in lines)
    # the dashboards' hooks ran in both worker processes: curves stored as artifacts
    assert len(list((folder / "k-artifacts").iterdir())) >= 6
    return folder, url


@needs_data
def test_show_and_studies(finished):
    folder, url = finished
    shown = kmlp("show", "--study", "cli", "--storage", url, cwd=folder)
    assert shown.returncode == 0
    rows = [line.split() for line in shown.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1"]
    assert all(r[4] == "3/3" for r in rows)
    listed = kmlp("studies", "--storage", url, cwd=folder)
    assert listed.returncode == 0
    assert any(line.split()[:2] == ["cli", "6"] for line in listed.stdout.splitlines())


@needs_data
def test_optuna_cli_reads_the_study(finished):
    folder, url = finished
    base = ["--study-name", "cli", "--storage", url, "-f", "json"]
    trials = subprocess.run([OPTUNA, "trials", *base], capture_output=True, text=True, cwd=folder)
    assert trials.returncode == 0, trials.stderr
    rows = json.loads(trials.stdout)
    assert len(rows) == 6
    assert all("log10_lambda" in row["params"] for row in rows)
    assert all(row["user_attrs"]["stage"] in (0, 1) for row in rows)
    best = subprocess.run([OPTUNA, "best-trial", *base], capture_output=True, text=True)
    assert best.returncode == 0, best.stderr
    study = optuna.load_study(study_name="cli", storage=url)
    assert json.loads(best.stdout)["number"] == study.best_trial.number


@needs_data
def test_export_then_retrain_records_on_the_study(finished):
    folder, url = finished
    out = folder / "best.json"
    exported = kmlp("export", "--study", "cli", "--storage", url, "-o", str(out), cwd=folder)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(out.read_text())
    study = optuna.load_study(study_name="cli", storage=url)
    best = max(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
        key=lambda t: (t.value, -t.number),
    )
    assert document["trial"] == best.number
    assert document["lambda"] == pytest.approx(10 ** best.params["log10_lambda"])
    assert document["config"]["lam"] == pytest.approx(document["lambda"])
    assert document["data"]["fingerprint"] and document["versions"]["optuna"] == optuna.__version__
    assert TrainConfig.from_dict(document["config"]).hidden == (10,)

    model = folder / "model.npz"
    retrained = kmlp(
        "retrain", str(out), "--cycles", "1", "--json", "--data", DATA, "--save", str(model),
        "--val-size", "5000", cwd=folder,
    )  # fmt: skip
    assert retrained.returncode == 0, retrained.stderr
    result = json.loads(retrained.stdout)
    assert 0.15 < result["test_accuracy"] <= 1 and result["recorded_on_study"] is True
    # same data, config, seed and BLAS threads (1 per worker) as the trial: same accuracy
    assert document["blas_threads"] == result["blas_threads"] == 1
    assert result["val_accuracy"] == pytest.approx(document["val_accuracy"])
    assert model.exists()
    study = optuna.load_study(study_name="cli", storage=url)
    assert study.user_attrs["retrain"][-1]["test_accuracy"] == result["test_accuracy"]

    # by default the method's final step: 1000 validation images, the rest for training
    final = kmlp("retrain", str(out), "--cycles", "1", "--json", "--data", DATA, cwd=folder)
    assert final.returncode == 0, final.stderr
    final_result = json.loads(final.stdout)
    assert final_result["val_size"] == 1000 and result["val_size"] == document["data"]["val_size"]
    assert final_result["train_size"] == result["train_size"]  # the study's n_train subset
    assert "differs" not in final.stderr


@needs_data
def test_retrain_without_reachable_storage_still_reports(finished, tmp_path):
    folder, url = finished
    out = tmp_path / "best.json"
    assert (
        kmlp("export", "--study", "cli", "--storage", url, "-o", str(out), cwd=folder).returncode
        == 0
    )
    document = json.loads(out.read_text())
    document["storage"] = "postgresql+psycopg2://nobody@127.0.0.1:1/gone"
    out.write_text(json.dumps(document))
    retrained = kmlp("retrain", str(out), "--cycles", "1", "--json", "--data", DATA, cwd=tmp_path)
    assert retrained.returncode == 0, retrained.stderr
    assert json.loads(retrained.stdout)["recorded_on_study"] is False
    assert "not recorded" in retrained.stderr


@needs_data
def test_relaunch_with_other_settings_is_refused(finished):
    folder, url = finished
    before = len(optuna.load_study(study_name="cli", storage=url).trials)
    args = ["launch", "--study", "cli", "--storage", url, "--data", DATA, *SMALL]
    refused = kmlp(*args, "--hidden", "12", "--stages", "2", "--trials", "3", cwd=folder)
    assert refused.returncode == 2
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmlp: error: study 'cli' exists")
    assert "config.hidden" in err[0]
    assert "search.stages" not in err[0]
    assert len(optuna.load_study(study_name="cli", storage=url).trials) == before


# --- bad input, in process ------------------------------------------------------------------


@pytest.fixture
def db(tmp_path) -> str:
    """A storage holding one kmlp study with no trials ("empty")."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    prepare_study(
        study_name="empty",
        rdb=open_storage(url),
        train_config=TrainConfig(),
        search=SearchConfig(),
        data={"fingerprint": "x"},
    )
    return url


BAD = [
    (["launch", "--study", "x", "--coarse", "-1", "-5"], "low must be < high"),
    (["launch", "--study", "x", "--coarse", "-2", "-2"], "low must be < high"),
    (["launch", "--study", "x", "--ranges", "-5,-1;-2,-3"], "range 1 -2,-3: low must be < high"),
    (["launch", "--study", "x", "--ranges", "-5,-1;-3,-2", "--stages", "3"], "--ranges gives 2"),
    (["launch", "--study", "x", "--trials", "5,5", "--stages", "3"], "one per stage"),
    (["launch", "--study", "x", "--sampler", "grid"], "invalid choice: 'grid'"),
    (["launch", "--study", "x", "--storage", "notascheme://"], "no database driver"),
    (["launch", "--study", "x", "--storage", "garbage"], "malformed storage URL"),
    (["launch", "--study", "x", "--storage", "postgresql://nobody@127.0.0.1:1/x"], "refused"),
    (["show", "--study", "nope", "--storage", "{db}"], "no study named 'nope'"),
    (["export", "--study", "nope", "--storage", "{db}"], "no study named 'nope'"),
    (["worker", "--study", "nope", "--storage", "{db}"], "no study named 'nope'"),
    (["export", "--study", "empty", "--storage", "{db}"], "no completed trial"),
    (["studies", "--storage", "sqlite:////no/such/dir/k.db"], "does not exist"),
    (["retrain", "{tmp}/not-export.json"], "is not a kmlp export"),
    (["retrain", "{tmp}/missing.json"], "no such export file"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:3]) + "|" + m for a, m in BAD])
def test_bad_input_is_one_line_exit_2(argv, message, db, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KMLP_DEBUG", raising=False)
    (tmp_path / "not-export.json").write_text('{"hello": 1}')
    argv = [a.replace("{db}", db).replace("{tmp}", str(tmp_path)) for a in argv]
    before = optuna.load_study(study_name="empty", storage=db).user_attrs
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "error:" in err[0] and message in err[0], err
    assert optuna.load_study(study_name="empty", storage=db).user_attrs == before
    assert not (tmp_path / "kmlp.db").exists()  # nothing created by a failed command


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    done = kmlp("launch", "--study", "x", "--storage", "notascheme://", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("kmlp: error: cannot open notascheme://")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")
def test_unknown_study_on_postgres(capsys):
    assert main(["show", "--study", "kmlp-no-such-study", "--storage", PG_URL]) == 2
    assert "no study named 'kmlp-no-such-study'" in capsys.readouterr().err


def test_launch_flags_parse_into_a_search_config():
    from kmlp.cli.main import build_parser
    from kmlp.cli.study_cmd import search_config_from_args

    def parse(*argv: str) -> SearchConfig:
        return search_config_from_args(build_parser().parse_args(["launch", "--study", "x", *argv]))

    assert parse() == SearchConfig()
    assert parse("--trials", "20,10").stages == 2
    manual = parse("--ranges", "-5,-1;-3,-1;-3,-2", "--trials", "4")
    assert manual.ranges == ((-5, -1), (-3, -1), (-3, -2)) and manual.stages == 3
    custom = parse("--coarse", "-4", "-2", "--no-prune", "--sampler", "tpe", "--seed", "3")
    assert custom.coarse == (-4, -2) and not custom.prune and custom.sampler == "tpe"
    assert custom.seed == 3


@needs_data
@pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")
def test_a_plain_postgresql_url_works_in_kmlp_and_optunas_own_tools(tmp_path):
    """psycopg 3 is SQLAlchemy 2.1's driver for postgresql://: the URL kmlp prints works
    unchanged in ``optuna trials`` and ``optuna.load_study`` in kmlp's environment."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kmlp-plain-url-{os.getpid()}"
    try:
        done = kmlp(
            "launch", "--study", name, "--storage", url, "--data", DATA, *SMALL,
            "--stages", "1", "--trials", "2", "--workers", "1", "--no-publish",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed = subprocess.run(
            [OPTUNA, "trials", "--study-name", name, "--storage", url, "-f", "json"],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 2
        study = optuna.load_study(study_name=name, storage=url)
        assert len(study.trials) == 2
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=url)


@pytest.mark.skipif(not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL")
def test_psycopg2_urls_still_work_where_it_is_installed():
    pytest.importorskip("psycopg2")
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL).set(drivername="postgresql+psycopg2").render_as_string(False)
    rdb = open_storage(url, create=False)
    assert rdb.engine.dialect.driver == "psycopg2"
    rdb.get_all_studies()
