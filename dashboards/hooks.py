"""Picklable hooks for worker processes (the study package calls them; the CLI wires them).

- ``on_trial_end(study, trial, result)``: inside the objective, after training; uploads the
  trial's curves (:func:`dashboards.publish.publish_trial_curves`).
- ``on_trial_told(study, trial)``: after every finished trial; refreshes the search figure,
  best-trial curves and note (:func:`dashboards.publish.publish_search`).
- ``on_stage_end(study)``: when a stage completes and at the end of a launch; the same, plus a
  PNG snapshot of the search figure.

Neither raises (see :func:`dashboards.publish.make_hooks`, which wraps a store already open).
The work runs off the worker's critical path, in one background thread per process
(:class:`dashboards.background.BackgroundHooks`: drawings queued, figure refreshes
coalesced, all flushed at a stage end and at process exit; ``Publisher.flush()`` waits).
:class:`Publisher` holds only strings, so its bound methods pickle into worker processes
(spawn or fork) and open the artifact store once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

from kmlp.dashboards.artifacts import artifact_store_for, artifacts_location
from kmlp.dashboards.background import BackgroundHooks

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from kmlp.network import TrainResult


@dataclass(frozen=True)
class Publisher:
    """Picklable hooks: ``publisher.on_trial_end``, ``.on_trial_told`` and ``.on_stage_end``.

    Attributes:
        storage_url: the study storage URL (shown in the note's export command).
        artifacts: the resolved artifact location (absolute folder or ``s3://``), as
            :func:`publisher_for` gives it; the store is opened once per process.
    """

    storage_url: str
    artifacts: str

    def on_trial_end(self, study: optuna.Study, trial: optuna.Trial, result: TrainResult) -> None:
        """Upload the trial's curves (see :func:`make_hooks`)."""
        self._hooks().on_trial_end(study, trial, result)

    def on_trial_told(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Refresh the study's figures and note (see :func:`make_hooks`)."""
        self._hooks().on_trial_told(study, trial)

    def on_stage_end(self, study: optuna.Study) -> None:
        """Refresh the study's figures and note, with a snapshot (see :func:`make_hooks`)."""
        self._hooks().on_stage_end(study)

    def flush(self) -> None:
        """Wait until this process's queued publishing is done."""
        _background(self.storage_url, self.artifacts).flush()

    def hooks(self) -> dict[str, object]:
        """Keyword arguments of ``launch`` / ``run_worker``: the three bound hooks."""
        return {
            "on_trial_end": self.on_trial_end,
            "on_trial_told": self.on_trial_told,
            "on_stage_end": self.on_stage_end,
        }

    def _hooks(self) -> BackgroundHooks:
        return _background(self.storage_url, self.artifacts)


def publisher_for(storage_url: str, artifacts: str | None = None) -> Publisher:
    """A :class:`Publisher` for a storage, artifact location resolved now (flag, env, default).

    Raises:
        DashboardError: the location is unusable (folder not creatable, boto3 missing, ...), so
            that ``kmlp launch`` stops at once instead of warning on every trial.
    """
    location = artifacts_location(storage_url, artifacts)
    _store(storage_url, location)
    return Publisher(storage_url=storage_url, artifacts=location)


@functools.cache
def _background(storage_url: str, location: str) -> BackgroundHooks:
    """This process's publishing thread for a storage and artifact location."""
    return BackgroundHooks(
        _store(storage_url, location),
        storage_url=storage_url,
        refresh_elsewhere=functools.partial(refresh_search, storage_url, location),
    )


def refresh_search(storage_url: str, location: str, study_name: str) -> None:
    """Refresh a study's search figure, best curves and note (no snapshot), from this
    process's own storage connection: what a worker's drawing process runs."""
    from kmlp.dashboards.publish import make_hooks
    from kmlp.study.access import load

    study = load(study_name, storage=_storage(storage_url))
    make_hooks(_store(storage_url, location), storage_url=storage_url).on_trial_told(
        study,
        None,  # type: ignore[arg-type]  (not used by the refresh)
    )


@functools.cache
def _storage(storage_url: str) -> optuna.storages.BaseStorage:
    from kmlp.storage import open_storage

    return open_storage(storage_url, create=False)


@functools.cache
def _store(storage_url: str, location: str) -> ArtifactStore:
    return artifact_store_for(storage_url, location)
