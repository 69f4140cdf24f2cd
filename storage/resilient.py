"""The storage kmlp opens: an Optuna storage whose every call rides out outages.

``ResilientStorage`` is an Optuna storage (``BaseStorage`` and, when the storage under it
has one, Optuna's heartbeat) that delegates each call to the real storage (Optuna's
cached RDB storage, or its gRPC proxy client) through a ``storage.retry.Retrier``: calls
are retried while the error is an outage, for up to 180 s by default
(``$KMLP_STORAGE_RETRY``), the outage announced once on stderr; giving up is one
``StorageError`` line naming the database (password masked). Other database errors become
a one-line ``StorageError`` with the driver's own message (Optuna's
``StorageInternalError`` would blame "invalid data ... e.g. exceeding max length"); Optuna's
own signals (``KeyError``, ``UpdateFinishedTrialError``, ``DuplicatedStudyError``,
``ValueError``) pass through unchanged. It also hides kmlp's internal studies (the lock's
tickets) from ``get_all_studies`` and refuses writes when opened read-only.

What is guaranteed when a connection dies around a commit (the write may or may not have
landed, and the client cannot tell):

- Idempotent writes (attributes, parameters, intermediate values, heartbeats) are simply
  repeated: the second write leaves the same row.
- ``create_new_trial`` tags the new trial with a fresh token (a system attribute). After a
  failed attempt it first looks for the token: found, that trial is the result; not found,
  it creates again. Optuna's engine also retries a failed creation by itself (up to five
  times); when the engine saw a connection error during the call, the trials carrying the
  token are listed afterwards and all but the one returned are failed at once. So each
  call leaves exactly one live trial.
- ``set_trial_state_values`` that finishes a trial: if a retry finds the trial already
  finished with the same state and values, the first attempt landed and the call returns
  True; finished otherwise (e.g. failed by a stale-trial reaper), the
  ``UpdateFinishedTrialError`` is raised as Optuna would. Taking a WAITING trial
  (state RUNNING): a retry that finds it RUNNING counts it as taken by this call; under
  kmlp's budget lock only the holder takes queued trials.
- ``delete_study``: a retry that finds the study gone counts as done.
- The remaining window: a commit still travelling to the server when the client looks
  again (the client reconnects and looks after at least 0.2 s; PostgreSQL connections
  drop unacknowledged data after ``tcp_user_timeout``, 10 s) can land after the look and
  leave an orphan trial carrying the token, RUNNING or WAITING and without heartbeat;
  the stale-trial reaper fails it.

Writes made under a storage lock are fenced: before a write is retried, the thread's
fence (``fenced(check)``, installed by ``storage_lock``) runs, so a holder that lost its
lock during the outage raises ``LockLost`` instead of writing late.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Callable, Container, Sequence
from typing import Any, TextIO

import optuna
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat  # Optuna's heartbeat interface (see below)
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy  # get_all_studies' return type, not exported
from optuna.trial import FrozenTrial, TrialState

from kmlp.storage.errors import StorageError
from kmlp.storage.heartbeat import HeartbeatSettings
from kmlp.storage.locks import is_internal_study, lock_study_name
from kmlp.storage.retry import Retrier, RetrySettings
from kmlp.storage.urls import display_url

# System attribute carrying the token of the create_new_trial call that made a trial.
TOKEN_KEY = "kmlp:create_token"


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage that retries the storage under it through outages.

    Attributes:
        url: the storage URL it was opened with (``display_url`` it before printing).
        rdb: the ``optuna.storages.RDBStorage`` underneath, or None (gRPC proxy client).
        read_only: writes raise StorageError.
        heartbeat: the HeartbeatSettings it was opened with (None: the defaults apply);
            kmlp's stale-trial reaper (``study.reaper``) reads them.
    """

    def __init__(
        self,
        inner: BaseStorage,
        *,
        url: str,
        rdb: optuna.storages.RDBStorage | None = None,
        settings: RetrySettings | None = None,
        read_only: bool = False,
        keep_tokens: bool = False,
        heartbeat: HeartbeatSettings | None = None,
        err: TextIO | None = None,
    ) -> None:
        self._inner = inner
        self.heartbeat = heartbeat  # the trial liveness settings it was opened with
        self.url = url
        self.rdb = rdb
        self.read_only = read_only
        self._keep_tokens = keep_tokens  # a proxy server keeps its clients' tokens
        self._retry = Retrier(display_url(url), settings, err=err, url=url)
        self._run = self._retry.run
        self._engine_errors = 0  # DB errors the engine saw, Optuna's hidden retries included
        if rdb is not None:
            sqlalchemy.event.listen(rdb.engine, "handle_error", self._count_engine_error)

    def _count_engine_error(self, context: Any) -> None:
        self._engine_errors += 1

    # --- kmlp's additions ---------------------------------------------------------

    @property
    def engine(self) -> sqlalchemy.Engine | None:
        """The SQLAlchemy engine of the database (None through a gRPC proxy)."""
        return self.rdb.engine if self.rdb is not None else None

    @property
    def failures(self) -> int:
        """Failed attempts seen by this process on this storage (grows during outages)."""
        return self._retry.failures

    def seconds_since_failure(self) -> float:
        """Seconds since this process last failed to reach the storage (inf: never)."""
        return self._retry.seconds_since_failure()

    def fenced(self, check: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
        """Run ``check`` (it raises to refuse) before this thread retries a write."""
        return self._retry.fenced(check)

    def running_trials(self, study_id: int) -> list[FrozenTrial]:
        """RUNNING trials of a study, read fresh (the lock's tickets; no cache growth)."""
        source = self.rdb if self.rdb is not None else self._inner
        return self._run(
            "read trials",
            lambda: source.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)),
        )

    def close(self) -> None:
        """Release connections (engine pool or gRPC channel)."""
        if self.rdb is not None:
            self.rdb.engine.dispose()
        elif hasattr(self._inner, "close"):
            self._inner.close()

    def _write(self, what: str) -> None:
        if self.read_only:
            raise StorageError(f"{self._retry.label} is open read-only: cannot {what}")

    # --- studies ------------------------------------------------------------------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        # A retry after a creation that landed raises DuplicatedStudyError: the study
        # exists, as create_study(load_if_exists=True) expects.
        self._write("create a study")
        return self._run(
            "create a study",
            lambda: self._inner.create_new_study(directions, study_name),
            write=True,
        )

    def delete_study(self, study_id: int) -> None:
        """Delete the study, and the tickets of its storage lock if it has any."""
        self._write("delete a study")
        name = self.get_study_name_from_id(study_id)

        def settle(exc: BaseException) -> None:
            if isinstance(exc, KeyError):
                return None  # the earlier attempt deleted it
            raise exc

        for sid in (study_id, self._lock_study_id(name)):
            if sid is not None:
                self._run(
                    "delete a study",
                    lambda sid=sid: self._inner.delete_study(sid),
                    write=True,
                    settle=settle,
                )

    def _lock_study_id(self, name: str) -> int | None:
        if is_internal_study(name):
            return None
        try:
            return self.get_study_id_from_name(lock_study_name(name))
        except KeyError:
            return None

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write("set a study attribute")
        self._run(
            "set a study attribute",
            lambda: self._inner.set_study_user_attr(study_id, key, value),
            write=True,
        )

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._write("set a study attribute")
        self._run(
            "set a study attribute",
            lambda: self._inner.set_study_system_attr(study_id, key, value),
            write=True,
        )

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._run("read a study", lambda: self._inner.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._run("read a study", lambda: self._inner.get_study_name_from_id(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._run("read a study", lambda: self._inner.get_study_directions(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._run("read a study", lambda: self._inner.get_study_user_attrs(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._run("read a study", lambda: self._inner.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        """All studies but kmlp's internal ones (the lock's ticket studies)."""
        studies = self._run("list studies", self._inner.get_all_studies)
        return [s for s in studies if not is_internal_study(s.study_name)]

    # --- trials -------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._write("create a trial")
        template, token = self._with_token(template_trial)
        errors_before = self._engine_errors
        tries = 0

        def attempt() -> int:
            nonlocal tries
            tries += 1
            if tries > 1:  # an earlier attempt may have committed: look before creating
                found = self._trials_with_token(study_id, token)
                if found:
                    return self._keep_one(found, keep=None)
            return self._inner.create_new_trial(study_id, template)

        trial_id = self._run("create a trial", attempt, write=True)
        if self._engine_errors != errors_before:
            # Optuna's engine may have retried inside the call and created more than one.
            self._keep_one(self._trials_with_token(study_id, token), keep=trial_id)
        return trial_id

    def _with_token(self, template: FrozenTrial | None) -> tuple[FrozenTrial, str]:
        if template is None:
            template = optuna.trial.create_trial(state=TrialState.RUNNING)
        else:
            template = copy.deepcopy(template)
        token = template.system_attrs.get(TOKEN_KEY) if self._keep_tokens else None
        token = token or uuid.uuid4().hex
        template.system_attrs = {**template.system_attrs, TOKEN_KEY: token}
        return template, token

    def _trials_with_token(self, study_id: int, token: str) -> list[FrozenTrial]:
        trials = self._run(
            "read trials", lambda: self._inner.get_all_trials(study_id, deepcopy=False)
        )
        return [t for t in trials if t.system_attrs.get(TOKEN_KEY) == token]

    def _keep_one(self, found: list[FrozenTrial], *, keep: int | None) -> int:
        """Fail all of ``found`` but ``keep`` (default: the first); return the kept id."""
        found = sorted(found, key=lambda t: t.number)
        kept = keep if keep is not None else found[0]._trial_id
        for t in found:
            if t._trial_id != kept and not t.state.is_finished():
                with contextlib.suppress(UpdateFinishedTrialError):
                    self.set_trial_state_values(t._trial_id, TrialState.FAIL)
        return kept

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: Any
    ) -> None:
        self._write("set a parameter")
        self._run(
            "set a parameter",
            lambda: self._inner.set_trial_param(
                trial_id, param_name, param_value_internal, distribution
            ),
            write=True,
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._run(
            "read a trial",
            lambda: self._inner.get_trial_id_from_study_id_trial_number(study_id, trial_number),
        )

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self._write("set a trial's state")
        tries = 0

        def attempt() -> bool:
            nonlocal tries
            tries += 1
            updated = self._inner.set_trial_state_values(trial_id, state=state, values=values)
            if not updated and tries > 1 and state == TrialState.RUNNING:
                # Taken from WAITING by the attempt that seemed to fail?
                return self.get_trial(trial_id).state == TrialState.RUNNING
            return updated

        def settle(exc: BaseException) -> bool:
            if isinstance(exc, UpdateFinishedTrialError):
                now = self.get_trial(trial_id)
                if now.state == state and list(now.values or []) == list(values or []):
                    return True  # the earlier attempt landed
            raise exc

        return self._run("set a trial's state", attempt, write=True, settle=settle)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._write("report a value")
        self._run(
            "report a value",
            lambda: self._inner.set_trial_intermediate_value(trial_id, step, intermediate_value),
            write=True,
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write("set a trial attribute")
        self._run(
            "set a trial attribute",
            lambda: self._inner.set_trial_user_attr(trial_id, key, value),
            write=True,
        )

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write("set a trial attribute")
        self._run(
            "set a trial attribute",
            lambda: self._inner.set_trial_system_attr(trial_id, key, value),
            write=True,
        )

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._run("read a trial", lambda: self._inner.get_trial(trial_id))

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._run(
            "read trials",
            lambda: self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states),
        )

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        return self._run("read trials", lambda: self._inner.get_n_trials(study_id, state))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._run("read trials", lambda: self._inner.get_best_trial(study_id))

    def remove_session(self) -> None:
        self._inner.remove_session()

    # --- Optuna's heartbeat (RDB only; kmlp's own liveness works through any storage) ---
    # BaseHeartbeat is not exported by optuna.storages, but Optuna's fail_stale_trials and
    # Study.optimize test for it with isinstance: implementing it is how a wrapper keeps
    # the RDB storage's heartbeat working.

    def _heartbeat(self) -> BaseHeartbeat | None:
        return self._inner if isinstance(self._inner, BaseHeartbeat) else None

    def record_heartbeat(self, trial_id: int) -> None:
        inner = self._heartbeat()
        if inner is None or self.read_only:
            return
        self._run(
            "record a heartbeat", lambda: inner.record_heartbeat(trial_id), write=True, fence=False
        )

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, except just after our own outage.

        For a grace period after this process last failed to reach the storage, nothing is
        stale: an outage everybody shared stopped everybody's heartbeats, and the workers
        need that long to beat again (otherwise every trial running through an outage
        longer than the grace period would be failed when the database returns).
        """
        inner = self._heartbeat()
        interval = self.get_heartbeat_interval()
        if inner is None or interval is None:
            return []
        grace = getattr(self.rdb, "grace_period", None) or 2 * interval
        if self.seconds_since_failure() < grace:
            return []
        return self._run("read heartbeats", lambda: inner._get_stale_trial_ids(study_id))

    def get_heartbeat_interval(self) -> int | None:
        inner = self._heartbeat()
        return inner.get_heartbeat_interval() if inner is not None else None

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        inner = self._heartbeat()
        return inner.get_heartbeat_stale_trial_callback() if inner is not None else None
