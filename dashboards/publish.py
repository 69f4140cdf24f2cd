"""Put what kmlp computes into the study, where optuna-dashboard shows it.

Per trial (:func:`publish_trial_curves`, called inside the objective after training): the
training curves as an image artifact ``trial-<n>-curves.png`` (three panels, drawn by
``network.plot_curves``) and as a data artifact ``trial-<n>-curves.csv`` (``network.curve_data``
columns; the dashboard shows CSV artifacts as a table). The validation accuracy per checkpoint is
already in the trial's intermediate values (the study package reports it).

Per study (:func:`publish_search`, called after every finished trial, when a stage ends and at
the end of a launch), all drawn from the study's summary (``kmlp.study.summary``): the search
figure as a plotly graph object on the study's page (id ``kmlp-search``), the best trial's curves
likewise (id ``kmlp-best-curves``), and the markdown summary as the study note. When a stage ends
(and at the end of a launch) also a PNG snapshot of the search figure, as a study artifact.

The study package never imports this module; the CLI wires :func:`make_hooks` (or the
picklable :class:`dashboards.hooks.Publisher`) into it.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import optuna
from optuna.artifacts import get_all_artifact_meta, upload_artifact

from kmlp.dashboards.curves import (
    curves_plotly,
    draw_curves_png,
    read_curves_csv,
    write_curves_csv,
)
from kmlp.dashboards.search_plot import search_matplotlib, search_plotly
from kmlp.dashboards.summary import is_kmlp_note, summary_markdown, trial_note_markdown
from kmlp.storage.urls import redact
from kmlp.study.summary import StudySummary, study_summary

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from optuna.artifacts._protocol import ArtifactStore

    from kmlp.network import TrainResult

_log = logging.getLogger(__name__)

OnTrialEnd = Callable[[optuna.Study, optuna.Trial, "TrainResult"], None]
OnTrialTold = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
OnStageEnd = Callable[[optuna.Study], None]

SEARCH_FIGURE_ID = "kmlp-search"
CURVES_FIGURE_ID = "kmlp-best-curves"
_PLOT_PREFIX = "dashboard:plot_data:"  # optuna_dashboard's key layout for saved graph objects


def curves_filenames(trial_number: int) -> tuple[str, str]:
    """Artifact file names of a trial's curves: (PNG image, CSV data)."""
    return f"trial-{trial_number}-curves.png", f"trial-{trial_number}-curves.csv"


def publish_trial_curves(
    trial: optuna.Trial, result: TrainResult, *, artifact_store: ArtifactStore
) -> tuple[str, str]:
    """Upload a running trial's training curves (PNG and CSV); returns their artifact ids.

    Also writes the trial's note: the curves image at full width (the artifact list only shows
    a thumbnail) and the final numbers.
    """
    job = start_trial_curves(trial, result, artifact_store=artifact_store)
    job.finish(draw_curves_png(job.columns, job.title), artifact_store=artifact_store)
    return job.png_id, job.csv_id


class CurvesJob(NamedTuple):
    """A trial's curves uploaded but for the drawing: ``finish(draw_curves_png(...))``."""

    png_id: str
    csv_id: str
    columns: dict[str, list[float]]
    title: str

    def finish(self, png: bytes, *, artifact_store: ArtifactStore) -> None:
        """Write the drawn image over the placeholder (same artifact id)."""
        artifact_store.write(self.png_id, io.BytesIO(png))


