"""``kmlp report``: one shareable HTML page, markdown, data and figures; bad input.

The last test launches a real small study on CIFAR-10 with ``kmlp launch`` and checks that
the study note, ``kmlp show`` and the report all say how each range was chosen, and show the
retrained test accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from tests.helpers.studies import DATA, DEMO_SEARCH, STUDY, kmlp, launch_real, shared_study


def test_report_writes_page_summary_figures_and_curves(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    out = tmp_path / "report"
    res = kmlp("report", "--study", STUDY, "--out", str(out), "--storage", storage_url)
    assert res.returncode == 0, res.stderr
    data = json.loads((out / "summary.json").read_text())
    assert [s["budget"] for s in data["stages"]] == list(DEMO_SEARCH.trials)
    assert [len(s["trials"]) for s in data["stages"]] == list(DEMO_SEARCH.trials)
    best = data["best"]["trial"]
    names = {p.name for p in out.iterdir()}
    assert names == {
        "report.html",
        "search.png",
        "summary.json",
        "summary.md",
        f"best-trial-{best}-curves.png",
        f"best-trial-{best}-curves.csv",
    }
    assert sorted(res.stdout.split()) == sorted(str(out / n) for n in names)
    for png in ("search.png", f"best-trial-{best}-curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    # Self-contained: plotly.js inlined (works offline), no script fetched from the network.
    assert len(html) > 1_000_000 and "<script src=" not in html
    assert f"<title>kmlp λ search: {STUDY}</title>" in html
    assert f"search of {STUDY}: validation accuracy vs log10" in html  # the figure's title
    assert f"training curves of the best trial ({best})" in html
    assert "<h2>Stages</h2>" in html and "how the range was chosen" in html
    for stage in data["stages"]:
        assert stage["how"].replace("'", "&#x27;") in html
    assert "Not retrained yet" in html
    summary = (out / "summary.md").read_text()
    assert f"(trial {best}, stage" in summary and "![search figure](search.png)" in summary
    assert f"kmlp export --study {STUDY} --storage {storage_url}" in summary
    assert "- `report.html`" in summary
    assert "Best so far" not in summary and "edits to this note" not in summary


def test_report_without_artifacts_still_has_the_search(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    out = tmp_path / "r"
    empty = tmp_path / "no-artifacts-here"
    args = ("--out", str(out), "--storage", storage_url, "--artifacts", str(empty))
    res = kmlp("report", *args)  # the storage's only study: no --study needed
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {
        "report.html",
        "search.png",
        "summary.json",
        "summary.md",
    }
    assert not empty.exists()  # a reader creates no artifact folder


def test_unknown_study_is_one_line_exit_2(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    storage_url, _ = shared_study(tmp_path_factory)
    res = kmlp("report", "--study", "nope", "--out", str(tmp_path / "r"), "--storage", storage_url)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"kmlp: error: no study named 'nope' in {storage_url} (studies: {STUDY})"
    ]
    assert not (tmp_path / "r").exists()


def test_unreachable_storage_for_report_is_one_line_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    res = kmlp("report", "--study", STUDY, "--out", str(tmp_path / "r"), "--storage", url)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmlp: error: no study storage at ")


@pytest.mark.skipif(not DATA, reason="set KMLP_DATA to the CIFAR-10 folder")
def test_a_real_study_says_how_each_range_was_chosen(tmp_path: Path) -> None:
    """launch, export, retrain and report as a user runs them, on the real CIFAR-10."""
    from optuna_dashboard import get_note

    url, launched = launch_real(tmp_path, "real")
    study = optuna.load_study(study_name="real", storage=url)
    records = study.user_attrs["stages"]
    assert [r["derived_from"] for r in records] == ["coarse", "top-k"]
    coarse = "stage 0: the search's coarse range, [-5, -1] as configured"
    top = ", ".join(f"#{n}" for n in records[1]["top_k_trials"])
    lo, hi = records[1]["top_k_span"]
    if records[1]["capped"]:
        refined = f"stage 1: the best 2 completed trials so far ({top}) spread over log10 λ"
    else:
        refined = (
            f"stage 1: the span of the best 2 completed trials so far ({top}), "
            f"log10 λ {lo:.3f} to {hi:.3f}, widened by 0.1 x stage 0's width (0.400) on each side"
        )
    assert coarse in launched.stdout and refined in launched.stdout
    note = get_note(study)
    assert f"- {coarse}" in note and f"- {refined}" in note

    best = tmp_path / "best.json"
    assert kmlp("export", "--storage", url, "--study", "real", "-o", str(best)).returncode == 0
    retrained = kmlp("retrain", str(best), "--n-train", "2000", "--json", "--data", DATA)
    assert retrained.returncode == 0, retrained.stderr
    test_accuracy = json.loads(retrained.stdout)["test_accuracy"]

    note = get_note(optuna.load_study(study_name="real", storage=url))  # refreshed by retrain
    out = tmp_path / "report"
    assert kmlp("report", "--storage", url, "--out", str(out)).returncode == 0
    summary_md = (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    escape = {"note": str, "md": str, "html": lambda text: text.replace("'", "&#x27;")}
    for kind, text in (("note", note), ("md", summary_md), ("html", html)):
        for how in (coarse, refined):
            assert escape[kind](how.split(": ", 1)[1]) in text, kind
        assert f"test accuracy {100 * test_accuracy:.2f} %" in text, kind
        assert "on 2000 training images" in text, kind
    shown = kmlp("show", "--storage", url)
    assert shown.returncode == 0, shown.stderr
    assert f"  {coarse}" in shown.stdout and f"  {refined}" in shown.stdout
    assert f"test accuracy {100 * test_accuracy:.2f}%" in shown.stdout
