"""The study commands end to end: launch, show, studies, export, retrain, Optuna's CLI,
and bad input (one line ``kmlp: error: ...``, exit 2, nothing stored lost)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
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
from tests.conftest import CIFAR_FILES
from tests.helpers.studies import DATA, PG_URL, SMALL, kmlp, launch_real

OPTUNA = Path(sys.executable).with_name("optuna")
needs_data = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
LAUNCH = ["--stages", "2", "--trials", "3", "--top-k", "2", "--workers", "2"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A small finished study on real data (2 stages x 3 trials, 2 workers), published for
    dashboards."""
    folder = tmp_path_factory.mktemp("cli")
    # trials alone: --as-searched retrain must repeat a trial's accuracy exactly, which a
    # lockstep member (equal to lone training only up to float rounding) does not
    url, done = launch_real(folder, "cli", "--lockstep", "1")
    lines = done.stdout.splitlines()
    trial_lines = [line for line in lines if re.search(r"stage \d trial #\d+ \(\d/3\)", line)]
    assert len(trial_lines) == 6, done.stdout
    # every trial line ends with the whole study's progress, elapsed time and ETA
    assert all(re.search(r"\| \d/6 trials, \d+ s elapsed", line) for line in trial_lines)
    assert any(re.search(r"ETA \d+ s$", line) for line in trial_lines)
    assert any(re.match(r"\[w\d\] stage 1: log10 lambda in \[", line) for line in lines)
    assert any(line.startswith("best: trial #") for line in lines)
    assert "a dead worker" not in done.stdout  # the end-of-stage wait reads as normal
    # the launch ends with its time and the next commands, quoted, with the storage URL
    assert re.search(r"^launch took \d+ (s|min)", done.stdout, re.M)
    nexts = lines[lines.index("next:") + 1 :]
    assert nexts == [
        f"  kmlp dashboard --storage {url}",
        f"  kmlp export --study cli --storage {url} -o best.json",
        f"  kmlp report --study cli --storage {url} --out report-cli",
    ]
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
    assert "how each range was chosen:" in shown.stdout
    assert "progress: 6/6 trials, 2/2 stages: finished" in shown.stdout
    # the storage holds one study: --study is not needed
    alone = kmlp("show", "--storage", url, cwd=folder)
    assert alone.returncode == 0 and alone.stdout == shown.stdout
    listed = kmlp("studies", "--storage", url, cwd=folder)
    assert listed.returncode == 0
    assert any(line.split()[:3] == ["cli", "6/6", "2/2"] for line in listed.stdout.splitlines())


