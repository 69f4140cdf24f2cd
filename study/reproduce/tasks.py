"""Units of work of a reproduction, and how a worker process carries them out.

A :class:`Task` is a group of fixed runs trained together (one network, or the runs of a
lockstep group) or one search. :func:`execute` runs it in the calling process and posts
what happens to ``events`` (a queue the scheduler reads): ``("run", task, label, test
accuracy or None, seconds, trial number, cost)`` per fixed run, ``("line", task, text)``
per line a search prints, ``("unit", task, cost)`` per finished search trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from kmlp.network import DEFAULT_BLAS_THREADS, Dataset
from kmlp.storage import HeartbeatSettings, open_storage
from kmlp.study.reproduce.plan import RunSpec, SearchSpec
from kmlp.study.reproduce.record import finished_runs, load_if_exists
from kmlp.study.reproduce.runs import Hooks, run_group
from kmlp.study.reproduce.searches import run_search

# Members trained together cost about 1/1.5 of training them one by one (network.lockstep).
LOCKSTEP_SPEEDUP = 1.5
# Fixed runs' trials: a dead process's trial is failed after the grace period, not retried
# (the next reproduction reruns it under a new trial).
RUN_HEARTBEAT = HeartbeatSettings(interval=10, grace_period=30, max_retry=0)

Post = Callable[[tuple[Any, ...]], None]


@dataclass(frozen=True, kw_only=True)
class Task:
    """Fixed runs to train together (``runs``, one study), or one search (``search``)."""

    id: str
    label: str
    study: str
    runs: tuple[RunSpec, ...] = ()
    search: SearchSpec | None = None
    done_before: int = 0  # a search's trials finished before this reproduction

    @property
    def units(self) -> int:
        """Runs (trials) it has to do."""
        if self.search is not None:
            return max(0, self.search.trials() - self.done_before)
        return len(self.runs)

    @property
    def cost(self) -> float:
        """Estimated update steps of one network it costs (for the ETA)."""
        if self.search is not None:
            return float(self.search.steps()) * self.units / max(1, self.search.trials())
        steps = float(sum(spec.steps() for spec in self.runs))
        return steps / LOCKSTEP_SPEEDUP if len(self.runs) > 1 else steps

    def unit_cost(self) -> float:
        return self.cost / max(1, self.units)


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a worker process needs besides its tasks (picklable)."""

    storage_url: str
    data_dir: str | None
    hooks: Hooks | None
    search_heartbeat: HeartbeatSettings
    blas_threads: int = DEFAULT_BLAS_THREADS


@dataclass
class DataCache:
    """Datasets a worker process loaded, by their options (search split, final split)."""

    data_dir: str | None
    loaded: dict[str, Dataset] = field(default_factory=dict)

    def get(self, spec: Any) -> Dataset:
        key = repr(spec.options())
        if key not in self.loaded:
            self.loaded[key] = spec.load(self.data_dir)
        return self.loaded[key]


def execute(task: Task, context: Context, cache: DataCache, post: Post) -> None:
    """Carry out ``task`` here, posting its events; KeyboardInterrupt fails what runs."""
    if task.search is not None:
        _search(task, context, cache, post)
    else:
        _runs(task, context, cache, post)


def _runs(task: Task, context: Context, cache: DataCache, post: Post) -> None:
    rdb = open_storage(context.storage_url, heartbeat=RUN_HEARTBEAT)
    study = optuna.load_study(study_name=task.study, storage=rdb)
    done = finished_runs(load_if_exists(rdb, task.study))
    todo = tuple(spec for spec in task.runs if spec.key() not in done)
    for spec in task.runs:
        if spec.key() in done:  # finished meanwhile by another reproduction
            trial = done[spec.key()]
            post(
                (
                    "run",
                    task.id,
                    spec.label,
                    trial.user_attrs.get("test_accuracy"),
                    0.0,
                    trial.number,
                    task.unit_cost(),
                )
            )
    if not todo:
        return
    outcomes = run_group(
        study=study,
        rdb=rdb,
        specs=todo,
        data=cache.get(todo[0].data),
        hooks=context.hooks,
        heartbeat_interval=RUN_HEARTBEAT.interval,
        blas_threads=context.blas_threads,
    )
    for o in outcomes:
        post(("run", task.id, o.spec.label, o.test_accuracy, o.seconds, o.trial, task.unit_cost()))


class _Lines:
    """A text stream that posts each complete line (what ``launch`` prints)."""

    def __init__(self, post: Post, task_id: str) -> None:
        self._post, self._task, self._buffer = post, task_id, ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._post(("line", self._task, line))
        return len(text)

    def flush(self) -> None:
        pass


class _Told:
    """``on_trial_told`` that publishes (if hooks are set) and posts one unit of progress."""

    def __init__(self, hooks: Hooks | None, post: Post, task: Task) -> None:
        self._hooks, self._post, self._task = hooks, post, task

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self._hooks is not None:
            self._hooks.on_trial_told(study, trial)
        self._post(("unit", self._task.id, self._task.unit_cost()))


def _search(task: Task, context: Context, cache: DataCache, post: Post) -> None:
    assert task.search is not None
    hooks: dict[str, Any] = {"on_trial_told": _Told(context.hooks, post, task)}
    if context.hooks is not None:
        hooks["on_trial_end"] = context.hooks.on_trial_end
        hooks["on_stage_end"] = context.hooks.on_stage_end
    run_search(
        spec=task.search,
        study_name=task.study,
        storage_url=context.storage_url,
        data=cache.get(task.search.data),
        hooks=hooks,
        heartbeat=context.search_heartbeat,
        out=_Lines(post, task.id),  # type: ignore[arg-type]
        blas_threads=context.blas_threads,
    )


def group_label(specs: tuple[RunSpec, ...]) -> str:
    """``3-layer BN, σ = 0.1 / 0.001 / 0.0001``: the members' labels, common part once."""
    heads = {spec.label.split(", ", 1)[0] for spec in specs}
    if len(heads) != 1 or any(", " not in spec.label for spec in specs):
        return " + ".join(spec.label for spec in specs)
    tails = [spec.label.split(", ", 1)[1] for spec in specs]
    name, _, _ = tails[0].partition(" = ")
    if all(t.startswith(f"{name} = ") for t in tails):
        values = " / ".join(t.split(" = ", 1)[1] for t in tails)
        return f"{heads.pop()}, {name} = {values}"
    return f"{heads.pop()}, {' / '.join(tails)}"
