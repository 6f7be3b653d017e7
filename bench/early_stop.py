"""Early stopping: stall rule vs XGBoost rule vs no early stopping, side by side.

Through the engine's library API (``engine.plan`` / ``engine.tune_tasks`` /
``engine.compile_plan``), which writes the per-task histories itself:

1. Training: tune ``--train-archs`` seeded NAS-Bench-201 networks into one schedule
   database with the ``never`` rule, every task up to ``--trials`` trials in batches
   of ``--batch`` (``<db>/tasks.jsonl``); fit ``XGBStop`` on that history
   (``refit_and_save``: ``<db>/stop_model.json``).
2. Evaluation: ``--archs`` *other* seeded networks, for each tuning seed: every
   tunable task of the network gets a budget of ``--trials`` more trials (tasks the
   training networks share are warm-started from the database; the rule may skip
   them before their first batch), tuned with ``never``, ``stall`` (defaults) and
   ``xgb``, each into its own copy of the trained database, one after another in
   one run. Reported per (arch, seed, rule): trials spent, tasks stopped / skipped,
   tuning seconds, weighted kernel sum of the network (``engine.predict_latency``),
   end-to-end latency (``SEARCH_MEASURE``).
3. Predicted vs actual gain: the ``never`` run is the counterfactual. At each of its
   decision points the model's predicted log gain after ``--horizon`` more trials is
   compared with the gain the run actually got (Spearman); for each task a rule
   stopped, the gain ``never`` got on that task from the same trial count is the
   gain forgone.

    python bench/early_stop.py                          # default: 1186 trials (31 min on a loaded
                                                        # 2-core machine at ~2.3 s/trial)
    python bench/early_stop.py --train-archs 1 --archs 1 --trials 8 --horizon 4 --min-samples 5   # smoke

Writes bench/results/early_stop.json (``--out`` to change) with the resolved config.
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402

from cosearch.compile.tuning.stop import EarlyStopRule, TaskFeatures, TaskProgress  # noqa: E402

RULES = ("never", "stall", "xgb")


class Recorder(EarlyStopRule):
    """Wraps a rule and records every decision (task features, progress, answer)."""

    def __init__(self, inner: EarlyStopRule) -> None:
        self.inner, self.kind = inner, inner.kind
        self.log: list[tuple[TaskFeatures, TaskProgress, bool]] = []

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        stop = bool(self.inner.should_stop(task, progress))
        self.log.append((task, copy.deepcopy(progress), stop))
        return stop

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def curves(self) -> dict[str, tuple[TaskFeatures, list[TaskProgress]]]:
        """Per workload: features and the progress after each batch."""
        out: dict[str, tuple[TaskFeatures, list[TaskProgress]]] = {}
        for f, p, _ in self.log:
            if p.trials > 0:
                out.setdefault(f.workload, (f, []))[1].append(p)
        return out


def best_at(points: list[TaskProgress], trials: int) -> float:
    """Best µs of a run's task after ``trials`` trials (last point at or before it)."""
    best = math.inf
    for p in points:
        if p.trials <= trials:
            best = p.best_us
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-archs", type=int, default=2, help="networks tuned with 'never' to train the model")
    ap.add_argument("--archs", type=int, default=1, help="other networks the rules are compared on")
    ap.add_argument("--trials", type=int, default=16, help="trials per task (budget of every task, each phase)")
    ap.add_argument("--batch", type=int, default=4, help="candidates per measured batch")
    ap.add_argument("--seeds", default="0", help="comma-separated tuning seeds of the evaluation")
    ap.add_argument("--arch-seed", type=int, default=0, help="seed of the architecture sampler")
    ap.add_argument("--horizon", type=int, default=8, help="XGBStop: trials ahead the gain is predicted for")
    ap.add_argument("--threshold", type=float, default=0.03, help="XGBStop: stop below this predicted log gain")
    ap.add_argument("--min-samples", type=int, default=20, help="XGBStop: fewer labelled points -> stall fallback")
    ap.add_argument("--target", default="host")
    ap.add_argument("--keep", default=None, help="keep the trained database in this folder")
    ap.add_argument("--train-db", default=None, help="skip training: start from this trained database (a --keep copy)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from cosearch.compile import engine
    from cosearch.compile.tuning import stop as early_stop
    from cosearch.compile.deploy.measure import SEARCH_MEASURE, measure_local, resolved_threads
    from cosearch.compile.tuning.stop.xgb import XGBStop, refit_and_save
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.space import create_space

    target = load_target(args.target)
    threads = resolved_threads(target)
    torch.set_num_threads(threads or 1)
    space = create_space("nb201")
    rng = np.random.default_rng(args.arch_seed)
    archs: list[str] = []
    while len(archs) < args.train_archs + args.archs:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    train, evals = archs[: args.train_archs], archs[args.train_archs:]
    config = {**vars(args), "seeds": seeds, "target": target.to_dict(), "train_archs_sampled": train,
              "eval_archs_sampled": evals, "stall": early_stop.create("stall").config()}

    def tune(plan, rule, db: Path, seed: int):
        budgets = {w: args.trials for w in plan.workloads()}
        cfg = TuneConfig(trials=max(1, sum(budgets.values())), trials_per_task=args.trials,
                         trials_per_iter=args.batch, fit_batch=False, seed=seed, patience=None)
        rec = Recorder(rule)
        out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=cfg.trials, config=cfg,
                                budgets=budgets, early_stop=rec, log_dir=db.parent)
        return out, rec

    work = Path(tempfile.mkdtemp(prefix="cosearch-early-stop-"))
    t_start = time.perf_counter()
    try:
        # -- 1. training ------------------------------------------------------------------
        train_db = work / "train"
        train_rows = []
        if args.train_db:
            shutil.copytree(args.train_db, train_db)
            train = []
        for i, arch in enumerate(train):
            plan = engine.plan(engine.import_arch(space, arch, seed=args.arch_seed), target)
            out, _ = tune(plan, early_stop.create("never"), train_db, seeds[0])
            train_rows.append({"arch": arch, "workloads": len(set(plan.workloads())), "trials": out.trials_run,
                               "tune_s": round(out.seconds, 1)})
            print(f"train {i}: {train_rows[-1]}", flush=True)
        model = refit_and_save(train_db, horizon=args.horizon, threshold=args.threshold, min_samples=args.min_samples)
        fit = (model or XGBStop(horizon=args.horizon, min_samples=args.min_samples).fit([train_db])).config()
        print(f"xgb model: {fit}", flush=True)
        if args.keep:
            shutil.copytree(train_db, args.keep, dirs_exist_ok=True)

        # -- 2. evaluation ----------------------------------------------------------------
        rows: list[dict] = []
        points: list[dict] = []  # predicted vs actual gain on the never runs
        stops: list[dict] = []  # tasks a rule stopped: gain forgone per the never run
        for ai, arch in enumerate(evals):
            plan = engine.plan(engine.import_arch(space, arch, seed=args.arch_seed), target)
            for seed in seeds:
                runs: dict[str, Any] = {}
                for kind in RULES:
                    db = work / f"eval-{ai}-{seed}-{kind}" / "db"
                    shutil.copytree(train_db, db)
                    rule = XGBStop.for_database(db, threshold=args.threshold) if kind == "xgb" \
                        else early_stop.create(kind)
                    before = engine.status(plan, db)
                    out, rec = tune(plan, rule, db, seed)
                    pred = engine.predict_latency(plan, db)
                    try:
                        lat = measure_local(engine.compile_plan(plan, db), plan.imported.inputs, threads=threads,
                                            config=SEARCH_MEASURE)
                        e2e, err = (lat.latency.median_ms if lat.latency else None), lat.error
                    except Exception as e:  # noqa: BLE001 - a failed compile is a result here
                        e2e, err = None, str(e).splitlines()[0][:200]
                    oc = out.tasks.values()
                    row = {"arch": ai, "seed": seed, "rule": kind, "workloads": len(before),
                           "warm": sum(s.in_db for s in before.values()), "trials": out.trials_run,
                           "stopped": sum(o.stopped and not o.skipped for o in oc),
                           "skipped": sum(o.skipped for o in oc), "tune_s": round(out.seconds, 1),
                           "kernel_sum_ms": pred.ms, "missing": len(pred.missing), "e2e_ms": e2e, "e2e_error": err}
                    runs[kind] = (row, rec)
                    rows.append(row)
                    print({k: row[k] for k in ("arch", "seed", "rule", "trials", "stopped", "skipped", "kernel_sum_ms",
                                               "e2e_ms")}, flush=True)
                base_row, base_rec = runs["never"]
                base = base_rec.curves()
                for kind in RULES:
                    row = runs[kind][0]
                    row["trials_vs_never"] = row["trials"] / max(base_row["trials"], 1)
                    row["kernel_sum_vs_never"] = row["kernel_sum_ms"] / base_row["kernel_sum_ms"]
                    if row["e2e_ms"] and base_row["e2e_ms"]:
                        row["e2e_vs_never"] = row["e2e_ms"] / base_row["e2e_ms"]
                # predicted vs actual gain at every decision point of the never run
                for w, (f, pts) in base.items():
                    final = pts[-1].trials
                    for p in pts:
                        if p.trials + args.horizon > final or not math.isfinite(p.best_us):
                            continue  # censored
                        actual = math.log(p.best_us / min(p.best_us, best_at(pts, p.trials + args.horizon)))
                        points.append({"arch": ai, "seed": seed, "task": f.name, "op": f.op_kind,
                                       "warm": p.prior_trials > 0, "trials": p.trials,
                                       "pred": model.predict_gain(f, p) if model is not None else None,
                                       "actual": actual})
                # gain forgone by each stop (or skip)
                for kind in ("stall", "xgb"):
                    for f, p, s in runs[kind][1].log:
                        if not s or f.workload not in base:
                            continue
                        pts = base[f.workload][1]
                        b0 = p.best_us if p.trials == 0 else best_at(pts, p.trials)
                        b1 = best_at(pts, p.trials + args.horizon)
                        ok = math.isfinite(b0) and math.isfinite(b1)
                        stops.append({"arch": ai, "seed": seed, "rule": kind, "task": f.name, "op": f.op_kind,
                                      "trials": p.trials, "before_first_batch": p.trials == 0, "weight": f.weight,
                                      "pred": model.predict_gain(f, p) if model is not None else None,
                                      "actual_gain_horizon": math.log(b0 / min(b0, b1)) if ok else None,
                                      "never_final_gain": math.log(b0 / min(b0, pts[-1].best_us)) if ok else None,
                                      "censored": p.trials + args.horizon > pts[-1].trials})
        # -- summary ----------------------------------------------------------------------
        summary: dict[str, Any] = {"wall_s": round(time.perf_counter() - t_start, 1), "fit": fit}
        scored = [q for q in points if q["pred"] is not None]
        if len(scored) >= 3:
            pr, ac = [q["pred"] for q in scored], [q["actual"] for q in scored]
            summary["pred_vs_actual"] = {"n": len(scored), "spearman": round(float(spearmanr(pr, ac).statistic), 3),
                                         "mae": round(float(np.mean(np.abs(np.subtract(pr, ac)))), 4),
                                         "mean_pred": round(float(np.mean(pr)), 4),
                                         "mean_actual": round(float(np.mean(ac)), 4)}
        for kind in RULES:
            rs = [r for r in rows if r["rule"] == kind]
            e2e = [r["e2e_vs_never"] for r in rs if "e2e_vs_never" in r]
            summary[kind] = {"trials": sum(r["trials"] for r in rs),
                             "trials_vs_never": round(float(np.mean([r["trials_vs_never"] for r in rs])), 3),
                             "kernel_sum_vs_never": round(float(np.mean([r["kernel_sum_vs_never"] for r in rs])), 3),
                             "e2e_vs_never": round(float(np.mean(e2e)), 3) if e2e else None}
            if kind != "never":
                ss = [x for x in stops if x["rule"] == kind]
                known = [x["actual_gain_horizon"] for x in ss if x["actual_gain_horizon"] is not None]
                summary[kind].update(stops=len(ss), skips=sum(x["before_first_batch"] for x in ss),
                                     forgone_gain_gt_threshold=sum(g > args.threshold for g in known),
                                     mean_forgone_log_gain=round(float(np.mean(known)), 4) if known else None)
        path = write_results("early_stop", config, rows, out=args.out, train=train_rows, summary=summary,
                             points=points, stops=stops)
        print()
        print_table(rows, ["arch", "seed", "rule", "workloads", "warm", "trials", "stopped", "skipped", "tune_s",
                           "kernel_sum_ms", "kernel_sum_vs_never", "trials_vs_never", "e2e_ms", "e2e_vs_never"])
        print()
        for k, v in summary.items():
            print(f"{k}: {v}")
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
