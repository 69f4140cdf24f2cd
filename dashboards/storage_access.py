"""Open a study storage for reading (dashboard, report) through the storage package.

``storage.open_storage`` gives the busy timeout shared with the workers; on top of it, a
reader refuses a SQLite file that does not exist (rather than creating an empty database
where a path was mistyped) and checks that the database answers before serving.
"""

from __future__ import annotations

import optuna
import sqlalchemy.exc

from kmlp.dashboards.errors import DashboardError
from kmlp.storage import display_url, open_storage, resolve_url, sqlite_path, study_names
from kmlp.storage.urls import redact


def open_existing_storage(storage_url: str | None) -> tuple[str, optuna.storages.RDBStorage]:
    """Resolve the URL (flag, ``$KMLP_STORAGE``, default) and open it; returns (url, storage).

    Raises:
        DashboardError: a SQLite file that does not exist, or a database that does not answer.
        storage.StorageError: malformed URL, missing driver, unreachable server.
    """
    url = resolve_url(storage_url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise DashboardError(f"no study storage at {display_url(url)} ({path} does not exist)")
    storage = open_storage(url, create=False)
    check_reachable(storage, url)
    return url, storage


def check_reachable(storage: optuna.storages.BaseStorage, storage_url: str) -> None:
    """Run one query; a failure becomes one DashboardError line naming the URL (no password)."""
    try:
        storage.get_all_studies()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DashboardError(
            f"cannot read studies from {display_url(storage_url)}: "
            f"{redact(reason[0], url=storage_url) if reason else type(exc).__name__}"
        ) from None


def load_study_named(
    study_name: str, storage: optuna.storages.BaseStorage, storage_url: str
) -> optuna.Study:
    """Load a study by name; an unknown name is one DashboardError line listing known names."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = study_names(storage)
        known = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "none"
        raise DashboardError(
            f"no study named {study_name!r} in {display_url(storage_url)} (studies: {known})"
        ) from None
