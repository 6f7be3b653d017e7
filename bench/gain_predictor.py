"""Tuning-gain predictors scored on held-out tasks of a co-search benchmark.

    python bench/gain_predictor.py --bench bench/results/cobench-nb201-<key> \\
        --out bench/results/gain_predictor.json

The question both searches ask of a predictor: *a task has been tuned ``n`` trials (maybe
none); what is its best µs after ``N`` trials in all?* The benchmark records every task's
curve for two tuning seeds, to convergence. Each workload is held out in turn (both its
seeds): the predictor is trained on the other workloads' curves only, then asked, for each
of the held-out curves, every anchor ``n`` in {0} + the curve's batch ends up to 128 and
every horizon ``N - n`` in {8, 16, 32, 64, 128, 256} the curve covers (up to 512 trials in
all; past a converged curve's end its last best counts). Scored: log-RMSE of the predicted
µs (``log pred - log truth``), and the coverage of the optimistic bound (the fraction of
questions whose truth is at or above it; the search stops things on it). Split by
anchored (``n > 0``) / unanchored (``n = 0``) and by searched tasks (more than one
candidate) / single-schedule tasks (one schedule, whose µs differ between seeds only by
measurement noise: the noise floor is reported beside them).

Predictors: ``curve`` (``cosearch.search.curves.CurveModel``) and ``features`` (today's
``predictors.TaskLatencyPredictor``, given the same curves as its training samples).
Also written: the priors ``CurveModel`` ships (``PRIOR_ANCHORED``, ``PRIOR_RATE``), fitted
on all curves of the benchmark.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_results  # noqa: E402


def questions(c, horizons, max_trials, max_anchor=128):
    anchors = [0] + [t for t, _ in c.points if t <= max_anchor]
    for n in anchors:
        for h in horizons:
            total = n + h
            if total > max_trials or not c.known_at(total):
                continue
            truth = c.best_at(max(total, c.points[0][0]))
            yield n, total, truth


def task_of(c, bench):
    from cosearch.search.evaluator import Task

    ti = bench.task_info[c.workload]
    return Task(c.workload, 1, ti["op"], float(ti["flops"]), tuple(tuple(s) for s in ti["shapes"]), ti["name"])


def score(bench, curves, seed):
    from cosearch.search.curves import HORIZONS, MAX_TRIALS, CurveModel
    from cosearch.search.predictors import TaskLatencyPredictor

    rows = []
    workloads = sorted({c.workload for c in curves})
    for w in workloads:
        train = [c for c in curves if c.workload != w]
        held = [c for c in curves if c.workload == w]
        model = CurveModel(seed=seed).fit(train)
        old = TaskLatencyPredictor(seed, None)
        old.refit_every = 100  # its samples fed in curve order (online errors as in a run), refitted less often
        for c in train:
            t = task_of(c, bench)
            for n, us in c.points:
                old.add(t, n, us)
        for c in held:
            t = task_of(c, bench)
            searched = not c.exhausted and len(c.points) > 1
            for n, total, truth in questions(c, HORIZONS, MAX_TRIALS):
                hist = c.upto(n)
                p = model.predict(hist, total)
                if n == 0:
                    o_us = old.predict(t, total)
                    o_low = old.optimistic(t, total) or 0.0
                else:
                    b = hist.points[-1][1]
                    o_us = b * old.gain_ratio(t, n, total - n)
                    opt = old.optimistic(t, total)
                    o_low = min(b, opt) if opt > 0 else 0.0
                rows.append({"workload": w, "op": c.op_kind, "searched": searched,
                             "anchored": n > 0, "n": n, "total": total, "truth": truth,
                             "curve_err": math.log(p.us / truth), "curve_cov": p.low_us <= truth * (1 + 1e-9),
                             "curve_source": p.source,
                             "features_err": math.log(o_us / truth), "features_cov": o_low <= truth * (1 + 1e-9)})
    return rows


def summarise(rows):
    out = []
    for searched in (True, False):
        for anchored in (True, False):
            sel = [r for r in rows if r["searched"] == searched and r["anchored"] == anchored]
            if not sel:
                continue
            row = {"tasks": "searched" if searched else "single-schedule", "question": "anchored (n>0)" if anchored
                   else "unanchored (n=0)", "questions": len(sel), "workloads": len({r["workload"] for r in sel})}
            for p in ("curve", "features"):
                e = np.array([r[f"{p}_err"] for r in sel])
                row[f"{p}_log_rmse"] = float(np.sqrt(np.mean(e ** 2)))
                row[f"{p}_coverage"] = float(np.mean([r[f"{p}_cov"] for r in sel]))
                wt = np.array([r["truth"] for r in sel])
                row[f"{p}_log_rmse_time_weighted"] = float(np.sqrt(np.sum(wt * e ** 2) / np.sum(wt)))
            out.append(row)
    return out


def noise_floor(curves):
    """log-RMSE between the two seeds of single-schedule tasks (same schedule, other timing)."""
    by = {}
    for c in curves:
        if c.exhausted or len(c.points) <= 1:
            by.setdefault(c.workload, []).append(c.points[-1][1])
    d = [math.log(v[0] / v[1]) / math.sqrt(2) for v in by.values() if len(v) == 2]
    return float(np.sqrt(np.mean(np.square(d)))) if d else None


def fit_priors(curves):
    """PRIOR_ANCHORED: per trials-done level, the mean and low (10 %) quantile of the change per
    doubling of trials; PRIOR_RATE: median log µs per unit of work at convergence, per op class."""
    from cosearch.search.curves import HORIZONS, MAX_TRIALS, op_class

    rich = [c for c in curves if not c.exhausted and len(c.points) > 1]
    levels = []
    for lvl in (8, 16, 32, 64, 128):
        per = []
        for c in rich:
            for n, b in c.points:
                if not (lvl / math.sqrt(2) <= n < lvl * math.sqrt(2)):
                    continue
                for h in HORIZONS:
                    if n + h <= MAX_TRIALS and c.known_at(n + h):
                        per.append(math.log(c.best_at(n + h) / b) / math.log2((n + h) / n))
        if per:
            levels.append([lvl, round(float(np.mean(per)), 3), round(float(np.quantile(per, 0.1)), 3), len(per)])
    rates = {}
    for cls in ("compute", "memory"):
        v = [math.log(c.points[-1][1]) - math.log(c.work) for c in curves if op_class(c.op_kind) == cls]
        if v:
            rates[cls] = {"log_rate": round(float(np.median(v)), 3), "rate": float(math.exp(np.median(v))), "curves": len(v)}
    return {"anchored_per_doubling": levels, "rate_at_convergence": rates}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="a co-search benchmark folder (cosearch bench build)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/gain_predictor.json)")
    args = ap.parse_args(argv)

    from cosearch.cobench.store import Bench
    from cosearch.errors import CosearchError

    try:
        bench = Bench(args.bench)
    except CosearchError as e:
        print(f"gain_predictor: {e}", file=sys.stderr)
        return 2
    curves = bench.task_curves()
    t0 = time.perf_counter()
    qs = score(bench, curves, args.seed)
    rows = summarise(qs)
    sec = time.perf_counter() - t0
    print_table(rows, ["tasks", "question", "questions", "workloads", "curve_log_rmse", "curve_log_rmse_time_weighted",
                       "curve_coverage", "features_log_rmse", "features_log_rmse_time_weighted", "features_coverage"])
    floor = noise_floor(curves)
    print(f"single-schedule noise floor (seed vs seed, per measurement): log-RMSE {floor:.3f}" if floor else "")
    by_n = []
    for n in sorted({q["n"] for q in qs if q["searched"]}):
        sel = [q for q in qs if q["searched"] and q["n"] == n]
        if len(sel) >= 10:
            by_n.append({"n": n, "questions": len(sel),
                         "curve_log_rmse": float(np.sqrt(np.mean([q["curve_err"] ** 2 for q in sel]))),
                         "curve_coverage": float(np.mean([q["curve_cov"] for q in sel])),
                         "features_log_rmse": float(np.sqrt(np.mean([q["features_err"] ** 2 for q in sel])))})
    by_op = []
    for op in sorted({q["op"] for q in qs}):
        for anchored in (False, True):
            sel = [q for q in qs if q["searched"] and q["op"] == op and q["anchored"] == anchored]
            if sel:
                by_op.append({"op": op, "anchored": anchored, "questions": len(sel),
                              "workloads": len({q["workload"] for q in sel}),
                              "curve_log_rmse": float(np.sqrt(np.mean([q["curve_err"] ** 2 for q in sel]))),
                              "curve_coverage": float(np.mean([q["curve_cov"] for q in sel])),
                              "features_log_rmse": float(np.sqrt(np.mean([q["features_err"] ** 2 for q in sel])))})
    priors = fit_priors(curves)
    info = bench.info()
    path = write_results("gain_predictor", {**vars(args)}, rows, args.out,
                         benchmark={k: info.get(k) for k in ("path", "machine_key", "cpu", "tasks", "tuning_seeds",
                                                             "trials_per_task")},
                         noise_floor_single_schedule=floor, by_anchor=by_n, by_op=by_op, priors=priors,
                         seconds=round(sec, 2), median_abs_err_curve=statistics.median(abs(q["curve_err"]) for q in qs))
    print(f"priors: {priors}")
    print(f"wrote {path} ({sec:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
