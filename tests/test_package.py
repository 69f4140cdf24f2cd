"""The installed package: one import name, its public API, its version."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kmlp
from tests.conftest import ROOT, run_cli


def test_the_public_api_is_importable_from_kmlp() -> None:
    for name in kmlp.__all__:
        assert getattr(kmlp, name) is not None, name
    assert kmlp.MLP is __import__("kmlp.network", fromlist=["MLP"]).MLP
    with pytest.raises(AttributeError):
        kmlp.no_such_name  # noqa: B018


def test_every_package_error_derives_from_the_root() -> None:
    from kmlp.dashboards.errors import DashboardError
    from kmlp.network.errors import KmlpNetworkError
    from kmlp.storage.errors import StorageError
    from kmlp.study.errors import StudyError

    for error in (DashboardError, KmlpNetworkError, StorageError, StudyError):
        assert issubclass(error, kmlp.KmlpError)


def test_kmlp_version() -> None:
    done = run_cli("--version")
    assert done.code == 0
    assert done.stdout.strip() == f"kmlp {kmlp.__version__}"


def test_a_wheel_has_one_top_level_import_name(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("kmlp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"kmlp"}
    for module in ("network/model.py", "study/worker.py", "storage/urls.py", "cli/main.py"):
        assert f"kmlp/{module}" in names
    assert "kmlp/dashboards/report.py" in names
    assert not any(n.startswith("kmlp/tests/") for n in names)
