"""Which pruner keeps a stage's best λ for less work: the stage median or successive halving.

For each seed, a coarse-to-fine search as the study runs it (3 stages of 20 λ drawn with
the study's own draws, ``study.claims.draw``; the coarse range -5..-1, then the ranges
``study.narrow`` derives from the top 5 completed trials), every λ of a stage is trained
to its end once, together, with ``kmlp.network.train_lockstep`` (3-layer BN [50, 50],
float32, batch 100, eta 1e-5..1e-1, n_s = 5 epochs, 2 cycles, 10 checkpoints per cycle,
He init, training seed = the study seed). The validation accuracy at every checkpoint is
recorded, so the pruners can be replayed offline on the same curves:

- **median**: today's ``StageMedianPruner`` (``study.pruning.median_rule``, 5 startup
  trials, one cycle of warm-up): at each decision point (cycle ends after the warm-up,
  the last checkpoint excluded) a trial stops when its accuracy is below the median of
  the accuracies the stage's already finished trials had there. "median, 1 worker":
  trial i's peers are trials 0..i-1; "median, lockstep K": the members of a lockstep
  group reach the decision point together, so the peers are the earlier groups' trials.
- **halving K**: ``study.pruning.halving_rule`` across each lockstep group of K trials
  (consecutive draws): at each decision point the worse half of the members still
  training stops. K = 20 is the whole stage in one group.

For each rule: work (trial-epochs, and as a fraction of training every λ to the end),
and the stage's best λ among the trials it let complete against the unpruned stage's
best (same trial; else the difference in final validation accuracy; "within noise" =
at most 0.5 points lower, the seed-to-seed spread of a validation accuracy on 5000
images). Also whether the next stage's range (``study.narrow`` over the completed
trials) is the same. Later stages are derived from the unpruned stages (every rule is
replayed on the same λs).

Training results are cached per (settings, seed, stage) in ``--cache`` (JSON), so a
rerun, or a run with more seeds, only trains what is missing; ``--replay-only`` never
trains.

    python benchmarks/pruning.py [--n-train 10000] [--seeds 0 1 2] [--trials 20]
        [--stages 3] [--cycles 2] [--groups 4 8 20] [--threads 1] [--data DIR]
        [--cache benchmarks/results/pruning-cache.json]
        [--out benchmarks/results/pruning.json] [--figure benchmarks/results/pruning.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kmlp.network import KmlpNetworkError, TrainConfig, load_cifar10, train_lockstep
from kmlp.study import narrow
from kmlp.study.claims import draw
from kmlp.study.narrowing import Scored
from kmlp.study.pruning import halving_rule, is_decision_step, median_rule

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COARSE = (-5.0, -1.0)
TOP_K, MARGIN = 5, 0.1  # SearchConfig defaults
N_STARTUP, WARMUP_CYCLES = 5, 1.0  # SearchConfig defaults of the median pruner
NOISE = 0.005  # 0.5 points of validation accuracy


def train_config(*, lam: float, seed: int, cycles: int) -> TrainConfig:
    return TrainConfig(hidden=(50, 50), batch_norm=True, lam=lam, seed=seed, cycles=cycles)


def train_stage(
    *, data: Any, log10s: Sequence[float], seed: int, cycles: int, threads: int
) -> dict:
    """Train every λ of a stage to its end in one lockstep group; the curves as JSON."""
    configs = [train_config(lam=10.0**x, seed=seed, cycles=cycles) for x in log10s]
    start = time.perf_counter()
    result = train_lockstep(data=data, configs=configs, blas_threads=threads)
    first = result.members[0]
    n_s = first.config.half_cycle(len(data.train.y))
    return {
        "log10_lambda": list(log10s),
        "curves": [[[p.step, p.val_accuracy] for p in m.history] for m in result.members],
        "final": [m.val_accuracy for m in result.members],
        "reason": [m.reason for m in result.members],
        "total_steps": 2 * n_s * cycles,
        "n_s": n_s,
        "steps_per_epoch": math.ceil(len(data.train.y) / first.config.batch_size),
        "seconds": time.perf_counter() - start,
        "seconds_per_member_epoch": result.seconds_per_member_epoch,
        "load": os.getloadavg()[0],
    }


# ---------------------------------------------------------------- replay


def decision_steps(stage: dict) -> list[int]:
    """Checkpoint steps at which a pruner decides (the last checkpoint never prunes)."""
    n_s, total = stage["n_s"], stage["total_steps"]
    steps = sorted({s for curve in stage["curves"] for s, _ in curve if s < total})
    out, previous = [], -1
    for s in steps:
        if is_decision_step(
            step=s,
            previous_step=previous,
            warmup_steps=round(WARMUP_CYCLES * 2 * n_s),
            cycle_steps=2 * n_s,
        ):
            out.append(s)
        previous = s
    return out


def _values(stage: dict) -> list[dict[int, float]]:
    return [{int(s): float(v) for s, v in curve} for curve in stage["curves"]]


def replay_median(stage: dict, *, group: int) -> list[int | None]:
    """Step at which each trial stops under the median rule (None: runs to its end).

    ``group`` 1 is one worker running trials one after another; K > 1 lockstep groups of
    K consecutive trials, whose peers are the trials of earlier groups.
    """
    values = _values(stage)
    decisions = decision_steps(stage)
    stopped: list[int | None] = []
    for i, curve in enumerate(values):
        first_of_group = (i // group) * group
        peers = []
        for j in range(first_of_group):  # finished trials: their values up to where they stopped
            end = stopped[j]
            peers.append({s: v for s, v in values[j].items() if end is None or s <= end})
        stop = None
        for d in decisions:
            if d not in curve:
                break
            if median_rule(value=curve[d], step=d, peers=peers, n_startup=N_STARTUP):
                stop = d
                break
        stopped.append(stop)
    return stopped


def replay_halving(stage: dict, *, group: int) -> list[int | None]:
    """Step at which each trial stops under successive halving in groups of ``group``."""
    values = _values(stage)
    decisions = decision_steps(stage)
    stopped: list[int | None] = [None] * len(values)
    for start in range(0, len(values), group):
        alive = [i for i in range(start, min(start + group, len(values))) if values[i]]
        for d in decisions:
            alive = [i for i in alive if d in values[i]]  # a diverged member has left
            out = halving_rule(values={i: values[i][d] for i in alive})
            for i in out:
                stopped[i] = d
            alive = [i for i in alive if i not in out]
    return stopped


def outcome(stage: dict, stopped: Sequence[int | None], *, base: dict | None) -> dict:
    """Work, best completed trial and next range of one stage under one rule."""
    total, per_epoch = stage["total_steps"], stage["steps_per_epoch"]
    steps = []
    for curve, stop in zip(stage["curves"], stopped, strict=True):
        last = curve[-1][0] if curve else 0
        steps.append(stop if stop is not None else min(last, total) if last else total)
    completed = [
        i
        for i, stop in enumerate(stopped)
        if stop is None and math.isfinite(stage["final"][i]) and stage["reason"][i] == "completed"
    ]
    best = max(completed, key=lambda i: stage["final"][i]) if completed else None
    row = {
        "trial_epochs": sum(steps) / per_epoch,
        "pruned": [i for i, stop in enumerate(stopped) if stop is not None],
        "completed": completed,
        "best": best,
        "best_log10_lambda": None if best is None else stage["log10_lambda"][best],
        "best_val": None if best is None else stage["final"][best],
    }
    if base is not None and best is not None:
        row["same_best"] = best == base["best"]
        row["val_loss_pts"] = 100 * (base["best_val"] - row["best_val"])
        row["within_noise"] = base["best_val"] - row["best_val"] <= NOISE + 1e-12
        row["work_fraction"] = row["trial_epochs"] / base["trial_epochs"]
    return row


def predictiveness(stage: dict) -> dict:
    """How well the first decision point ranks the trials: Spearman's rho between the
    accuracies there and the final ones, and the final best trial's rank there (1 = top)."""
    from scipy.stats import spearmanr

    decisions = decision_steps(stage)
    if not decisions:
        return {}
    d = decisions[0]
    rows = [
        (curve[d], final)
        for curve, final in zip(_values(stage), stage["final"], strict=True)
        if d in curve and math.isfinite(final)
    ]
    mid, final = [r[0] for r in rows], [r[1] for r in rows]
    best = max(range(len(final)), key=lambda i: final[i])
    return {
        "spearman_decision_final": float(spearmanr(mid, final).statistic),
        "best_rank_at_decision": 1 + sorted(range(len(mid)), key=lambda i: -mid[i]).index(best),
        "final_spread_pts": 100 * (max(final) - min(final)),
    }


