"""What a reproduction stores in Optuna: study names, parameters, attributes, metric names.

Each kind of fixed run (the four networks, the init grid, the retrains) is one study,
``<prefix>/<kind>`` (``reproduce/networks``, ``reproduce-quick/init``, ...); each run is
one trial whose parameters say what it is: :data:`PARAMS` (layers, batch_norm, init,
lambda, cycles). Its objective is the test accuracy (fraction 0..1, metric name
:data:`TEST_METRIC`), its intermediate values the validation accuracy at each
checkpoint (step = update steps done). Trial user attributes: :data:`RUN_KEY` (the
canonical JSON of its configuration and data: what makes a finished trial reusable),
``figure`` (the published figure it measures), ``label``, ``config``, ``data``,
``worker``, ``lockstep`` (members trained together), ``test_accuracy``,
``val_accuracy``, ``train_accuracy``, ``seconds``, ``epochs``, ``steps``,
``blas_threads``, and ``diverged_at_step`` for a run whose loss became NaN (told PRUNED).

The gradient check is the study ``<prefix>/gradcheck``: one trial per (layers,
batch_norm), objective the largest relative error (minimised, metric
:data:`GRADCHECK_METRIC`), user attributes ``rows`` (one per parameter: name, shape,
relative_error, max_absolute_error, max_gradient) and ``gradient_norms`` (init ->
the Frobenius norm of dJ/dW_l for l = 1..k on whole images).

The searches are ordinary kmlp studies (``kmlp.study.record``): ``<prefix>/search-published``
and ``<prefix>/search-auto``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from kmlp.study.reproduce import published as pub

TEST_METRIC = "test accuracy"
GRADCHECK_METRIC = "largest relative error"
RUN_KEY = "run_key"
STUDY_ATTR = "reproduce"  # study user attribute: what the study holds, for people
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

INIT_CHOICES = (pub.INIT, *(pub.sigma_label(s) for s in pub.SIGMAS))
PARAMS: dict[str, BaseDistribution] = {
    "layers": IntDistribution(1, 64),
    "batch_norm": CategoricalDistribution((False, True)),
    "init": CategoricalDistribution(INIT_CHOICES),
    "lambda": FloatDistribution(1e-8, 10.0, log=True),
    "cycles": IntDistribution(1, 1000),
}
GRADCHECK_PARAMS: dict[str, BaseDistribution] = {
    "layers": IntDistribution(1, 64),
    "batch_norm": CategoricalDistribution((False, True)),
}


def prepare(
    storage: optuna.storages.BaseStorage, name: str, *, metric: str, minimize: bool, about: str
) -> optuna.Study:
    """Create (or load) a reproduction study, with its direction, metric name and note."""
    direction = "minimize" if minimize else "maximize"
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, load_if_exists=True
    )
    if study.metric_names != [metric]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    if study.user_attrs.get(STUDY_ATTR) != about:
        study.set_user_attr(STUDY_ATTR, about)
    return study


def ask_fixed(
    study: optuna.Study,
    *,
    params: dict[str, Any],
    distributions: dict[str, BaseDistribution],
    user_attrs: dict[str, Any],
) -> optuna.Trial:
    """A new RUNNING trial with these parameters and user attributes (enqueue, then ask).

    Call it under the study's storage lock. A WAITING trial left by a process killed
    between its enqueue and its ask is older than ours and comes first: it is failed and
    ours taken.
    """
    study.enqueue_trial(params, user_attrs=user_attrs)
    with warnings.catch_warnings():
        # ask() warns that heartbeats are meant for optimize(); kmlp beats itself.
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask(distributions)
        while any(trial.user_attrs.get(k) != v for k, v in user_attrs.items()):
            study.tell(trial, state=TrialState.FAIL)
            trial = study.ask(distributions)
    return trial


def fail(study: optuna.Study, trial: optuna.Trial | int, *, attempts: int = 5) -> bool:
    """Tell ``trial`` FAIL (if it is not finished), retrying a few times: on an interrupt
    every process fails its trials at once, and SQLite may answer "database is locked"
    to one of them. False if the storage still refused (the trial's heartbeat, or the
    dead-process check of the next reproduction, fails it then)."""
    for attempt in range(attempts):
        try:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return True
        except Exception:
            time.sleep(0.2 * 2**attempt)
    return False


def load_if_exists(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The study ``name``, or None if the storage has none of that name."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def finished_runs(study: optuna.Study | None) -> dict[str, FrozenTrial]:
    """Run key -> its latest finished trial (COMPLETE, or PRUNED when it diverged)."""
    if study is None:
        return {}
    out: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        key = trial.user_attrs.get(RUN_KEY)
        if isinstance(key, str):
            out[key] = trial
    return out


def run_params(*, layers: int, batch_norm: bool, init: str, lam: float, cycles: int) -> dict:
    """The parameters of a fixed run's trial."""
    return {
        "layers": layers,
        "batch_norm": batch_norm,
        "init": init,
        "lambda": lam,
        "cycles": cycles,
    }


def percent(trial: FrozenTrial | None, attr: str = "test_accuracy") -> float | None:
    """A trial's accuracy attribute in percent, or None (no trial, or it diverged)."""
    if trial is None:
        return None
    value: Any = trial.user_attrs.get(attr)
    return 100.0 * float(value) if isinstance(value, int | float) else None
