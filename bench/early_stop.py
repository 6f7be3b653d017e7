"""Early stopping: stall rule vs XGBoost rule vs no early stopping, side by side.

1. Training: tune ``--train-archs`` seeded NAS-Bench-201 networks into one schedule
   database with the ``never`` rule, every task up to ``--trials`` trials in batches
   of ``--batch``; the per-task histories go to ``<db>/tasks.jsonl``; fit ``XGBStop``
   on them (``refit_and_save``: ``<db>/stop_model.json``).
2. Evaluation: ``--archs`` *other* seeded networks, for each tuning seed: the new
   tasks of each network tuned with ``never``, ``stall`` (defaults) and ``xgb``,
   each into its own copy of the trained database, same seeds, one after another in
   one run. Every task may get up to ``--trials`` trials (the global budget is tasks
   x trials, so the rule decides what is spent). Reported per (arch, seed, rule):
   trials spent, tuning seconds, weighted kernel sum of the new tasks (sum of
   weight x best µs) and of all tasks, end-to-end latency (``SEARCH_MEASURE``).
3. Predicted vs actual gain: the ``never`` run is the counterfactual. For every
   decision point of its tasks (after each batch) the model's predicted log gain
   after ``horizon`` more trials is compared with the gain the run actually got
   (Spearman); for every task a rule stopped, the gain ``never`` got on the same
   task from the same trial count is the gain forgone.

    python bench/early_stop.py                          # default (~10 min on 2 cores)
    python bench/early_stop.py --train-archs 1 --archs 1 --trials 16    # smoke

Writes bench/results/early_stop.json (``--out`` to change) with the resolved config.

While the tuning engine passes task names only, the bench computes each task's
features itself (``task_features``) and writes the history events from what the
rule saw (``Recorder``); the engine writes the same file format itself.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402

from cosearch.compile.early_stop import EarlyStopRule, TaskFeatures, TaskProgress  # noqa: E402

RULES = ("never", "stall", "xgb")


def op_kind(name: str, shapes: tuple[tuple[int, ...], ...]) -> str:
    n = name.lower()
    if "conv2d" in n:
        w = shapes[1] if len(shapes) > 1 else ()
        return "depthwise_conv2d" if len(w) == 4 and w[1] == 1 and w[0] > 1 else "conv2d"
    if "matmul" in n or "dense" in n:
        return "dense"
    if "pool" in n:
        return "pool"
    if any(k in n for k in ("mean", "sum", "max", "softmax")):
        return "reduce"
    if any(k in n for k in ("add", "relu", "multiply", "subtract", "divide", "clip", "concat")):
        return "elementwise"
    return "other"


def task_features(task, target_key: str) -> TaskFeatures:
    """Features of a MetaSchedule ``ExtractedTask`` (bench-side until the engine supplies them)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    mod = task.dispatched[0]
    func = next(iter(mod.functions.values()))
    shapes = []
    for p in func.params:  # TVM 0.27 (tirx): buffer parameters carry their shape
        shape = getattr(p, "shape", None)
        if shape is not None:
            shapes.append(tuple(int(x) for x in shape))
    try:
        flops = float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001 - a feature, not a result
        flops = 0.0
    shp = tuple(shapes)
    return TaskFeatures(name=task.task_name, workload=ms.utils.shash2hex(mod), op_kind=op_kind(task.task_name, shp),
                        shapes=shp, flops=flops, weight=int(task.weight), target=target_key)


