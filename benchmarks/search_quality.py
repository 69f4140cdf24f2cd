"""Search quality on equal compute: kmlp's coarse-to-fine against Optuna's TPE and GP.

For each study seed s:

- **kmlp**: the real search, ``kmlp.study.launch`` (3 stages of ``--trials`` trials, the
  coarse range -5..-1, narrowing from the top 5, the stage median pruner: every default),
  one worker, on ``--n-train`` training images and the 5000 validation images; training
  seed s, draw seed s. Its best λ is what ``kmlp.study.export_best`` exports.
  Its compute is counted in trial-epochs: the update steps every COMPLETE or PRUNED
  trial ran (its last reported step), over the steps of an epoch.
- **TPE** and **GP**: ``optuna.samplers.TPESampler(seed=s)`` and ``GPSampler(seed=s)``
  over log10 λ in -5..-1, each trial ``kmlp.network.train`` with the same configuration,
  data and training seed, scored by its final validation accuracy, no pruning, for as
  many trials as kmlp's compute in full-trial equivalents (trial-epochs over the epochs
  of one trial, rounded).

Each best λ is then judged by its retrained test accuracy: the network trained on the
49000-image training set (the last 1000 of the 50000 held out for validation, as
``kmlp retrain`` does), ``--retrain-cycles`` cycles (n_s = 5 epochs), seeds
``--retrain-seeds``, tested on the 10000 test images; the mean and spread over seeds.
All searches run first; then the best λs of all methods and study seeds are retrained
together in lockstep (one group per retrain seed; each member equals ``train`` alone up
to float rounding).

Every finished piece is cached: the studies live in SQLite under ``--workdir`` (a
stopped kmlp study resumes; a stopped Optuna study runs only its missing trials), and
each method's best and each retrain land in ``--cache`` (JSON) as soon as they finish,
so a rerun only computes what is missing.

    python benchmarks/search_quality.py [--n-train 10000] [--trials 20] [--cycles 2]
        [--seeds 0 1 2] [--methods kmlp tpe gp] [--retrain-cycles 3]
        [--retrain-seeds 0 1 2] [--threads 1] [--data DIR] [--workdir DIR]
        [--cache FILE] [--out FILE] [--figure FILE]

The full-scale run (``--n-train 45000 --trials 20``) is what issue 8 asks for; it costs
about 3 x 3 x 60 trials of 20 epochs on 45000 images.
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

import optuna
from optuna.trial import TrialState

from kmlp.errors import KmlpError
from kmlp.network import (
    DivergenceError,
    TrainConfig,
    load_cifar10,
    train,
    train_lockstep,
)
from kmlp.study import SearchConfig, export_best, launch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COARSE = (-5.0, -1.0)
PARAM = "log10_lambda"
METHODS = ("kmlp", "tpe", "gp")


def search_config(args: argparse.Namespace, *, seed: int, lam: float = 0.005) -> TrainConfig:
    return TrainConfig(hidden=(50, 50), batch_norm=True, lam=lam, seed=seed, cycles=args.cycles)


def scale_key(args: argparse.Namespace) -> str:
    return f"n{args.n_train}-t{args.trials}-c{args.cycles}"


def trial_epochs(study: optuna.Study, *, steps_per_epoch: int) -> float:
    """Update steps of the finished trials (the last reported step each), in epochs."""
    steps = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.intermediate_values:
            steps += max(t.intermediate_values)
    return steps / steps_per_epoch


def run_kmlp(args: argparse.Namespace, *, seed: int, data: Any, storage: str) -> dict:
    name = f"kmlp-{scale_key(args)}-s{seed}"
    start = time.perf_counter()
    study = launch(
        study_name=name,
        storage_url=storage,
        train_config=search_config(args, seed=seed),
        search=SearchConfig(trials=(args.trials,), stages=3, coarse=COARSE, seed=seed),
        data=data,
        data_options={"n_train": args.n_train},
        workers=1,
        blas_threads=args.threads,
        out=sys.stdout,
    )
    seconds = time.perf_counter() - start
    export = export_best(
        study_name=name, storage_url=storage, path=args.workdir / f"{name}-best.json"
    )
    per_epoch = steps_per_epoch(args)
    trials = study.get_trials(deepcopy=False)
    return {
        "study": name,
        "log10_lambda": export["log10_lambda"],
        "val_accuracy": export["val_accuracy"],
        "trial_epochs": trial_epochs(study, steps_per_epoch=per_epoch),
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "seconds": seconds,
        "load": os.getloadavg()[0],
    }


def run_optuna(
    args: argparse.Namespace, *, method: str, seed: int, data: Any, storage: str, n_trials: int
) -> dict:
    name = f"{method}-{scale_key(args)}-s{seed}"
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if method == "tpe"
        else optuna.samplers.GPSampler(seed=seed)
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        load_if_exists=True,
    )
    base = search_config(args, seed=seed)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float(PARAM, *COARSE)
        config = TrainConfig.from_dict({**base.to_dict(), "lam": 10.0**x})

        def report(point: Any) -> bool:  # intermediate values count the steps run
            if math.isfinite(point.val_accuracy):
                trial.report(point.val_accuracy, point.step)
            return False

        try:
            result = train(data=data, config=config, callback=report, blas_threads=args.threads)
        except DivergenceError:
            raise optuna.TrialPruned() from None
        print(
            f"  {method} s{seed} #{trial.number}: log10 λ {x:.3f} val {result.val_accuracy:.4f}",
            flush=True,
        )
        return float(result.val_accuracy)

    start = time.perf_counter()
    done = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done < n_trials:
        study.optimize(objective, n_trials=n_trials - done)
    best = study.best_trial
    return {
        "study": name,
        "log10_lambda": float(best.params[PARAM]),
        "val_accuracy": float(best.value),
        "trial_epochs": trial_epochs(study, steps_per_epoch=steps_per_epoch(args)),
        "trials": len(study.trials),
        "pruned": 0,
        "seconds": time.perf_counter() - start,
        "load": os.getloadavg()[0],
    }


def steps_per_epoch(args: argparse.Namespace) -> int:
    return math.ceil(args.n_train / 100)


def epochs_per_trial(args: argparse.Namespace) -> float:
    return 2 * 5 * args.cycles  # n_s = 5 epochs, 2 n_s per cycle


def retrain(args: argparse.Namespace, *, log10s: Sequence[float], seed: int, data: Any) -> list:
    """Test accuracies of the λs trained together on the full training set, one seed."""
    configs = [
        TrainConfig(
            hidden=(50, 50),
            batch_norm=True,
            lam=10.0**x,
            seed=seed,
            cycles=args.retrain_cycles,
        )
        for x in log10s
    ]
    result = train_lockstep(data=data, configs=configs, blas_threads=args.threads)
    out = []
    for m in result.members:
        test = float(m.net.accuracy(data.test.X, data.test.y)) if m.error is None else math.nan
        out.append({"val_accuracy": float(m.val_accuracy), "test_accuracy": test})
    return out


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cache = load_json(args.cache)
        self.search_data: Any = None
        self.retrain_data: Any = None
        args.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = f"sqlite:///{args.workdir / 'studies.db'}"

    def searched(self) -> Any:
        if self.search_data is None:
            print(f"loading {self.args.n_train} search images ...", flush=True)
            self.search_data = load_cifar10(
                data_dir=self.args.data, n_train=self.args.n_train, progress=False
            )
        return self.search_data

    def full(self) -> Any:
        if self.retrain_data is None:
            n = self.args.retrain_n_train
            print(f"loading the retrain set ({n or 49000} images) ...", flush=True)
            self.retrain_data = load_cifar10(
                data_dir=self.args.data, n_train=n, val_pool=1000, progress=False
            )
        return self.retrain_data

    def search(self, *, seed: int) -> dict[str, dict]:
        args, got = self.args, {}
        searches = self.cache.setdefault("searches", {})
        for method in args.methods:
            key = f"{scale_key(args)}/{method}/s{seed}"
            if key not in searches:
                print(f"seed {seed}: {method} search ...", flush=True)
                if method == "kmlp":
                    row = run_kmlp(args, seed=seed, data=self.searched(), storage=self.storage)
                else:
                    budget = self.budget(seed)
                    row = run_optuna(
                        args,
                        method=method,
                        seed=seed,
                        data=self.searched(),
                        storage=self.storage,
                        n_trials=budget,
                    )
                searches[key] = row
                save_json(args.cache, self.cache)
                print(
                    f"seed {seed}: {method} best log10 λ {row['log10_lambda']:.3f} val "
                    f"{row['val_accuracy']:.4f}, {row['trial_epochs']:.0f} trial-epochs in "
                    f"{row['seconds']:.0f} s (load {row['load']:.2f})",
                    flush=True,
                )
            got[method] = searches[key]
        return got

    def budget(self, seed: int) -> int:
        """Full-trial equivalents of kmlp's search with this seed (the other methods' budget)."""
        kmlp = self.cache["searches"].get(f"{scale_key(self.args)}/kmlp/s{seed}")
        if kmlp is None:  # kmlp not run: its unpruned budget
            return 3 * self.args.trials
        return max(1, round(kmlp["trial_epochs"] / epochs_per_trial(self.args)))

    def retrains(self, *, best: list[dict]) -> None:
        args = self.args
        done = self.cache.setdefault("retrains", {})
        for rseed in args.retrain_seeds:
            todo = sorted(
                {
                    row["log10_lambda"]
                    for row in best
                    if retrain_key(args, row["log10_lambda"], rseed) not in done
                }
            )
            if not todo:
                continue
            print(f"retraining {len(todo)} λ with seed {rseed} ...", flush=True)
            start = time.perf_counter()
            results = retrain(args, log10s=todo, seed=rseed, data=self.full())
            for x, r in zip(todo, results, strict=True):
                done[retrain_key(args, x, rseed)] = {**r, "load": os.getloadavg()[0]}
            save_json(args.cache, self.cache)
            print(
                f"  {time.perf_counter() - start:.0f} s: "
                + ", ".join(
                    f"{x:.3f} -> {r['test_accuracy']:.4f}"
                    for x, r in zip(todo, results, strict=True)
                )
                + f" (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )


def retrain_key(args: argparse.Namespace, log10_lambda: float, seed: int) -> str:
    n = args.retrain_n_train or 49000
    return f"n{n}-c{args.retrain_cycles}/{log10_lambda!r}/s{seed}"


def table_rows(args: argparse.Namespace, cache: dict) -> list[dict]:
    rows = []
    for seed in args.seeds:
        for method in args.methods:
            row = cache.get("searches", {}).get(f"{scale_key(args)}/{method}/s{seed}")
            if row is None:
                continue
            tests = [
                cache.get("retrains", {}).get(retrain_key(args, row["log10_lambda"], r))
                for r in args.retrain_seeds
            ]
            accs = [t["test_accuracy"] for t in tests if t is not None]
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "log10_lambda": row["log10_lambda"],
                    "lambda": 10.0 ** row["log10_lambda"],
                    "val_accuracy": row["val_accuracy"],
                    "test_accuracies": accs,
                    "test_mean": statistics.fmean(accs) if accs else math.nan,
                    "test_std": statistics.stdev(accs) if len(accs) > 1 else math.nan,
                    "trial_epochs": row["trial_epochs"],
                    "trials": row["trials"],
                    "pruned": row["pruned"],
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| method | seed | best λ (log10) | val acc | test acc, mean ± std (n) | trials "
        "(pruned) | trial-epochs |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        test = (
            f"{100 * r['test_mean']:.2f} ± {100 * r['test_std']:.2f} ({len(r['test_accuracies'])})"
            if r["test_accuracies"]
            else "-"
        )
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['lambda']:.2e} ({r['log10_lambda']:.3f}) | "
            f"{100 * r['val_accuracy']:.2f} | {test} | {r['trials']} ({r['pruned']}) | "
            f"{r['trial_epochs']:.0f} |"
        )
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        tests = [a for r in rs for a in r["test_accuracies"]]
        if tests:
            lines.append(
                f"| **{method}, all seeds** | {len(rs)} | | "
                f"{100 * statistics.fmean(r['val_accuracy'] for r in rs):.2f} | "
                f"{100 * statistics.fmean(tests):.2f} ± "
                f"{100 * (statistics.stdev(tests) if len(tests) > 1 else 0):.2f} "
                f"({len(tests)}) | | "
                f"{statistics.fmean(r['trial_epochs'] for r in rs):.0f} |"
            )
    return "\n".join(lines)


def draw_figure(args: argparse.Namespace, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    markers = {"kmlp": "o", "tpe": "s", "gp": "^"}
    for method in args.methods:
        rs = [r for r in rows if r["method"] == method and r["test_accuracies"]]
        ax.errorbar(
            [r["log10_lambda"] for r in rs],
            [100 * r["test_mean"] for r in rs],
            yerr=[100 * (0 if math.isnan(r["test_std"]) else r["test_std"]) for r in rs],
            fmt=markers.get(method, "o"),
            capsize=3,
            label=method,
        )
        for r in rs:
            ax.annotate(f"s{r['seed']}", (r["log10_lambda"], 100 * r["test_mean"]), fontsize=7)
    ax.set_xlabel("best log10 λ found")
    ax.set_ylabel(f"test accuracy, %, retrained {args.retrain_cycles} cycles (mean ± std)")
    ax.set_title(
        f"search on {args.n_train} images, {args.trials} trials/stage; "
        f"load {os.getloadavg()[0]:.2f}",
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    plt.close(fig)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/search_quality.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--n-train", type=int, default=10000, help="search images (default 10000)")
    p.add_argument("--trials", type=int, default=20, help="kmlp trials per stage (default 20)")
    p.add_argument("--cycles", type=int, default=2, help="cycles of a search trial (default 2)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="study seeds")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--retrain-cycles", type=int, default=3, help="retrain cycles (default 3)")
    p.add_argument("--retrain-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--retrain-n-train",
        type=int,
        default=None,
        help="retrain images (default: all 49000; smaller only for a smoke run)",
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--data", default=None, help="CIFAR-10 directory (default $KMLP_DATA)")
    p.add_argument("--workdir", type=Path, default=RESULTS / "search_quality")
    p.add_argument("--cache", type=Path, default=RESULTS / "search_quality-cache.json")
    p.add_argument("--out", type=Path, default=RESULTS / "search_quality.json")
    p.add_argument("--figure", type=Path, default=RESULTS / "search_quality.png")
    p.add_argument("--no-retrain", action="store_true", help="searches only")
    p.add_argument("--report-only", action="store_true", help="table from the cache, no work")
    args = p.parse_args(argv)
    if not 100 <= args.n_train <= 45000 or args.trials < 1 or args.cycles < 1:
        p.error("need 100 <= --n-train <= 45000, --trials >= 1, --cycles >= 1")
    if args.retrain_cycles < 1 or args.threads < 1:
        p.error("--retrain-cycles and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner = Runner(args)
    try:
        if not args.report_only:
            # All searches first, then the retrains of every best λ together (a wider
            # lockstep group costs less per member, and the searches are the results
            # that come first).
            found: list[dict] = []
            for seed in args.seeds:
                found += runner.search(seed=seed).values()
                print(format_table(table_rows(args, runner.cache)), flush=True)
            if not args.no_retrain:
                runner.retrains(best=found)
    except (KmlpError, optuna.exceptions.OptunaError) as exc:
        print(f"search_quality.py: error: {exc}", file=sys.stderr)
        return 1
    rows = table_rows(args, runner.cache)
    print(format_table(rows))
    save_json(
        args.out,
        {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "load": os.getloadavg(),
            "rows": rows,
        },
    )
    draw_figure(args, rows)
    print(f"wrote {args.out} and {args.figure} (load {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