def next_range(
    stage: dict, completed: Sequence[int], *, earlier: Sequence[Scored], number: int
) -> list[float]:
    """The next stage's range from this stage's completed trials and the earlier ones."""
    scored = list(earlier) + [
        Scored(number=number + i, log10_lambda=stage["log10_lambda"][i], value=stage["final"][i])
        for i in completed
    ]
    got = narrow(low=stage["low"], high=stage["high"], trials=scored, top_k=TOP_K, margin=MARGIN)
    return [got.low, got.high]


def rules(groups: Sequence[int]) -> list[tuple[str, str, int]]:
    out = [("median, 1 worker", "median", 1)]
    out += [(f"median, lockstep {k}", "median", k) for k in groups if k > 1]
    out += [(f"halving, lockstep {k}", "halving", k) for k in groups]
    return out


def replay(stages: list[dict], groups: Sequence[int]) -> list[dict]:
    """One row per (stage, rule) of a seed's stages, the unpruned run first.

    The next range under a rule narrows from the trials that rule let complete, in this
    stage and the earlier ones (as the study does), around the same (unpruned) ranges.
    """
    rows = []
    kept: dict[str, list[Scored]] = {}
    for s, stage in enumerate(stages):
        everyone = [None] * len(stage["final"])
        base = outcome(stage, everyone, base=None)
        base.update(predictiveness(stage))
        plan = [("unpruned", None, 0), *rules(groups)]
        for name, kind, k in plan:
            if kind is None:
                row = base
            else:
                replayer = replay_median if kind == "median" else replay_halving
                row = outcome(stage, replayer(stage, group=k), base=base)
            earlier = kept.setdefault(name, [])
            row = dict(row)
            row["next_range"] = (
                next_range(stage, row["completed"], earlier=earlier, number=1000 * s)
                if row["completed"] or earlier
                else None
            )
            earlier += [
                Scored(
                    number=1000 * s + i,
                    log10_lambda=stage["log10_lambda"][i],
                    value=stage["final"][i],
                )
                for i in row["completed"]
            ]
            rows.append({"stage": s, "rule": name, **row})
        base_range = rows[-len(plan)]["next_range"]
        for row in rows[-len(plan) + 1 :]:
            row["same_next_range"] = row["next_range"] == base_range
    return rows


