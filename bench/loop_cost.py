"""What one architecture costs the co-search loop, stage by stage.

1. Seconds per tuning trial, side by side on the same tasks of one network:
   stock MetaSchedule settings (``LocalBuilder``, default evaluator, population
   512, 4 genetic iterations, xgb) vs cosearch's ``TuneConfig`` defaults.
2. For K seeded NAS-Bench-201 architectures (and mbv2 ones with ``--space mbv2``):
   a cold pass that tunes each architecture's new tasks into one shared database
   (``trials = new tasks x trials_per_iter``, so every task gets a batch), then a
   warm pass over the same architectures -- all tasks in the database -- timing
   build (torch module), export (torch -> ONNX), import (ONNX -> Relax),
   lower (fusion), extract (tasks + database look-up), compile, measure
   (``SEARCH_MEASURE``). With the baseline on (default), each warm row also
   times, side by side under the same load, the stages as they were before
   the loop-cost work: export with torch at the target's thread count, plain
   ``tvm.compile`` (no kernel cache) and the full ``MeasureConfig`` measurement.

    python bench/loop_cost.py                      # K=4, stock baseline 32 trials
    python bench/loop_cost.py --archs 2 --stock-trials 0   # quick

Writes bench/results/loop_cost.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import warnings
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, print_table, write_results  # noqa: E402


def stock_seconds_per_trial(imported, target, trials: int, seed: int) -> dict:
    """MetaSchedule's defaults on the model's tasks, ``trials`` trials."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.frontend import MODULE_EQUALITY, extract_tasks

    tasks = extract_tasks(imported, target)
    with tempfile.TemporaryDirectory(prefix="cosearch-stock-") as work:
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, work_dir=work, num_threads=target.num_cores, seed=seed
        )
        database = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
        t0 = time.perf_counter()
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=work, max_trials_global=trials,
                      num_trials_per_iter=16, database=database, module_equality=MODULE_EQUALITY)
        secs = time.perf_counter() - t0
        records = database.get_all_tuning_records()
        valid = sum(1 for r in records if r.run_secs and max(float(s) for s in r.run_secs) < 1e9)
    # under heavy load the stock LocalBuilder's workers (each importing tensor_intrin)
    # can time out: then every candidate is a build error; say so
    return {"trials": trials, "seconds": secs, "s_per_trial": secs / trials, "records": len(records),
            "valid_records": valid}