def start_trial_curves(
    trial: optuna.Trial, result: TrainResult, *, artifact_store: ArtifactStore
) -> CurvesJob:
    """The part of ``publish_trial_curves`` that needs the trial RUNNING.

    Uploads the CSV, a placeholder PNG (1x1 pixel) under the curves image's name, and the
    note; returns the job whose ``finish`` writes the drawn curves over the placeholder
    (``artifact_store.write`` of the same artifact id), which works after the trial is
    told, so the drawing (about 0.3 s of matplotlib CPU) can wait
    (``dashboards.background``). Optuna attaches artifacts only to running trials.
    """
    from optuna_dashboard import save_note

    from kmlp.network import curve_data

    png_name, csv_name = curves_filenames(trial.number)
    columns = curve_data(result.history)
    with tempfile.TemporaryDirectory(prefix="kmlp-curves-") as tmp:
        png, csv = Path(tmp) / png_name, Path(tmp) / csv_name
        png.write_bytes(PLACEHOLDER_PNG)
        write_curves_csv(columns, csv)
        png_id, csv_id = (
            upload_artifact(artifact_store=artifact_store, file_path=str(p), study_or_trial=trial)
            for p in (png, csv)
        )
    image = f"/artifacts/{trial.study._study_id}/{trial._trial_id}/{png_id}"
    stage = trial.user_attrs.get("stage")
    save_note(trial, trial_note_markdown(result, image_url=image, csv_name=csv_name, stage=stage))
    title = f"trial {trial.number}: λ = {result.config.lam:.4g}"
    return CurvesJob(png_id, csv_id, columns, title)


def _png_1x1() -> bytes:
    """A valid 1x1 grey PNG: the placeholder until the curves are drawn."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\xc0")  # filter byte, one grey pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PLACEHOLDER_PNG = _png_1x1()


def publish_search(
    study: optuna.Study,
    *,
    artifact_store: ArtifactStore | None,
    storage_url: str | None = None,
    snapshot: bool = True,
) -> StudySummary:
    """Update the study's search figure, best-trial curves and note from its summary.

    With ``snapshot`` (stage ends, end of a launch) also upload a PNG of the search figure,
    once per (stage, trials done). Safe to call again (e.g. by several workers at once):
    graph objects are overwritten in place, the best curves only when the best trial
    changed, and a note someone edited by hand is left alone. Returns the summary drawn.
    """
    from optuna_dashboard import get_note, save_note

    summary = study_summary(study)
    save_figure(study, search_plotly(summary), figure_id=SEARCH_FIGURE_ID)
    if artifact_store is not None and summary.best is not None:
        title = best_curves_title(summary.best.number)
        if _stored_title(study, CURVES_FIGURE_ID) != title:
            columns = best_trial_curves(study, summary.best.number, artifact_store=artifact_store)
            if columns:
                save_figure(study, curves_plotly(columns, title=title), figure_id=CURVES_FIGURE_ID)
        if snapshot:
            _upload_snapshot(study, summary, artifact_store)
    body = summary_markdown(summary, storage_url=storage_url or storage_url_of(study))
    if is_kmlp_note(get_note(study)):
        save_note(study, body)
    return summary


def best_curves_title(trial_number: int) -> str:
    """Title of the best trial's curves figure (the dashboard page and the report)."""
    return f"training curves of the best trial ({trial_number})"


class Hooks(NamedTuple):
    """The callbacks the study package accepts (``launch(**hooks._asdict())``)."""

    on_trial_end: OnTrialEnd
    on_trial_told: OnTrialTold
    on_stage_end: OnStageEnd