# ---------------------------------------------------------------- run


def run_seed(*, args: argparse.Namespace, seed: int, cache: dict, data_box: dict) -> list[dict]:
    stages: list[dict] = []
    low, high = COARSE
    scored: list[Scored] = []
    for s in range(args.stages):
        key = f"n{args.n_train}-c{args.cycles}-t{args.trials}/seed{seed}/stage{s}"
        if key not in cache["stages"]:
            if args.replay_only:
                break
            if "data" not in data_box:
                print(f"loading {args.n_train} training images ...", flush=True)
                data_box["data"] = load_cifar10(
                    data_dir=args.data, n_train=args.n_train, progress=False
                )
            log10s = [draw(seed, s, i, low, high) for i in range(args.trials)]
            print(
                f"seed {seed} stage {s} [{low:.3f}, {high:.3f}]: training {args.trials} λ "
                f"in lockstep ...",
                flush=True,
            )
            got = train_stage(
                data=data_box["data"],
                log10s=log10s,
                seed=seed,
                cycles=args.cycles,
                threads=args.threads,
            )
            got.update(low=low, high=high)
            cache["stages"][key] = got
            save_json(args.cache, cache)
            print(
                f"  {got['seconds']:.0f} s ({got['seconds_per_member_epoch']:.3f} s per "
                f"trial-epoch, load {got['load']:.2f}); best val "
                f"{max(v for v in got['final'] if math.isfinite(v)):.4f}",
                flush=True,
            )
        stage = cache["stages"][key]
        stages.append(stage)
        scored += [
            Scored(number=100 * s + i, log10_lambda=x, value=v)
            for i, (x, v) in enumerate(zip(stage["log10_lambda"], stage["final"], strict=True))
            if math.isfinite(v)
        ]
        got_range = narrow(low=low, high=high, trials=scored, top_k=TOP_K, margin=MARGIN)
        low, high = got_range.low, got_range.high
    return replay(stages, args.groups)