def _baseline(net, x, imported, target, db: Path, threads, mcfg) -> dict:
    """Export, compile and measure as before this change, for the side-by-side ratio."""
    import torch

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.deploy.measure import measure_local
    from cosearch.compile.codegen import compile_with_database

    torch.set_num_threads(threads or 1)
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), io.BytesIO(), input_names=["input"], output_names=["output"],
                          opset_version=17, do_constant_folding=True, dynamo=False)
    export_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ex = compile_with_database(imported.mod, target, dbmod.open_database(db), kernel_cache=None)
    compile_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    lat = measure_local(ex, imported.inputs, threads=threads, config=mcfg).unwrap()
    measure_s = time.perf_counter() - t2
    return {"baseline_export_s": export_s, "baseline_compile_s": compile_s, "baseline_measure_s": measure_s,
            "baseline_latency_ms": lat.median_ms}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="nb201", choices=["nb201", "mbv2"])
    ap.add_argument("--archs", type=int, default=4, help="architectures sampled (seeded)")
    ap.add_argument("--trials-per-iter", type=int, default=8)
    ap.add_argument("--stock-trials", type=int, default=32, help="trials for the stock-vs-cosearch comparison (0: skip)")
    ap.add_argument("--target", default="host")
    ap.add_argument("--repeat", type=int, default=30, help="latency timings of the baseline measurement")
    ap.add_argument("--no-baseline", dest="baseline", action="store_false",
                    help="skip the side-by-side old-way stages in the warm pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.frontend import extract_tasks, from_torch
    from cosearch.compile.deploy.measure import MeasureConfig, measure_local, resolved_threads
    from cosearch.compile.target import load_target
    from cosearch.compile.deploy.measure import SEARCH_MEASURE
    from cosearch.compile.codegen import KERNEL_CACHE
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile
    from cosearch.space import create_space

    target = load_target(args.target)
    threads = resolved_threads(target)
    torch.set_num_threads(threads or 1)
    rng = np.random.default_rng(args.seed)
    settings = {"resolution": 64} if args.space == "mbv2" else {}
    space = create_space(args.space, **settings)
    archs = []
    while len(archs) < args.archs:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    config = {**vars(args), "target": target.to_dict(), "archs_sampled": archs}
    extra: dict = {}

    if args.stock_trials > 0:
        space_name, arch, st = MODELS["mbv2-small"]
        sp = create_space(space_name, **st)
        net = sp.build(arch, seed=args.seed).eval()
        imported = from_torch(net, (torch.randn(*sp.input_shape(arch, 1)),))
        stock = stock_seconds_per_trial(imported, target, args.stock_trials, args.seed)
        with tempfile.TemporaryDirectory(prefix="cosearch-fast-") as db:
            res = tune_and_compile(imported, target, database_dir=Path(db),
                                   config=TuneConfig(trials=args.stock_trials, seed=args.seed, patience=None,
                                                     trials_per_iter=16, fit_batch=False))  # stock's batches
        fast = {"trials": res.trials_run, "seconds": res.seconds.get("tune", 0.0),
                "s_per_trial": res.seconds.get("tune", 0.0) / max(res.trials_run, 1)}
        extra["seconds_per_trial"] = {"model": "mbv2-small", "stock": stock, "cosearch": fast,
                                      "speedup": stock["s_per_trial"] / max(fast["s_per_trial"], 1e-9)}
        print(f"s/trial  stock {stock['s_per_trial']:.3f}  cosearch {fast['s_per_trial']:.3f}  "
              f"speedup x{extra['seconds_per_trial']['speedup']:.1f}", flush=True)

    rows: list[dict] = []
    mcfg = MeasureConfig(repeat=args.repeat, seed=args.seed)
    fast_cfg = dataclasses.replace(SEARCH_MEASURE, seed=args.seed)
    KERNEL_CACHE.clear()
    with tempfile.TemporaryDirectory(prefix="cosearch-loopdb-") as db:
        db = Path(db)
        for phase in ("cold", "warm"):
            for i, arch in enumerate(archs):
                t0 = time.perf_counter()
                net = space.build(arch, seed=args.seed).eval()
                build_s = time.perf_counter() - t0
                x = torch.randn(*space.input_shape(arch, 1))
                imported = from_torch(net, (x,))
                if phase == "cold":  # give every new task one batch
                    tasks = extract_tasks(imported, target)
                    d = dbmod.open_database(db)
                    new = sum(not d.has_workload(t.dispatched[0]) for t in tasks)
                    trials = max(new, 1) * args.trials_per_iter
                else:
                    trials = 1
                t1 = time.perf_counter()
                res = tune_and_compile(imported, target, database_dir=db,
                                       config=TuneConfig(trials=trials, trials_per_iter=args.trials_per_iter,
                                                         seed=args.seed, patience=None))
                tc_s = time.perf_counter() - t1
                t2 = time.perf_counter()
                lat = measure_local(res.executable, imported.inputs, threads=threads, config=fast_cfg).unwrap()
                measure_s = time.perf_counter() - t2
                src = [t.source for t in res.tasks]
                r = {"phase": phase, "arch": i, "tasks": len(src), "db": src.count("db"), "tuned": src.count("tuned"),
                     "untuned": src.count("untuned"), "trials": res.trials_run, "build_s": build_s,
                     "export_s": imported.seconds.get("export"), "import_s": imported.seconds.get("import"),
                     "lower_s": imported.seconds.get("lower"), "extract_s": res.seconds.get("extract"),
                     "tune_s": res.seconds.get("tune", 0.0), "compile_s": res.seconds.get("compile"),
                     "measure_s": measure_s, "latency_ms": lat.median_ms,
                     "latency_spread": (lat.p90_ms - lat.p10_ms) / lat.median_ms}
                r["s_per_trial"] = r["tune_s"] / r["trials"] if r["trials"] else None
                r["total_s"] = build_s + sum(imported.seconds.values()) + tc_s + measure_s
                if phase == "warm" and args.baseline:
                    # the same stages the way they ran before (side by side, same load):
                    # export with torch at the target's threads, plain tvm.compile,
                    # a fresh VM per executable and the full-length measurement
                    r.update(_baseline(net, x, imported, target, db, threads, mcfg))
                    r["baseline_total_s"] = (build_s + r["baseline_export_s"] + r["import_s"] + r["lower_s"]
                                             + r["extract_s"] + r["baseline_compile_s"] + r["baseline_measure_s"])
                rows.append(r)
                print(f"  {phase} arch {i}: tasks {r['tasks']} (db {r['db']}, tuned {r['tuned']}), "
                      f"total {r['total_s']:.2f} s" + (f" (baseline {r['baseline_total_s']:.2f} s)"
                                                      if "baseline_total_s" in r else ""), flush=True)

    warm = [r for r in rows if r["phase"] == "warm"]
    cold = [r for r in rows if r["phase"] == "cold" and r["trials"]]
    summary = {
        "warm_total_s_median": float(np.median([r["total_s"] for r in warm])),
        "warm_stage_s_median": {k: float(np.median([r[k] or 0.0 for r in warm]))
                                for k in ("build_s", "export_s", "import_s", "lower_s", "extract_s", "compile_s", "measure_s")},
        "cold_s_per_trial": (sum(r["tune_s"] for r in cold) / sum(r["trials"] for r in cold)) if cold else None,
        "kernel_cache": {"kernels": len(KERNEL_CACHE), "hits": KERNEL_CACHE.hits, "misses": KERNEL_CACHE.misses},
        "search_measure": dataclasses.asdict(fast_cfg),
    }
    if warm and "baseline_total_s" in warm[0]:
        base = {k: float(np.median([r["baseline_" + k] for r in warm]))
                for k in ("export_s", "compile_s", "measure_s", "total_s")}
        summary["warm_baseline_s_median"] = base
        summary["warm_speedup_median"] = float(np.median([r["baseline_total_s"] / r["total_s"] for r in warm]))
        summary["warm_stage_speedup_median"] = {
            k: float(np.median([r["baseline_" + k] / max(r[k], 1e-9) for r in warm]))
            for k in ("export_s", "compile_s", "measure_s")}
        summary["latency_search_vs_baseline_median"] = float(
            np.median([r["latency_ms"] / r["baseline_latency_ms"] for r in warm]))
    path = write_results("loop_cost", config, rows, args.out, summary=summary, **extra)
    print()
    print_table(rows, ["phase", "arch", "tasks", "db", "tuned", "trials", "s_per_trial", "export_s", "import_s",
                       "lower_s", "extract_s", "compile_s", "measure_s", "total_s"])
    print(f"\nwarm (all tasks in db) per architecture: median {summary['warm_total_s_median']:.2f} s; "
          f"stages {', '.join(f'{k} {v:.3f}' for k, v in summary['warm_stage_s_median'].items())}")
    if "warm_speedup_median" in summary:
        print(f"baseline (old way, same run): {', '.join(f'{k} {v:.3f}' for k, v in summary['warm_baseline_s_median'].items())}; "
              f"speedup x{summary['warm_speedup_median']:.1f}")
    if summary["cold_s_per_trial"] is not None:
        print(f"cold tuning: {summary['cold_s_per_trial']:.3f} s/trial")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