class Recorder(EarlyStopRule):
    """Wraps a rule: gives it the task's full features and records what it saw and said."""

    def __init__(self, inner: EarlyStopRule, features: dict[str, TaskFeatures]) -> None:
        self.inner, self.features, self.kind = inner, features, inner.kind
        self.log: list[tuple[str, TaskProgress, bool]] = []

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        f = self.features.get(task.name, task)
        stop = self.inner.should_stop(f, progress)
        self.log.append((task.name, copy.deepcopy(progress), bool(stop)))
        return stop

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def curves(self) -> dict[str, list[TaskProgress]]:
        out: dict[str, list[TaskProgress]] = {}
        for name, p, _ in self.log:
            if p.trials > 0:
                out.setdefault(name, []).append(p)
        return out

    def history_events(self, run: str) -> list[dict]:
        """The ``tasks.jsonl`` events the engine would have written for this run."""
        from cosearch.compile.history import event

        events = []
        for name, points in self.curves().items():
            f = self.features.get(name)
            if f is None:
                continue
            events.append(event("task", f.workload, name=f.name, op=f.op_kind, shapes=[list(s) for s in f.shapes],
                                flops=f.flops, weight=f.weight, target=f.target))
            trials = errors = 0
            for p in points:
                b = p.history[-1]
                events.append(event("batch", f.workload, run=run, trials=p.trials - trials, errors=p.errors - errors,
                                    batch_best_us=b if math.isfinite(b) else None,
                                    best_us=p.best_us if math.isfinite(p.best_us) else None,
                                    prior_trials=p.prior_trials + trials))
                trials, errors = p.trials, p.errors
        return events


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
    ap.add_argument("--archs", type=int, default=2, help="other networks the rules are compared on")
    ap.add_argument("--trials", type=int, default=32, help="trials per task at most (global budget: tasks x this)")
    ap.add_argument("--batch", type=int, default=4, help="candidates per measured batch")
    ap.add_argument("--seeds", default="0", help="comma-separated tuning seeds of the evaluation")
    ap.add_argument("--arch-seed", type=int, default=0, help="seed of the architecture sampler")
    ap.add_argument("--horizon", type=int, default=16, help="XGBStop: trials ahead the gain is predicted for")
    ap.add_argument("--threshold", type=float, default=0.03, help="XGBStop: stop below this predicted log gain")
    ap.add_argument("--min-samples", type=int, default=30, help="XGBStop: fewer labelled points -> stall fallback")
    ap.add_argument("--target", default="host")
    ap.add_argument("--keep", default=None, help="keep the trained database in this folder")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from cosearch.compile import early_stop, history
    from cosearch.compile.frontend import extract_tasks, from_torch
    from cosearch.compile.measure import SEARCH_MEASURE, measure_local, resolved_threads
    from cosearch.compile.stop_model import MODEL_FILE, XGBStop, refit_and_save
    from cosearch.compile.target import load_target
    from cosearch.compile.tune import TuneConfig, tune_and_compile
    from cosearch.space import create_space

    target = load_target(args.target)
    threads = resolved_threads(target)
    torch.set_num_threads(threads or 1)
    target_key = target.name
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

    def imported_of(arch: str):
        net = space.build(arch, seed=args.arch_seed).eval()
        imp = from_torch(net, (torch.randn(*space.input_shape(arch, 1)),))
        feats = {t.task_name: task_features(t, target_key) for t in extract_tasks(imp, target)}
        return imp, feats

    def tune(imp, feats, rule, db: Path, seed: int):
        n = len(feats)
        cfg = TuneConfig(trials=max(n, 1) * args.trials, trials_per_task=args.trials, trials_per_iter=args.batch,
                         fit_batch=False, seed=seed, patience=None)
        rec = Recorder(rule, feats)
        t0 = time.perf_counter()
        res = tune_and_compile(imp, target, database_dir=db, config=cfg, early_stop=rec)
        return res, rec, time.perf_counter() - t0

    work = Path(tempfile.mkdtemp(prefix="cosearch-early-stop-"))
    t_start = time.perf_counter()
    try:
        # -- 1. training ------------------------------------------------------------------
        train_db = work / "train"
        train_rows = []
        for i, arch in enumerate(train):
            imp, feats = imported_of(arch)
            res, rec, secs = tune(imp, feats, early_stop.create("never"), train_db, seeds[0])
            history.append(train_db, rec.history_events(run=f"train-{i}"))
            train_rows.append({"arch": arch, "tasks": len(res.tasks), "tuned": sum(t.source == "tuned" for t in res.tasks),
                               "trials": res.trials_run, "tune_s": round(secs, 1)})
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
            imp, feats = imported_of(arch)
            for seed in seeds:
                runs: dict[str, Any] = {}
                for kind in RULES:
                    db = work / f"eval-{ai}-{seed}-{kind}"
                    shutil.copytree(train_db, db)
                    rule = XGBStop.for_database(db, threshold=args.threshold) if kind == "xgb" \
                        else early_stop.create(kind)
                    res, rec, secs = tune(imp, feats, rule, db, seed)
                    new = [t for t in res.tasks if t.source == "tuned"]
                    lat = measure_local(res.executable, imp.inputs, threads=threads, config=SEARCH_MEASURE)
                    stopped = sorted({n for n, _, s in rec.log if s})
                    row = {"arch": ai, "seed": seed, "rule": kind, "new_tasks": len(new), "trials": res.trials_run,
                           "tasks_stopped": len(stopped), "tune_s": round(secs, 1),
                           "new_sum_us": sum(t.weight * (t.best_us or math.inf) for t in new),
                           "all_sum_us": sum(t.weight * (t.best_us or math.inf) for t in res.tasks),
                           "e2e_ms": lat.latency.median_ms if lat.latency is not None else None,
                           "e2e_error": lat.error}
                    runs[kind] = (row, rec)
                    rows.append(row)
                    print({k: row[k] for k in ("arch", "seed", "rule", "trials", "tasks_stopped", "new_sum_us",
                                               "e2e_ms")}, flush=True)
                base_row, base_rec = runs["never"]
                base_curves = base_rec.curves()
                for kind in RULES:
                    row = runs[kind][0]
                    row["trials_vs_never"] = row["trials"] / max(base_row["trials"], 1)
                    row["new_sum_vs_never"] = row["new_sum_us"] / base_row["new_sum_us"]
                    if row["e2e_ms"] and base_row["e2e_ms"]:
                        row["e2e_vs_never"] = row["e2e_ms"] / base_row["e2e_ms"]
                # predicted vs actual gain at every decision point of the never run
                for name, pts in base_curves.items():
                    f = feats.get(name)
                    final = pts[-1].trials
                    for p in pts:
                        if p.trials + args.horizon > final or not math.isfinite(p.best_us):
                            continue  # censored
                        actual = math.log(p.best_us / best_at(pts, p.trials + args.horizon))
                        pred = model.predict_gain(f, p) if model is not None else None
                        points.append({"arch": ai, "seed": seed, "task": name, "op": f.op_kind if f else None,
                                       "trials": p.trials, "pred": pred, "actual": actual})
                # gain forgone by each stop
                for kind in ("stall", "xgb"):
                    rec = runs[kind][1]
                    for name, p, s in rec.log:
                        if not s or name not in base_curves:
                            continue
                        pts = base_curves[name]
                        b0 = best_at(pts, p.trials)
                        b1 = best_at(pts, p.trials + args.horizon)
                        actual = math.log(b0 / b1) if math.isfinite(b0) and math.isfinite(b1) else None
                        b_end = pts[-1].best_us
                        f = feats.get(name)
                        stops.append({"arch": ai, "seed": seed, "rule": kind, "task": name, "trials": p.trials,
                                      "weight": f.weight if f else 1,
                                      "pred": model.predict_gain(f, p) if (model is not None and f) else None,
                                      "actual_gain_horizon": actual,
                                      "never_final_gain": math.log(b0 / b_end) if math.isfinite(b0) else None,
                                      "censored": p.trials + args.horizon > pts[-1].trials})
        # -- summary ----------------------------------------------------------------------
        summary: dict[str, Any] = {"wall_s": round(time.perf_counter() - t_start, 1), "fit": fit}
        scored = [q for q in points if q["pred"] is not None]
        if len(scored) >= 3:
            summary["pred_vs_actual"] = {"n": len(scored),
                                         "spearman": round(float(spearmanr([q["pred"] for q in scored],
                                                                           [q["actual"] for q in scored]).statistic), 3),
                                         "mae": round(float(np.mean([abs(q["pred"] - q["actual"]) for q in scored])), 4)}
        for kind in RULES:
            rs = [r for r in rows if r["rule"] == kind]
            summary[kind] = {"trials": sum(r["trials"] for r in rs),
                             "trials_vs_never": round(float(np.mean([r["trials_vs_never"] for r in rs])), 3),
                             "new_sum_vs_never": round(float(np.mean([r["new_sum_vs_never"] for r in rs])), 3),
                             "e2e_vs_never": round(float(np.mean([r["e2e_vs_never"] for r in rs if "e2e_vs_never" in r]
                                                                 or [math.nan])), 3)}
            ss = [s for s in stops if s["rule"] == kind and s["actual_gain_horizon"] is not None]
            if kind != "never":
                summary[kind]["stops"] = len([s for s in stops if s["rule"] == kind])
                summary[kind]["stops_forgone_gain_gt_threshold"] = sum(s["actual_gain_horizon"] > args.threshold
                                                                       for s in ss)
                summary[kind]["mean_forgone_log_gain"] = round(float(np.mean([s["actual_gain_horizon"] for s in ss])),
                                                               4) if ss else None
        path = write_results("early_stop", config, rows, out=args.out, train=train_rows, summary=summary,
                             points=points, stops=stops)
        print()
        print_table(rows, ["arch", "seed", "rule", "new_tasks", "trials", "tasks_stopped", "tune_s", "new_sum_us",
                           "new_sum_vs_never", "trials_vs_never", "e2e_ms", "e2e_vs_never"])
        print()
        for k, v in summary.items():
            print(f"{k}: {v}")
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