def summarise(rows_by_seed: dict[int, list[dict]]) -> list[dict]:
    """Per rule, over all seeds and stages: work fraction, same best, within noise."""
    by_rule: dict[str, list[dict]] = {}
    for rows in rows_by_seed.values():
        for row in rows:
            by_rule.setdefault(row["rule"], []).append(row)
    table = []
    for rule, rows in by_rule.items():
        if rule == "unpruned":
            continue
        losses = [r.get("val_loss_pts", math.nan) for r in rows]
        table.append(
            {
                "rule": rule,
                "stages": len(rows),
                "work_fraction_mean": statistics.fmean(r["work_fraction"] for r in rows),
                "same_best": sum(bool(r.get("same_best")) for r in rows),
                "within_noise": sum(bool(r.get("within_noise")) for r in rows),
                "val_loss_pts_mean": statistics.fmean(losses),
                "val_loss_pts_max": max(losses),
                "same_next_range": sum(
                    bool(r["same_next_range"]) for r in rows if r["stage"] < max_stage(rows)
                ),
                "next_ranges": sum(r["stage"] < max_stage(rows) for r in rows),
                "pruned_mean": statistics.fmean(len(r["pruned"]) for r in rows),
            }
        )
    return table


def max_stage(rows: list[dict]) -> int:
    return max(r["stage"] for r in rows)


