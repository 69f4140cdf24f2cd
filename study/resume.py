"""Continuing a study: does the stored configuration match the given one, is it finished?

``kmlp launch`` with an existing study name continues it. The configuration it was
created with (``config``, ``search``, ``data``) must match what is given, except for
what may differ harmlessly (:data:`IGNORED_ON_RESUME`). Both checks that need no data
run before the data is loaded, so that a finished study or a wrong flag is reported at
once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from kmlp.study.config import SearchConfig
from kmlp.study.errors import StudyError

# Keys that may differ on resume: the stored lambda is a placeholder; the data may be
# read from another folder; n_train / n_val are compared through train_size / val_size.
IGNORED_ON_RESUME = ("config.lam", "data.source", "data.n_train", "data.n_val")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and tuples compare as lists."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def differences(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Descriptions "key: stored X, given Y" of the keys on which two records differ."""
    a, b = flatten(stored), flatten(given)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in IGNORED_ON_RESUME:
            continue
        if _normal(a.get(key)) != _normal(b.get(key)):
            out.append(f"{key}: stored {a.get(key)!r}, given {b.get(key)!r}")
    return out


def check_same(study_name: str, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """StudyError naming the differences if ``given`` does not match the stored records."""
    stored = {k: stored.get(k) for k in given}
    if isinstance(stored.get("search"), Mapping):  # stored before a field existed: default
        try:
            stored["search"] = SearchConfig.from_dict(dict(stored["search"])).to_dict()
        except (StudyError, TypeError, ValueError):
            pass
    diffs = differences(stored, given)
    if diffs:
        raise StudyError(
            f"study {study_name!r} exists with a different configuration "
            f"({'; '.join(diffs)}); rerun with the stored settings to continue it, "
            f"or choose another --study name"
        )


def existing(
    rdb: optuna.storages.RDBStorage, study_name: str, given: Mapping[str, Any]
) -> optuna.Study | None:
    """The kmlp study ``study_name`` if it exists, after checking ``given`` against it.

    ``given`` holds the records known before the data is loaded (``config``, ``search``);
    None if there is no such study yet (or it was not made by kmlp: launch says why).
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
    except KeyError:
        return None
    if "search" not in study.user_attrs:
        return None
    check_same(study_name, study.user_attrs, given)
    return study


def same_data_options(stored: Mapping[str, Any], options: Mapping[str, Any]) -> bool:
    """True if ``--n-train`` / ``--n-val`` are as the study was launched with."""
    return all(stored.get(k) == options.get(k) for k in ("n_train", "n_val"))


def _normal(value: Any) -> Any:
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
