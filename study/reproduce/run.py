"""``reproduce``: run every experiment of the published report that is not finished yet.

What is finished is read from the storage first (a finished trial with the same run key,
a finished search study, a recorded gradient-check case) and reused; the rest is split
into tasks (a network, a lockstep group of the init grid or of the retrains, a search)
that worker processes take from a queue, longest first. The retrains of the searches'
best λ start once both searches are finished. The gradient check, a few seconds of
float64 work, runs in this process meanwhile. A line per finished run or search trial
says what ran, the overall count, the time elapsed and the time left.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import optuna

from kmlp.network import DEFAULT_BLAS_THREADS, load_cifar10
from kmlp.storage import HeartbeatSettings, open_storage
from kmlp.study.errors import StudyError
from kmlp.study.reproduce import gradients
from kmlp.study.reproduce.plan import (
    GRADCHECK,
    INIT,
    NETWORKS,
    RETRAIN,
    SEARCHES,
    Plan,
    RunSpec,
    lockstep_groups,
    make_plan,
)
from kmlp.study.reproduce.pool import Pool
from kmlp.study.reproduce.progress import Progress, sigterm_interrupts
from kmlp.study.reproduce.record import (
    GRADCHECK_METRIC,
    TEST_METRIC,
    finished_runs,
    load_if_exists,
    prepare,
)
from kmlp.study.reproduce.runs import Hooks
from kmlp.study.reproduce.searches import search_summary
from kmlp.study.reproduce.tasks import RUN_HEARTBEAT, Context, Task, group_label

DEFAULT_PROCESSES = 2

ABOUT = {
    NETWORKS: "the four networks at the published setup (kmlp reproduce)",
    INIT: "sensitivity to initialisation: weights N(0, sigma^2) (kmlp reproduce)",
    RETRAIN: "the searches' best lambda retrained (kmlp reproduce)",
    GRADCHECK: "analytic against numerical gradients, float64 (kmlp reproduce)",
}


@dataclass(frozen=True)
class Outcome:
    """What one reproduction did: its plan, runs (trials) it trained, runs it reused."""

    plan: Plan
    ran: int
    reused: int


def reproduce(
    *,
    storage_url: str,
    quick: bool,
    data_dir: str | None = None,
    hooks: Hooks | None = None,
    processes: int = DEFAULT_PROCESSES,
    blas_threads: int = DEFAULT_BLAS_THREADS,
    search_heartbeat: HeartbeatSettings | None = None,
    out: TextIO | None = None,
) -> Outcome:
    """Run what is not finished of the reproduction (``quick``: on small data) into the
    storage; returns its plan and how many runs it trained and reused.

    KeyboardInterrupt: running trials are failed (rerun next time), finished ones kept.
    StudyError if a task failed (the others are kept).
    """
    out = out or sys.stdout
    plan = make_plan(quick=quick)
    rdb = open_storage(storage_url, heartbeat=RUN_HEARTBEAT)
    for kind, about in ABOUT.items():  # here, before workers race to create them
        prepare(
            rdb,
            plan.study_name(kind),
            metric=GRADCHECK_METRIC if kind == GRADCHECK else TEST_METRIC,
            minimize=kind == GRADCHECK,
            about=about,
        )
    scheduler = _Scheduler(plan, rdb, out, data_dir)
    context = Context(
        storage_url=rdb.url,
        data_dir=data_dir,
        hooks=hooks,
        search_heartbeat=search_heartbeat or HeartbeatSettings.from_env(),
        blas_threads=blas_threads,
    )
    with sigterm_interrupts():
        scheduler.run(context, processes=processes)
    return Outcome(plan=plan, ran=scheduler.progress.done_units, reused=scheduler.reused)


class _Scheduler:
    def __init__(
        self, plan: Plan, rdb: optuna.storages.RDBStorage, out: TextIO, data_dir: str | None
    ) -> None:
        self.plan, self.rdb, self.out, self.data_dir = plan, rdb, out, data_dir
        self.errors: list[str] = []
        self.tasks: dict[str, Task] = {}
        self.pending: set[str] = set()
        self.retrains_planned = False
        self.held: dict[str, str] = {}
        self.running: dict[int, str] = {}  # worker index -> task it runs
        tasks, reused = self._run_tasks([*plan.networks, *plan.init])
        searches = []
        for spec in plan.searches:
            summary = search_summary(rdb, plan.study_name(spec.kind))
            done = summary.trials_done if summary is not None else 0
            reused += done
            if summary is None or not summary.finished:
                searches.append(spec)
                tasks.append(
                    Task(
                        id=spec.kind,
                        label=spec.kind,
                        done_before=done,
                        study=plan.study_name(spec.kind),
                        search=spec,
                    )
                )
        expect: list[Task] = []
        if searches:
            expect = _retrain_guess(plan)
        else:
            retrains, done = self._retrain_tasks()
            tasks += retrains
            reused += done
            self.retrains_planned = True
        self.initial = sorted(tasks, key=lambda t: -t.cost)
        self.reused = reused
        total_units = sum(t.units for t in [*tasks, *expect])
        self.progress = Progress(
            total_units=total_units,
            total_cost=sum(t.cost for t in [*tasks, *expect]),
            out=out,
        )
        mode = "quick (small data, one cycle)" if plan.quick else "full (the published setup)"
        self.progress.say(
            f"kmlp reproduce, {mode}: studies {plan.prefix}/*; "
            f"{total_units} runs to do, {reused} finished earlier and reused"
        )

    # --- planning -------------------------------------------------------------------
    def _run_tasks(self, specs: Iterable[RunSpec]) -> tuple[list[Task], int]:
        """Tasks of the runs not finished yet, and how many are finished."""
        done: dict[str, dict[str, Any]] = {}
        tasks, finished = [], 0
        for group in lockstep_groups(specs):
            kind = group[0].kind
            if kind not in done:
                done[kind] = finished_runs(load_if_exists(self.rdb, self.plan.study_name(kind)))
            todo = tuple(spec for spec in group if spec.key() not in done[kind])
            finished += len(group) - len(todo)
            if todo:
                label = todo[0].label if len(todo) == 1 else group_label(todo)
                tasks.append(
                    Task(
                        id=f"{kind}/{label}",
                        label=f"{kind}: {label}",
                        study=self.plan.study_name(kind),
                        runs=todo,
                    )
                )
        return tasks, finished

    def _search_finished(self, kind: str) -> bool:
        summary = search_summary(self.rdb, self.plan.study_name(kind))
        return summary is not None and summary.finished

    def _retrain_tasks(self) -> tuple[list[Task], int]:
        best: dict[str, float | None] = {}
        for kind in SEARCHES:
            summary = search_summary(self.rdb, self.plan.study_name(kind))
            best[kind] = summary.best.lam if summary is not None and summary.best else None
        return self._run_tasks(self.plan.retrains(best))

    # --- running --------------------------------------------------------------------
    def run(self, context: Context, *, processes: int) -> None:
        cases = self._gradcheck_todo()
        if not self.initial and self.retrains_planned:
            self._gradcheck(cases)
            self.progress.say("nothing left to run")
            return
        later = 0 if self.retrains_planned else len(_retrain_guess(self.plan))
        size = min(processes, max(1, len(self.initial) + later))
        with Pool(processes=size, context=context) as pool:
            for task in self.initial:
                self._submit(pool, task)
            self._gradcheck(cases)
            while self.pending or not self.retrains_planned:
                if not self.pending and not self.retrains_planned:
                    self._plan_retrains(pool)
                    continue
                event = pool.next_event(timeout=1.0)
                if event is None:
                    self._check_workers(pool)
                    continue
                self._handle(pool, event)
        if self.errors:
            raise StudyError(
                f"{len(self.errors)} task(s) failed ({'; '.join(self.errors)}); the finished "
                "runs are kept: rerun to retry the rest"
            )
        self.progress.say(f"all runs finished: {self.progress.status()}")

    def _check_workers(self, pool: Pool) -> None:
        """A worker that died (killed, out of memory) fails the task it was running."""
        for index in pool.dead():
            task_id = self.running.pop(index, None)
            if task_id is not None:
                code = pool.procs[index].exitcode
                self._handle(pool, ("failed", index, task_id, f"its process exited ({code})"))
        if self.pending and len(pool.dead()) == len(pool.procs):
            raise StudyError("every reproduction worker process exited")

    def _submit(self, pool: Pool, task: Task) -> None:
        self.tasks[task.id] = task
        self.pending.add(task.id)
        pool.submit(task)

    def _plan_retrains(self, pool: Pool) -> None:
        self.retrains_planned = True
        failed = [k for k in SEARCHES if not self._search_finished(k)]
        if failed:
            self.errors.append(f"no retrain: search(es) {', '.join(failed)} did not finish")
            return
        for task in self._retrain_tasks()[0]:
            self._submit(pool, task)

    def _handle(self, pool: Pool, event: tuple[Any, ...]) -> None:
        what, task_id = event[0], event[1 if event[0] in ("run", "unit", "line") else 2]
        task = self.tasks[task_id]
        say = self.progress.say
        if what == "start":
            self.running[event[1]] = task_id
            members = (
                f" ({task.units} in lockstep)" if task.search is None and task.units > 1 else ""
            )
            say(f"[{task.label}] started{members}")
        elif what == "run":
            _, _, label, accuracy, seconds, trial, cost = event
            self.progress.add(1, cost)
            result = f"test {100 * accuracy:.2f}%" if accuracy is not None else "diverged"
            say(
                f"[{task.study}] {label}: {result} in {seconds:.1f} s (trial #{trial}) "
                f"| {self.progress.status()}"
            )
        elif what == "unit":
            self.progress.add(1, event[2])
            say(f"[{task.label}] {self.held.pop(task_id, '')} || {self.progress.status()}")
        elif what == "line":
            # A trial's line is followed by its unit of progress: print them as one line.
            self._flush(task_id)
            if " trial #" in event[2]:
                self.held[task_id] = event[2]
            else:
                say(f"[{task.label}] {event[2]}")
        elif what == "done":
            self.running.pop(event[1], None)
            self._flush(task_id)
            self.pending.discard(task_id)
            if task.search is not None:
                say(f"[{task.label}] search finished | {self.progress.status()}")
            if not self.retrains_planned and not any(
                self.tasks[t].search is not None for t in self.pending
            ):
                self._plan_retrains(pool)
        elif what == "failed":
            self.running.pop(event[1], None)
            self._flush(task_id)
            self.pending.discard(task_id)
            self.errors.append(f"{task.label}: {event[3]}")
            say(f"[{task.label}] failed: {event[3]}")

    def _flush(self, task_id: str) -> None:
        if task_id in self.held:
            self.progress.say(f"[{self.tasks[task_id].label}] {self.held.pop(task_id)}")

    def _gradcheck_todo(self) -> list[tuple[int, bool]]:
        study = load_if_exists(self.rdb, self.plan.study_name(GRADCHECK))
        done = gradients.recorded_cases(study, self.plan.gradcheck)
        return [case for case in self.plan.gradcheck.cases() if case not in done]

    def _gradcheck(self, cases: list[tuple[int, bool]]) -> None:
        if not cases:
            return
        spec = self.plan.gradcheck
        data = load_cifar10(
            n_train=spec.norm_samples,
            n_val=1,
            dtype="float64",
            progress=False,
            data_dir=self.data_dir,
        )
        study = optuna.load_study(study_name=self.plan.study_name(GRADCHECK), storage=self.rdb)
        for layers, bn in cases:
            case = gradients.check_case(spec, data, hidden=spec.depths[layers], batch_norm=bn)
            number = gradients.record_case(study, self.rdb, spec, case)
            self.progress.say(
                f"[gradcheck] {layers} layers{' BN' if bn else ''}: largest relative error "
                f"{case.largest_error:.1e} (trial #{number})"
            )


def _retrain_guess(plan: Plan) -> list[Task]:
    """The retrain tasks as they will be if the two searches find different λ (ETA only)."""
    specs = plan.retrains({kind: 10.0 ** -(2 + i) for i, kind in enumerate(SEARCHES)})
    return [
        Task(id=f"guess{i}", label="", study="", runs=group)
        for i, group in enumerate(lockstep_groups(specs))
    ]
