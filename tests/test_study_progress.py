"""Progress lines: durations, the estimate of the time left, the end-of-stage wait."""

from __future__ import annotations

import io

import pytest

from kmlp.study.progress import Clock, format_duration, waiting


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 s"), (42.4, "42 s"), (59.6, "1 min 00 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# (trials done at the start, done now, planned, seconds elapsed, expected ETA in seconds)
ETA_CASES = [
    ("nothing finished since the start", 4, 4, 10, 30.0, None),
    ("rate of this run only", 4, 6, 10, 30.0, 60.0),  # 2 trials in 30 s, 4 left
    ("all done", 0, 10, 10, 50.0, 0.0),
    ("unknown plan", 0, 3, None, 5.0, None),
]


@pytest.mark.parametrize(
    "name, start, done, total, elapsed, expected", ETA_CASES, ids=[c[0] for c in ETA_CASES]
)
def test_eta_from_the_rate_since_the_start(
    name, start, done, total, elapsed, expected, monkeypatch
):
    clock = Clock(started=1000.0, done_at_start=start)
    monkeypatch.setattr("kmlp.study.progress.time.time", lambda: 1000.0 + elapsed)
    eta = clock.eta(done=done, total=total)
    assert eta == (pytest.approx(expected) if expected is not None else None)


def test_the_end_of_stage_wait_reads_as_normal() -> None:
    out = io.StringIO()
    waiting(1, 2, out=out, prefix="[w0] ")
    waiting(0, 1, out=out, prefix="")
    assert out.getvalue().splitlines() == [
        "[w0] waiting for 2 running trials of stage 1 to finish",
        "waiting for 1 running trial of stage 0 to finish",
    ]
