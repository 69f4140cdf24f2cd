"""Where kmlp keeps artifacts (curve images and data, search figures) for a study storage.

Every command that writes or shows artifacts (``kmlp launch``, ``kmlp worker``, ``kmlp dashboard``,
``kmlp report``) resolves the store with :func:`artifact_store_for`, so that workers and the
dashboard always meet at the same place:

* ``--artifacts`` / ``$KMLP_ARTIFACTS`` when given: a folder, ``file:///path``, or
  ``s3://bucket[/prefix]`` (an S3-compatible store through boto3; point boto3 at a non-AWS server
  with the standard ``AWS_ENDPOINT_URL`` variable);
* otherwise, for SQLite, a folder beside the database file: ``sqlite:///runs/kmlp.db`` ->
  ``runs/kmlp-artifacts/``;
* otherwise (PostgreSQL, in-memory SQLite, ...) ``./kmlp-artifacts``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from optuna.artifacts import FileSystemArtifactStore

from kmlp.dashboards.errors import DashboardError
from kmlp.storage import sqlite_path

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

ARTIFACTS_ENV = "KMLP_ARTIFACTS"
DEFAULT_ARTIFACTS_DIR = "kmlp-artifacts"


class PrefixedArtifactStore:
    """Artifact store middleware that keeps every artifact under ``prefix`` of another store.

    Optuna's Boto3ArtifactStore writes to the bucket root; this lets several projects share one
    bucket (``s3://bucket/kmlp/runs`` -> keys ``kmlp/runs/<artifact id>``).
    """

    def __init__(self, store: ArtifactStore, *, prefix: str) -> None:
        self._store = store
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._prefix + artifact_id)


def default_artifacts_location(storage_url: str) -> Path:
    """The folder used when no ``--artifacts`` / ``$KMLP_ARTIFACTS`` is given (absolute path).

    A file-backed SQLite URL gives ``<folder of the db>/<db stem>-artifacts``; anything else gives
    ``./kmlp-artifacts`` in the working folder.
    """
    db_path = sqlite_path(storage_url)
    if db_path is None:
        return Path(DEFAULT_ARTIFACTS_DIR).resolve()
    return db_path.with_name(f"{db_path.stem}-artifacts")


def artifacts_location(storage_url: str, artifacts: str | None = None) -> str:
    """The artifact location as text (folder path or s3 URL), after flag / env / default rules."""
    chosen = artifacts if artifacts else os.environ.get(ARTIFACTS_ENV) or None
    if chosen is None:
        return str(default_artifacts_location(storage_url))
    if chosen.startswith("file://"):
        return str(Path(urlsplit(chosen).path).resolve())
    if "://" in chosen:
        return chosen
    return str(Path(chosen).expanduser().resolve())


def artifact_store_for(storage_url: str, artifacts: str | None = None) -> ArtifactStore:
    """Open the artifact store that goes with a study storage.

    Args:
        storage_url: the study's SQLAlchemy storage URL (only used for the default location).
        artifacts: ``--artifacts`` value (folder, ``file://`` or ``s3://bucket[/prefix]``);
            None falls back to ``$KMLP_ARTIFACTS``, then to the default beside the database.

    Returns:
        An Optuna artifact store (``open_reader`` / ``write`` / ``remove``). Folders are created.

    Raises:
        DashboardError: unknown URL scheme, folder not creatable, or boto3 missing for s3://.
    """
    location = artifacts_location(storage_url, artifacts)
    if location.startswith("s3://"):
        return _s3_store(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise DashboardError(
            f"unsupported artifact location {location!r} (scheme {scheme!r}); "
            "give a folder or s3://bucket/prefix"
        )
    folder = Path(location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DashboardError(f"cannot create artifact folder {folder}: {exc.strerror}") from exc
    if not folder.is_dir():
        raise DashboardError(f"artifact location {folder} is not a folder")
    return FileSystemArtifactStore(base_path=folder)


def _s3_store(location: str) -> ArtifactStore:
    parts = urlsplit(location)
    if not parts.netloc:
        raise DashboardError(f"artifact URL {location!r} has no bucket; use s3://bucket/prefix")
    try:
        import boto3  # noqa: F401  (optional dependency, only for s3://)
    except ImportError as exc:
        raise DashboardError(
            f"artifact location {location} needs boto3, which is not installed (pip install boto3)"
        ) from exc
    from optuna.artifacts import Boto3ArtifactStore

    store = Boto3ArtifactStore(parts.netloc)
    return PrefixedArtifactStore(store, prefix=parts.path) if parts.path.strip("/") else store


def existing_artifact_store(storage_url: str, artifacts: str | None = None) -> ArtifactStore | None:
    """Like :func:`artifact_store_for` for readers: None when the folder does not exist."""
    location = artifacts_location(storage_url, artifacts)
    if "://" not in location and not Path(location).is_dir():
        return None
    return artifact_store_for(storage_url, location)