def make_hooks(artifact_store: ArtifactStore | None, *, storage_url: str | None = None) -> Hooks:
    """The study package's callbacks, publishing into the study for optuna-dashboard.

    - ``on_trial_end``: upload the trial's curves (nothing if ``artifact_store`` is None);
    - ``on_trial_told``: refresh the search figure, best curves and note (no snapshot);
    - ``on_stage_end``: the same, plus a PNG snapshot of the search figure.

    ``storage_url`` goes into the note's export command (default: the study's own URL).
    None of them raises: a failure to publish is logged as one warning line and never
    fails a trial or a worker.
    """

    def on_trial_end(study: optuna.Study, trial: optuna.Trial, result: TrainResult) -> None:
        if artifact_store is None:
            return
        try:
            publish_trial_curves(trial, result, artifact_store=artifact_store)
        except Exception as exc:  # a full disk or flaky S3 must not lose a trained trial
            _log.warning(
                "kmlp: could not upload curves of trial %d: %s", trial.number, redact(str(exc))
            )

    def refresh(study: optuna.Study, *, snapshot: bool) -> None:
        try:
            publish_search(
                study, artifact_store=artifact_store, storage_url=storage_url, snapshot=snapshot
            )
        except Exception as exc:
            _log.warning(
                "kmlp: could not update the search figure of %s: %s",
                study.study_name,
                redact(str(exc), url=storage_url),
            )

    def on_trial_told(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        refresh(study, snapshot=False)

    def on_stage_end(study: optuna.Study) -> None:
        refresh(study, snapshot=True)

    return Hooks(on_trial_end, on_trial_told, on_stage_end)


def save_figure(study: optuna.Study, figure: go.Figure, *, figure_id: str) -> None:
    """Store a plotly figure on the study's dashboard page, replacing the one with that id.

    Stored in chunks (optuna_dashboard.save_plotly_graph_object); two processes writing at once
    could interleave chunks, so the stored text is read back and written again if it differs.
    """
    from optuna_dashboard import save_plotly_graph_object

    text = figure.to_json()
    for _ in range(3):
        save_plotly_graph_object(study, figure, graph_object_id=figure_id)
        if stored_figure_json(study, figure_id) == text:
            return
    _log.warning("kmlp: figure %s of %s changed while saving", figure_id, study.study_name)


def stored_figure_json(study: optuna.Study, figure_id: str) -> str | None:
    """The JSON text of a saved graph object, or None (reads study system attrs)."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    prefix = f"{_PLOT_PREFIX}{figure_id}:"
    chunks = {k[len(prefix) :]: v for k, v in attrs.items() if k.startswith(prefix)}
    if not chunks:
        return None
    return "".join(chunks[str(i)] for i in range(len(chunks)) if str(i) in chunks)


def best_trial_curves(
    study: optuna.Study, trial_number: int, *, artifact_store: ArtifactStore
) -> dict[str, list[float]] | None:
    """Curve columns of a trial read back from its CSV artifact, or None if it has none."""
    raw = read_trial_artifact(
        study, trial_number, curves_filenames(trial_number)[1], artifact_store=artifact_store
    )
    return read_curves_csv(raw) if raw is not None else None


def read_trial_artifact(
    study: optuna.Study, trial_number: int, filename: str, *, artifact_store: ArtifactStore
) -> bytes | None:
    """Bytes of the trial's artifact called ``filename`` (latest upload), or None."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == trial_number), None)
    if trial is None:
        return None
    metas = [
        m for m in get_all_artifact_meta(trial, storage=study._storage) if m.filename == filename
    ]
    if not metas:
        return None
    try:
        with artifact_store.open_reader(metas[-1].artifact_id) as fh:
            return fh.read()
    except Exception as exc:  # missing file in the store: show what is there
        _log.warning(
            "kmlp: artifact %s of trial %d unreadable: %s", filename, trial_number, redact(str(exc))
        )
        return None


def storage_url_of(study: optuna.Study) -> str | None:
    """The SQLAlchemy URL of a study's RDB storage, or None for other storages."""
    storage: Any = study._storage
    backend = getattr(storage, "_backend", storage)
    url = getattr(backend, "url", None)
    return url if isinstance(url, str) else None


def _stored_title(study: optuna.Study, figure_id: str) -> str | None:
    text = stored_figure_json(study, figure_id)
    if text is None:
        return None
    try:
        return json.loads(text)["layout"]["title"]["text"]
    except (ValueError, KeyError, TypeError):
        return None


def _upload_snapshot(
    study: optuna.Study, summary: StudySummary, artifact_store: ArtifactStore
) -> str:
    """Upload the search figure PNG once per (last stage, trials done); its artifact id."""
    last_stage = max((s.stage for s in summary.stages if s.done), default=0)
    name = f"search-stage{last_stage}-{summary.trials_done}trials.png"
    existing = study._storage.get_study_system_attrs(study._study_id)
    for key, value in existing.items():
        meta = json.loads(value) if key.startswith("artifacts:") else None
        if isinstance(meta, dict) and meta.get("filename") == name:
            return str(meta["artifact_id"])
    with tempfile.TemporaryDirectory(prefix="kmlp-search-") as tmp:
        png = search_matplotlib(summary, Path(tmp) / name)
        return upload_artifact(
            artifact_store=artifact_store, file_path=str(png), study_or_trial=study
        )
