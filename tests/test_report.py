"""``kmlp report``: search figure as PNG and self-contained HTML, curves, summary; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_dashboard_publish import STAGES, STUDY, shared_study
from tests.test_dashboard_server import run_cli


def test_report_writes_figures_curves_and_summary(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    out = tmp_path / "report"
    res = run_cli("report", "--study", STUDY, "--out", str(out), "--storage", storage_url)
    assert res.returncode == 0, res.stderr
    data = json.loads((out / "search.json").read_text())
    assert [len(s["trial_numbers"]) for s in data["stages"]] == [s["n_trials"] for s in STAGES]
    best = data["best"]["trial_number"]
    names = {p.name for p in out.iterdir()}
    assert names == {
        "search.png",
        "search.html",
        "search.json",
        "summary.md",
        f"best-trial-{best}-curves.png",
        f"best-trial-{best}-curves.csv",
    }
    assert sorted(res.stdout.split()) == sorted(str(out / n) for n in names)
    for png in ("search.png", f"best-trial-{best}-curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "search.html").read_text()
    # Self-contained: plotly.js inlined (works offline), no script fetched from the network.
    assert len(html) > 1_000_000 and "<script src=" not in html
    assert f"λ search of {STUDY}: validation accuracy vs log10 λ" in html
    assert f"training curves of the best trial ({best})" in html
    summary = (out / "summary.md").read_text()
    assert f"(trial {best}, stage" in summary and "![search figure](search.png)" in summary
    assert f"kmlp export --study {STUDY} --storage {storage_url}" in summary
    assert "- `search.html`" in summary


def test_report_without_artifacts_still_has_the_search(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    out = tmp_path / "r"
    empty = tmp_path / "no-artifacts-here"
    args = ("--out", str(out), "--storage", storage_url, "--artifacts", str(empty))
    res = run_cli("report", "--study", STUDY, *args)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {
        "search.png",
        "search.html",
        "search.json",
        "summary.md",
    }
    assert not empty.exists()  # a reader creates no artifact folder


def test_unknown_study_is_one_line_exit_2(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    res = run_cli(
        "report", "--study", "nope", "--out", str(tmp_path / "r"), "--storage", storage_url
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"kmlp: error: no study named 'nope' in {storage_url} (studies: {STUDY})"
    ]
    assert not (tmp_path / "r").exists()


def test_unreachable_storage_for_report_is_one_line_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    res = run_cli("report", "--study", STUDY, "--out", str(tmp_path / "r"), "--storage", url)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmlp: error: no study storage at ")