def format_table(table: list[dict]) -> str:
    lines = [
        "| rule | stages | work (x unpruned) | pruned / stage | same best trial | best within "
        "0.5 pt | best val lost, mean / max (pts) | same next range |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in table:
        lines.append(
            f"| {r['rule']} | {r['stages']} | {r['work_fraction_mean']:.2f} | "
            f"{r['pruned_mean']:.1f} | {r['same_best']}/{r['stages']} | "
            f"{r['within_noise']}/{r['stages']} | {r['val_loss_pts_mean']:.2f} / "
            f"{r['val_loss_pts_max']:.2f} | {r['same_next_range']}/{r['next_ranges']} |"
        )
    return "\n".join(lines)


def draw_figure(cache: dict, rows_by_seed: dict[int, list[dict]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    # Left: accuracy at the decision point (end of cycle 1) against the final one.
    ax = axes[0]
    for key, stage in cache["stages"].items():
        if not key.startswith(f"n{args.n_train}-c{args.cycles}-t{args.trials}/"):
            continue
        decisions = decision_steps(stage)
        if not decisions:
            continue
        d = decisions[0]
        xs, ys = [], []
        for curve, final in zip(_values(stage), stage["final"], strict=True):
            if d in curve and math.isfinite(final):
                xs.append(100 * curve[d])
                ys.append(100 * final)
        ax.scatter(xs, ys, s=10, alpha=0.6, label=key.split("/", 1)[1])
    ax.set_xlabel("val accuracy at the first decision point (end of cycle 1), %")
    ax.set_ylabel("final val accuracy, %")
    ax.set_title("does the cycle-1 rank predict the final one?")
    ax.legend(fontsize=6, ncol=2)
    # Right: work against the best accuracy lost, one point per (seed, stage) and rule.
    ax = axes[1]
    names = [name for name, _, _ in rules(args.groups)]
    for name in names:
        rows = [r for rs in rows_by_seed.values() for r in rs if r["rule"] == name]
        ax.scatter(
            [r["work_fraction"] for r in rows],
            [r["val_loss_pts"] for r in rows],
            label=name,
            alpha=0.7,
        )
    ax.axhline(100 * NOISE, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("work, fraction of training every λ to the end")
    ax.set_ylabel("best final val accuracy lost vs unpruned, pts")
    ax.set_title(f"one point per (seed, stage); load {os.getloadavg()[0]:.2f}")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"pruning replay: {args.n_train} training images, {args.trials} λ per stage, "
        f"{args.cycles} cycles"
    )
    fig.tight_layout()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    plt.close(fig)


def check_study(args: argparse.Namespace, cache: dict) -> int:
    """Compare the replay with a real kmlp study of the same settings (stage 0 only).

    The study (e.g. the one ``search_quality.py`` runs) trained its trials one at a time
    with ``train`` and pruned them with ``StageMedianPruner``; its stage-0 λs are the first
    draws of the cached stage 0 with the same seed. Prints, per trial, the study's state
    and the replay's verdict ("median, 1 worker"), and the largest difference between
    the study's final validation accuracies and the lockstep ones.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.check_study, storage=args.check_storage)
    seed = int(study.user_attrs["search"]["seed"])
    key = f"n{args.n_train}-c{args.cycles}-t{args.trials}/seed{seed}/stage0"
    if key not in cache["stages"]:
        print(f"pruning.py: error: no cached {key} to compare with", file=sys.stderr)
        return 1
    stage = cache["stages"][key]
    trials = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("stage") == 0
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ),
        key=lambda t: t.number,
    )
    n = len(trials)
    for i, t in enumerate(trials):
        if abs(t.params["log10_lambda"] - stage["log10_lambda"][i]) > 1e-9:
            print(f"pruning.py: error: trial {t.number} is not draw {i}", file=sys.stderr)
            return 1
    prefix = {**stage, **{k: stage[k][:n] for k in ("log10_lambda", "curves", "final", "reason")}}
    replayed = replay_median(prefix, group=1)
    agree = 0
    diffs = []
    for i, t in enumerate(trials):
        real = "pruned" if t.state == TrialState.PRUNED else "complete"
        mine = "pruned" if replayed[i] is not None else "complete"
        agree += real == mine
        if t.state == TrialState.COMPLETE:
            diffs.append(abs(t.value - stage["final"][i]))
        print(
            f"  trial {t.number}: log10 λ {stage['log10_lambda'][i]:.3f} "
            f"study {real}, replay {mine}"
        )
    print(
        f"{args.check_study}: the replay agrees on {agree}/{n} stage-0 trials; final val "
        f"accuracy train() vs lockstep differs by at most {100 * max(diffs, default=0):.2f} pts"
    )
    return 0


def load_json(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"stages": {}}


def save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/pruning.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=10000, help="training images (default 10000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="study seeds")
    p.add_argument("--trials", type=int, default=20, help="λ per stage (default 20)")
    p.add_argument("--stages", type=int, default=3, help="stages (default 3)")
    p.add_argument("--cycles", type=int, default=2, help="learning-rate cycles (default 2)")
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8, 20], help="lockstep group sizes")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--data", default=None, help="CIFAR-10 directory (default $KMLP_DATA)")
    p.add_argument("--cache", type=Path, default=RESULTS / "pruning-cache.json")
    p.add_argument("--out", type=Path, default=RESULTS / "pruning.json")
    p.add_argument("--figure", type=Path, default=RESULTS / "pruning.png")
    p.add_argument("--replay-only", action="store_true", help="use the cache, train nothing")
    p.add_argument(
        "--check-study",
        default=None,
        help="compare the replay with this real kmlp study's stage 0 (then exit)",
    )
    p.add_argument(
        "--check-storage",
        default=f"sqlite:///{RESULTS / 'search_quality' / 'studies.db'}",
        help="storage URL of --check-study (default: search_quality.py's studies)",
    )
    args = p.parse_args(argv)
    if args.n_train < 100 or args.trials < 2 or args.stages < 1 or args.cycles < 1:
        p.error("need --n-train >= 100, --trials >= 2, --stages >= 1, --cycles >= 1")
    if any(k < 1 for k in args.groups) or args.threads < 1:
        p.error("group sizes and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cache = load_json(args.cache)
    if args.check_study:
        return check_study(args, cache)
    data_box: dict = {}
    rows_by_seed = {}
    try:
        for seed in args.seeds:
            rows_by_seed[seed] = run_seed(args=args, seed=seed, cache=cache, data_box=data_box)
    except KmlpNetworkError as exc:
        print(f"pruning.py: error: {exc}", file=sys.stderr)
        return 1
    table = summarise(rows_by_seed)
    print(format_table(table))
    for seed, rows in rows_by_seed.items():
        for r in rows:
            if r["rule"] == "unpruned":
                print(
                    f"seed {seed} stage {r['stage']}: unpruned best log10 λ "
                    f"{r['best_log10_lambda']:.3f} val {r['best_val']:.4f}, "
                    f"{r['trial_epochs']:.0f} trial-epochs; at the first decision point "
                    f"Spearman {r.get('spearman_decision_final', math.nan):.2f} with the "
                    f"final accuracies, the final best ranked "
                    f"{r.get('best_rank_at_decision', 0)}/{len(r['completed'])}; final "
                    f"spread {r.get('final_spread_pts', math.nan):.1f} pts"
                )
    save_json(
        args.out,
        {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "load": os.getloadavg(),
            "table": table,
            "rows": {str(k): v for k, v in rows_by_seed.items()},
        },
    )
    draw_figure(cache, rows_by_seed, args)
    print(f"wrote {args.out} and {args.figure} (load {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
