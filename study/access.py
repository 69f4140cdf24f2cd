"""Opening a kmlp study by name, with clear errors."""

from __future__ import annotations

import optuna

from kmlp.storage import StorageError, display_url, open_storage, study_names
from kmlp.storage.failures import storage_failure
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.urls import redact
from kmlp.study.errors import StudyError


def load(
    study_name: str,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    heartbeat: HeartbeatSettings | None = None,
    require_kmlp: bool = True,
) -> optuna.Study:
    """Load ``study_name``; StudyError if it does not exist (or is not a kmlp study)."""
    rdb = storage if isinstance(storage, optuna.storages.BaseStorage) else None
    if rdb is None:
        rdb = open_storage(storage, heartbeat=heartbeat, create=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
    except KeyError:
        names = study_names(rdb)
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study"
        raise StudyError(
            f"no study named {study_name!r} in {display_url(rdb.url)}{known}"
        ) from None
    except Exception as exc:  # a database error after connecting
        lost = storage_failure(exc, rdb.url)
        reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else "", url=rdb.url)
        raise lost or StorageError(
            f"cannot read {display_url(rdb.url)}: {reason or type(exc).__name__}"
        ) from None
    if require_kmlp and "search" not in study.user_attrs:
        raise StudyError(f"study {study_name!r} was not created by kmlp launch")
    return study


def only_study_name(storage: str | optuna.storages.BaseStorage | None) -> str:
    """The name of the one study in ``storage``; StudyError naming them if not exactly one."""
    rdb = storage if isinstance(storage, optuna.storages.BaseStorage) else None
    if rdb is None:
        rdb = open_storage(storage, create=False)
    names = study_names(rdb)
    if len(names) == 1:
        return names[0]
    if not names:
        raise StudyError(f"no study in {display_url(rdb.url)} yet (kmlp launch --study NAME)")
    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
    raise StudyError(
        f"{display_url(rdb.url)} holds {len(names)} studies ({shown}): choose one with --study"
    )
