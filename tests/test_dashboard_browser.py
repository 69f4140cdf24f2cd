"""The study's dashboard page renders in a real browser (headless Chromium), figure included.

optuna-dashboard is a React single-page app: only a browser running its JavaScript shows
whether the page draws kmlp's figures. Skipped when Chromium is absent, unless $CI is set
(``.ci/run`` installs Debian's ``chromium``), where a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.studies import STUDY, get_json, shared_study, start_dashboard, stop

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1400,2400",  # tall enough that the figures are in the screenshot
    "--virtual-time-budget=20000",  # ms of page time to let the app fetch and plotly draw
)


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required under CI (apt-get install -y chromium)")
    pytest.skip("Chromium not installed (apt-get install -y chromium); $CI unset")


def run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def study_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(browser path, URL of the study's dashboard page) with ``kmlp dashboard`` running."""
    browser = find_browser()
    storage_url, _ = shared_study(tmp_path_factory)
    proc, base = start_dashboard(storage_url)
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in summaries if s["study_name"] == STUDY)
    yield browser, f"{base}/dashboard/studies/{study_id}"
    stop(proc)


def test_study_page_renders_the_search_figure(study_page: tuple[str, str], tmp_path: Path) -> None:
    browser, url = study_page
    res = run_browser(browser, tmp_path / "profile", "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    # Drawn by plotly in the page: SVG text of both kmlp figures, and the dashboard's own charts.
    assert f"λ search of {STUDY}: validation accuracy vs log10 λ" in dom
    assert "training curves of the best trial" in dom
    assert dom.count('class="main-svg"') >= 4
    assert "stage 0 [-5.00, -1.00], 4/4 trials" in dom  # legend of the search figure
    assert "3/3 trials" in dom
    # the objective is named as kmlp names it (optuna-dashboard's history plot axis), not
    # "Objective 0"; the search figure's own axis says "validation accuracy (%)"
    assert ">validation accuracy<" in dom and "Objective 0" not in dom


def test_study_page_screenshot(study_page: tuple[str, str], tmp_path: Path) -> None:
    browser, url = study_page
    shot = tmp_path / "study-page.png"
    res = run_browser(browser, tmp_path / "profile", f"--screenshot={shot}", url)
    assert res.returncode == 0, res.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1400)
    # A rendered page, not a blank one: many distinct colours (figures, text, app bar).
    flat = (pixels[..., :3] * 255).astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in flat[:: max(1, len(flat) // 200_000)]}
    assert len(colours) > 200, f"screenshot {shot} looks blank"
