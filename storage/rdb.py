"""Opening an Optuna RDB storage with kmlp's settings (busy timeout, heartbeat, retries)."""

from __future__ import annotations

import warnings

import optuna
import sqlalchemy.exc

from kmlp.storage.errors import StorageError
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.urls import (
    backend,
    display_url,
    engine_kwargs,
    redact,
    resolve_url,
    sqlite_path,
)


def open_storage(
    url: str | None = None, *, heartbeat: HeartbeatSettings | None = None, create: bool = True
) -> optuna.storages.RDBStorage:
    """Connect to the study storage at ``url`` (default: see ``storage.urls.resolve_url``).

    With ``heartbeat`` set, running trials record heartbeats and a stale trial is failed
    and re-queued (``RetryHeartbeatStaleTrialCallback``, up to ``max_retry`` times);
    readers (show, export, dashboards) pass None. With ``create=False`` a missing SQLite
    file is an error instead of a new empty database (for commands that only read).

    Raises StorageError, one line, if the URL is malformed, its driver is missing, or the
    database cannot be reached; nothing stored is touched.
    """
    url = resolve_url(url)
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise StorageError(f"cannot open {display_url(url)}: folder {path.parent} does not exist")
    if path is not None and not create and not path.is_file():
        raise StorageError(f"no study storage at {display_url(url)} ({path} does not exist)")
    kwargs: dict = {}
    if heartbeat is not None:
        kwargs = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace_period,
            "heartbeat_stale_trial_callback": _retry_callback(heartbeat.max_retry),
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **kwargs)
    except (sqlalchemy.exc.NoSuchModuleError, ImportError, ModuleNotFoundError) as exc:
        raise StorageError(
            f"cannot open {display_url(url)}: no database driver for "
            f"{backend(url)!r} ({redact(_first_line(exc), url=url)})"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, RuntimeError, OSError) as exc:
        reason = redact(_first_line(exc), url=url)
        raise StorageError(f"cannot open {display_url(url)}: {reason}") from None


def _retry_callback(max_retry: int) -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of all studies in ``storage``, in creation order."""
    return [s.study_name for s in storage.get_all_studies()]


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
