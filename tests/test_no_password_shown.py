"""A password given in ``--storage`` appears nowhere kmlp writes.

A small real study is launched on PostgreSQL with a password in the URL (the test server
trusts user postgres, so any password is accepted), then every command is run on it:
launch, show, studies, export, retrain, report, the dashboard's printed line, failing
commands; the password must be absent from all their output, from the export file, the
report folder, the artifact folder, and from the study's and its trials' attributes (the
dashboard note included).
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from pathlib import Path

import optuna
import pytest

from tests.helpers.studies import DATA, PG_URL, SMALL, kmlp, start_dashboard, stop

pytestmark = pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="set KMLP_TEST_POSTGRES_URL to a PostgreSQL URL"
)


def with_password(url: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)


def texts_under(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as text (bytes decoded leniently: PNGs hold no text)."""
    return {
        str(path): path.read_bytes().decode("utf-8", errors="replace")
        for path in folder.rglob("*")
        if path.is_file()
    }


@needs_postgres
def test_a_storage_password_is_never_written(tmp_path: Path) -> None:
    secret = f"S3cretPW-{os.getpid()}"
    url = with_password(PG_URL or "", secret)
    encoded = urllib.parse.quote(secret, safe="")
    name = f"kmlp-secret-{os.getpid()}"
    artifacts = tmp_path / "artifacts"
    seen: dict[str, str] = {}

    def run(label: str, *args: str, ok: bool = True) -> str:
        done = kmlp(*args, cwd=tmp_path)
        seen[f"{label} stdout"] = done.stdout
        seen[f"{label} stderr"] = done.stderr
        assert (done.returncode == 0) == ok, (label, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    try:
        launched = run(
            "launch", "launch", "--study", name, "--storage", url, "--data", DATA, *SMALL,
            "--stages", "1", "--trials", "2", "--workers", "2",
            "--artifacts", str(artifacts),
        )  # fmt: skip
        assert "next:" in launched and "password is left out" in launched
        run("show", "show", "--study", name, "--storage", url)
        run("show --json", "show", "--study", name, "--storage", url, "--json")
        run("studies", "studies", "--storage", url, "--json")
        export = tmp_path / "best.json"
        run("export", "export", "--study", name, "--storage", url, "-o", str(export))
        run(
            "retrain", "retrain", str(export), "--data", DATA, "--n-train", "1000",
            "--val-size", "300", "--storage", url, "--blas-threads", "1",
        )  # fmt: skip
        report = tmp_path / "report"
        run("report", "report", "--study", name, "--storage", url, "--out", str(report),
            "--artifacts", str(artifacts))  # fmt: skip
        for label, args in {
            "no such study": ("show", "--study", "nope", "--storage", url),
            "export to nowhere": ("export", "--study", name, "--storage", url, "-o",
                                  str(tmp_path / "no" / "b.json")),
            "other settings": ("launch", "--study", name, "--storage", url, "--data", DATA,
                               *SMALL, "--hidden", "20", "--stages", "2", "--trials", "2"),
            "bad port": ("show", "--storage", url.replace("5432", "notaport")),
            "no server": ("studies", "--storage", url.replace(":5432", ":1")),
            "ambiguous": ("show", f"--st={url}"),
        }.items():  # fmt: skip
            run(label, *args, ok=False)
        dashboard, base = start_dashboard(url, "--artifacts", str(artifacts))
        stop(dashboard)
        seen["dashboard line"] = f"{base} {dashboard.stdout.read() if dashboard.stdout else ''}"

        storage = optuna.storages.RDBStorage(PG_URL or "")
        study = optuna.load_study(study_name=name, storage=storage)
        from optuna_dashboard import get_note

        seen["note"] = get_note(study)
        study_id = storage.get_study_id_from_name(name)
        seen["study attributes"] = json.dumps(
            [study.user_attrs, storage.get_study_system_attrs(study_id)], default=str
        )
        seen["trial attributes"] = json.dumps(
            [[t.user_attrs, t.system_attrs, t.params] for t in study.trials], default=str
        )
        assert study.user_attrs["retrain"], "the retrain was recorded on the study"
        seen |= texts_under(tmp_path)  # the export, the report folder, the artifacts
        assert str(export) in seen and any("report.html" in key for key in seen)
        assert any(str(artifacts) in key for key in seen)
        leaked = [label for label, text in seen.items() if secret in text or encoded in text]
        assert leaked == []
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=PG_URL)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The export of a small real study (1 stage x 2 trials on SQLite), as a dict."""
    folder = tmp_path_factory.mktemp("exported")
    url = f"sqlite:///{folder / 'k.db'}"
    done = kmlp(
        "launch", "--study", "w", "--storage", url, "--data", DATA or "", *SMALL,
        "--stages", "1", "--trials", "2", "--workers", "1", "--no-publish", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    export = folder / "best.json"
    done = kmlp("export", "--study", "w", "--storage", url, "-o", str(export), cwd=folder)
    assert done.returncode == 0, done.stderr
    return json.loads(export.read_text())


@pytest.mark.parametrize(
    "storage",
    [
        "postgresql://postgres:{secret}@127.0.0.1:notaport/test",  # malformed
        "postgresql://postgres:{secret}@127.0.0.1:1/test",  # no server there
        "postgresql://postgres@127.0.0.1:1/test?password={secret}",
    ],
)
def test_retrain_warns_without_the_password_of_an_exports_storage(
    tmp_path: Path, exported: dict, storage: str
) -> None:
    """An export whose storage URL (crafted, or a server gone) holds a password: the
    retrain still trains and says, in one warning line without the password, why the
    result was not recorded."""
    secret = "S3cretPW"
    export = tmp_path / "best.json"
    export.write_text(json.dumps({**exported, "storage": storage.format(secret=secret)}))
    done = kmlp(
        "retrain", str(export), "--data", DATA or "", "--n-train", "1000", "--val-size",
        "300", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.startswith("kmlp: warning: result not recorded on the study: "), warning
    assert "Traceback" not in done.stderr
    assert secret not in done.stdout + done.stderr