@needs_data
def test_show_and_studies_json(finished):
    folder, url = finished
    study = optuna.load_study(study_name="cli", storage=url)
    shown = kmlp("show", "--storage", url, "--json", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["study"] == "cli" and doc["finished"] is True
    assert doc["best_lambda"] == pytest.approx(10 ** study.best_trial.params["log10_lambda"])
    assert doc["best"]["trial"] == study.best_trial.number
    assert [s["stage"] for s in doc["stages"]] == [0, 1]
    assert [s["record"] for s in doc["stages"]] == study.user_attrs["stages"]
    assert all(s["how"] and s["done"] == 3 for s in doc["stages"])
    listed = kmlp("studies", "--storage", url, "--json", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)["studies"]
    assert entry["stages"] == doc["stages"] and entry["best_lambda"] == doc["best_lambda"]


@needs_data
def test_rerunning_a_finished_study_says_so_at_once(finished):
    folder, url = finished
    before = [
        (t.number, t.state, t.value)
        for t in optuna.load_study(study_name="cli", storage=url).trials
    ]
    # --data names a folder of empty CIFAR-10 files (a folder that does not exist is
    # refused up front, like any wrong flag): the answer comes before any data is read
    empty = folder / "empty-cifar"
    empty.mkdir(exist_ok=True)
    for name in CIFAR_FILES:
        (empty / name).write_bytes(b"")
    again = kmlp(
        "launch", "--study", "cli", "--storage", url, "--data", str(empty),
        *SMALL, *LAUNCH, cwd=folder,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("study 'cli' is already finished (6 trials, 2 stages)")
    assert "next:" in again.stdout and "Traceback" not in again.stderr
    assert [
        (t.number, t.state, t.value)
        for t in optuna.load_study(study_name="cli", storage=url).trials
    ] == before
    worker = kmlp("worker", "--study", "cli", "--storage", url, "--data", str(empty), cwd=folder)
    assert worker.returncode == 0 and "is finished; nothing to run" in worker.stdout


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

    # --as-searched: the study's own data, config, seed and BLAS threads: same accuracy
    model = folder / "model.npz"
    retrained = kmlp(
        "retrain", str(out), "--cycles", "1", "--json", "--data", DATA, "--save", str(model),
        "--as-searched", cwd=folder,
    )  # fmt: skip
    assert retrained.returncode == 0, retrained.stderr
    result = json.loads(retrained.stdout)
    assert 0.15 < result["test_accuracy"] <= 1 and result["recorded_on_study"] is True
    assert document["blas_threads"] == result["blas_threads"] == 1
    # the study ran its trials alone (--lockstep 1): retrain repeats it exactly
    assert document["lockstep"] == best.user_attrs["lockstep"] == 1
    assert result["val_accuracy"] == pytest.approx(document["val_accuracy"])
    assert result["train_size"] == document["data"]["train_size"] == 1000
    assert model.exists()
    study = optuna.load_study(study_name="cli", storage=url)
    assert study.user_attrs["retrain"][-1]["test_accuracy"] == result["test_accuracy"]

    # by default the method's final step on the full training set, whatever the study used:
    # 1000 validation images, the other 49000 for training (said before it starts)
    final = kmlp("retrain", str(out), "--cycles", "1", "--data", DATA, cwd=folder)
    assert final.returncode == 0, final.stderr
    assert "1 cycle on 49000 training images (full training set; validation 1000" in final.stderr
    assert re.search(
        r"on 49000 training images: validation accuracy [\d.]+% \(1000 images\)", final.stdout
    )
    assert "recorded on study 'cli'" in final.stdout and "differs" not in final.stderr
    fewer = kmlp("retrain", str(out), "--n-train", "3000", "--json", "--data", DATA, cwd=folder)
    assert fewer.returncode == 0, fewer.stderr
    fewer_result = json.loads(fewer.stdout)
    assert (fewer_result["train_size"], fewer_result["val_size"]) == (3000, 1000)
    # show (text and JSON) report the retrained test accuracy of the best trial
    shown = kmlp("show", "--storage", url, cwd=folder)
    assert f"test accuracy {100 * fewer_result['test_accuracy']:.2f}%" in shown.stdout
    assert "on 49000 training images" in shown.stdout
    doc = json.loads(kmlp("show", "--storage", url, "--json", cwd=folder).stdout)
    assert doc["test_accuracy"] == fewer_result["test_accuracy"]
    assert [r["train_size"] for r in doc["retrain"]][-3:] == [1000, 49000, 3000]


@needs_data
def test_export_interval_brackets_lambda_and_retrain_over_seeds(finished, tmp_path):
    _, url = finished
    out = tmp_path / "best.json"
    assert kmlp("export", "--study", "cli", "--storage", url, "-o", str(out)).returncode == 0
    document = json.loads(out.read_text())
    low, high = document["lambda_interval"]
    assert 0 < low <= document["lambda"] <= high and low < high
    assert document["interval"]["method"] == "gaussian process"
    assert document["interval"]["n_trials"] == 6 and document["interval"]["n_val"] == 300
    doc = json.loads(kmlp("show", "--storage", url, "--json").stdout)
    assert doc["lambda_interval"] == [low, high]  # one source: the study's summary
    shown = kmlp("show", "--storage", url).stdout
    assert f"lambda within noise of the best: {low:.3e} to {high:.3e}" in shown

    # three seeds side by side in two processes: one test accuracy each, mean, sample std
    run = kmlp(
        "retrain", str(out), "--seeds", "3", "--jobs", "2", "--n-train", "2000",
        "--cycles", "1", "--json", "--data", DATA,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    accuracies = result["test_accuracies"]
    assert result["seeds"] == [0, 1, 2] and len(accuracies) == 3
    assert all(0.15 < a <= 1 for a in accuracies) and len(set(accuracies)) > 1
    assert result["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 3)
    assert result["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies))
    # progress: a line per finished seed, in the order they finished
    done = re.findall(r"seed (\d) done \((\d)/3\)", run.stderr)
    assert sorted(seed for seed, _ in done) == ["0", "1", "2"]
    assert [n for _, n in done] == ["1", "2", "3"]
    assert result["recorded_on_study"] is True
    doc = json.loads(kmlp("show", "--storage", url, "--json").stdout)
    assert doc["retrain"][-1]["test_accuracies"] == accuracies
    mean, std = 100 * result["test_accuracy_mean"], 100 * result["test_accuracy_std"]
    shown = kmlp("show", "--storage", url).stdout
    assert f"{mean:.2f}% ± {std:.2f} (mean ± sample std of 3 seeds)" in shown
    # the report (and the note: the same markdown) says both
    report = kmlp("report", "--study", "cli", "--storage", url, "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "rep" / "report.html").read_text()
    note = (tmp_path / "rep" / "summary.md").read_text()
    for text in (page, note):
        assert f"{mean:.2f} % ± {std:.2f} (mean ± sample std of 3 seeds)" in text
        assert f"λ within noise of the best: {low:.4g} to {high:.4g}" in text
    # --seed moves the seeds; one seed repeats that seed's network exactly
    one = kmlp(
        "retrain", str(out), "--seeds", "1", "--seed", "2", "--n-train", "2000",
        "--cycles", "1", "--json", "--data", DATA,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    single = json.loads(one.stdout)
    assert single["seeds"] == [2] and single["test_accuracies"] == [accuracies[2]]
    assert single["test_accuracy_std"] is None


@needs_data
def test_retrain_without_reachable_storage_still_reports(finished, tmp_path):
    folder, url = finished
    out = tmp_path / "best.json"
    assert (
        kmlp("export", "--study", "cli", "--storage", url, "-o", str(out), cwd=folder).returncode
        == 0
    )
    document = json.loads(out.read_text())
    document["storage"] = "postgresql://nobody@127.0.0.1:1/gone"
    out.write_text(json.dumps(document))
    retrained = kmlp(
        "retrain", str(out), "--cycles", "1", "--json", "--data", DATA, "--n-train", "2000",
        cwd=tmp_path,
    )  # fmt: skip
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
    (["retrain", "{tmp}/x.json", "--as-searched", "--n-train", "5"], "drop --n-train"),
    (["retrain", "{tmp}/x.json", "--n-train", "0"], "must be >= 1"),
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


def test_show_without_study_needs_exactly_one(db, tmp_path, capsys):
    assert main(["show", "--storage", db, "--json"]) == 0  # the one study, "empty"
    assert json.loads(capsys.readouterr().out)["study"] == "empty"
    prepare_study(
        study_name="other",
        rdb=open_storage(db),
        train_config=TrainConfig(),
        search=SearchConfig(),
        data={"fingerprint": "x"},
    )
    assert main(["show", "--storage", db]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"kmlp: error: {db} holds 2 studies (empty, other): choose one with --study"]
    none = f"sqlite:///{tmp_path / 'none.db'}"
    open_storage(none)
    assert main(["show", "--storage", none]) == 2
    assert "no study in" in capsys.readouterr().err


def test_resume_command_quotes_and_hides_the_password():
    from kmlp.study.commands import resume_command

    argv = ["launch", "--study", "my run", "--storage", "postgresql://u:s3cret@h/db", "--bn"]
    assert resume_command(argv) == (
        "kmlp launch --study 'my run' --storage postgresql://u@h/db --bn"
    )
    assert resume_command(["worker", "--storage=postgresql://u:s3cret@h/db", "--study", "x"]) == (
        "kmlp worker --storage=postgresql://u@h/db --study x"
    )
    assert resume_command(["launch", "--study", "x"]) == "kmlp launch --study x"


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
    assert custom.seed == 3 and custom.pruner == "none"
    assert parse().pruner == "auto" and parse("--prune").pruner == "auto"
    halving = parse("--pruner", "halving")
    assert halving.pruner == "halving" and halving.prune
    assert parse("--pruner", "none") == parse("--no-prune")
    # a study stored before --pruner existed reads back with its pruning as it ran
    stored = SearchConfig(prune=False).to_dict()
    del stored["pruner"]
    assert SearchConfig.from_dict(stored).pruner == "none"


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
