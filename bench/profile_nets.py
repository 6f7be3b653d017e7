"""Where the time goes: per network, tune a modest budget into a fresh database through
the engine, compile, and break the end-to-end time down.

Per network: end-to-end VM median; the kernel sum the database predicts; each
kernel's time inside the running module (Relax VM instrument hooks), the same call
repeated on its own (hot cache, what the tuner measures) and once after a cache
flush (cold); the time outside kernels (VM builtins: allocation, shape checks,
dispatch); per dominant kernel its GFLOP/s against this CPU's measured FP32 peak
and ONNX Runtime's per-node time (``SessionOptions.enable_profiling``) by op
category. Every network's (plan, database, e2e) also becomes a latency sample in
its database (``bench.latency_model.record_measurement``).

    python bench/profile_nets.py --quick                   # 2 small nets, few trials
    python bench/profile_nets.py                           # all six, --trials 64
    python bench/profile_nets.py --nets squeezenet --trials 128
    python bench/profile_nets.py --nets front-hi --trials 0 --keep --work-dir W   # W/front-hi: a database as it is

Writes bench/results/profile_nets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LIGHT_MODELS, SPACE_NETS, load_net, matmul_model, onnx_flops, ort_session, print_table, time_calls, write_results  # noqa: E402

ALL = list(LIGHT_MODELS) + list(SPACE_NETS)


def category(name: str) -> str:
    n = name.lower()
    for key, cat in (("conv", "conv"), ("pool", "pool"), ("concat", "concat"), ("matmul", "gemm"), ("dense", "gemm"),
                     ("gemm", "gemm"), ("softmax", "softmax"), ("transpose", "layout"), ("reshape", "layout"),
                     ("flatten", "layout"), ("mean", "pool")):
        if key in n:
            return cat
    return "other"


def theoretical_peak() -> dict:
    """lscpu-based FP32 peak: cores x FMA width. AVX-512 on Zen 4 is double-pumped, so
    2 x 256-bit FMA pipes (32 FLOP/cycle/core) on every AVX2/AVX-512 x86 core here."""
    import subprocess

    txt = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in txt.splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = info.get("Flags", "").split()
    mhz = None
    for key in ("CPU max MHz", "CPU MHz"):
        if key in info:
            mhz = float(info[key])
            break
    if mhz is None and "BogoMIPS" in info:
        mhz = float(info["BogoMIPS"]) / 2  # BogoMIPS = 2 x TSC MHz on x86
    cores = os.cpu_count() or 1
    per_cycle = 32 if "fma" in flags and "avx2" in flags else 16 if "avx" in flags else 8
    return {"model": info.get("Model name"), "family": info.get("CPU family"), "model_no": info.get("Model"),
            "mhz": mhz, "mhz_source": "max/current MHz" if "CPU max MHz" in info or "CPU MHz" in info else "BogoMIPS/2",
            "flop_per_cycle_core": per_cycle, "avx512f": "avx512f" in flags, "cores": cores,
            "gflops": (mhz or 0) * 1e-3 * per_cycle * cores}


def measured_peak(threads: int, n: int = 2048) -> dict:
    """A large FP32 GEMM on ``threads`` threads: ONNX Runtime (MLAS) and PyTorch."""
    import numpy as np
    import torch

    sess = ort_session(matmul_model(n), threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    flop = 2.0 * n ** 3
    t_ort = time_calls(lambda: sess.run(None, {"a": a, "b": b}), repeat=10, warmup=2)["median"]
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    t_torch = time_calls(lambda: torch.mm(ta, tb), repeat=10, warmup=2)["median"]
    return {"n": n, "threads": threads, "ort_gflops": flop / t_ort / 1e6, "torch_gflops": flop / t_torch / 1e6}


def ort_profile(model, x, threads: int, runs: int, tmp: Path) -> dict:
    """Per-node kernel time from ONNX Runtime's own profiler, per inference (mean over runs)."""
    sess = ort_session(model, threads, profile_prefix=str(tmp / "ort"))
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    path = None
    for _ in range(runs):
        sess.run(None, {name: x})
    path = sess.end_profiling()
    events = json.loads(Path(path).read_text())
    by_cat: dict[str, float] = {}
    by_op: dict[str, float] = {}
    total_node = 0.0
    model_runs = [e["dur"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        us = float(e["dur"])
        by_op[op] = by_op.get(op, 0.0) + us
        by_cat[category(op)] = by_cat.get(category(op), 0.0) + us
        total_node += us
    n = runs + 3  # the profile covers the warm-up runs too
    return {"node_ms": total_node / n / 1e3, "by_op_ms": {k: v / n / 1e3 for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "by_category_ms": {k: v / n / 1e3 for k, v in by_cat.items()},
            "model_run_ms_median": (sorted(model_runs)[len(model_runs) // 2] / 1e3) if model_runs else None}


def profile_one(name: str, args, target, peak_gflops: float, work: Path) -> dict:
    import numpy as np

    from cosearch.compile import engine
    from bench import latency_model as lm
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.storage.database import open_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    model, x, desc = load_net(name, seed=args.seed)
    flops = onnx_flops(model)
    imported = from_onnx(model, **({"layout": args.layout} if args.layout else {}))
    plan = engine.plan(imported, target)
    db = work / name
    if db.exists() and not args.keep:
        shutil.rmtree(db)
    db.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.trials > 0:
        res = tune_and_compile(imported, target, database_dir=db, config=TuneConfig(trials=args.trials, seed=args.seed))
        exe, trials_run = res.executable, res.trials_run
    else:  # --trials 0: the database as it is (e.g. a copy of bench/latency.py's at-10m/ with --keep)
        exe, trials_run = engine.compile_plan(plan, db), 0
    tune_s = time.perf_counter() - t0
    # the same schedules, compiled without the kernel cache so every kernel keeps its task's name
    choices: list = []
    ex_named = compile_with_database(imported.mod, target, open_database(db), kernel_cache=None, report=choices)
    prof = lm.profile_vm(ex_named, [x], runs=args.runs, hot_repeat=args.hot_repeat)
    # the engine's own executable and ONNX Runtime, interleaved
    import tvm

    dev = tvm.cpu()
    xt = tvm.runtime.tensor(x, dev)
    vm = tvm.relax.VirtualMachine(exe, dev)
    sess = ort_session(model, args.threads)
    iname = sess.get_inputs()[0].name
    ref = sess.run(None, {iname: x})[0]
    out = vm["main"](xt)
    out = out if hasattr(out, "numpy") else out[0]
    err = float(np.abs(out.numpy() - ref).max() / max(1e-12, float(np.abs(ref).max())))
    s_tvm, s_ort = [], []
    for _ in range(args.rounds):
        s_tvm += time_calls(lambda: vm["main"](xt), repeat=max(1, args.repeat // args.rounds), warmup=1)["samples"]
        s_ort += time_calls(lambda: sess.run(None, {iname: x}), repeat=max(1, args.repeat // args.rounds), warmup=1)["samples"]
    e2e = float(np.median(s_tvm))
    ort_ms = float(np.median(s_ort))
    with tempfile.TemporaryDirectory(prefix="ortprof-") as tmp:
        ortp = ort_profile(model, x, args.threads, args.runs, Path(tmp))

    st = engine.status(plan, db)
    by_wl = {t.workload: t for t in plan.tasks}
    by_name = {}  # kernel symbol -> its task (kernels of one task share its workload key)
    for gv, f in imported.mod.functions.items():
        if isinstance(f, tvm.tirx.PrimFunc):
            try:
                wl = engine.workload_key(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}))
            except Exception:  # noqa: BLE001 - a kernel without a key stays unmapped
                continue
            if wl in by_wl:
                by_name[gv.name_hint] = by_wl[wl]
    kernels = []
    for c in prof.calls:
        if not c.kernel:
            continue
        t = by_name.get(c.symbol)
        db_us = st[t.workload].best_us if t is not None and t.tunable and t.workload in st else None
        f = t.features.flops if t is not None else 0.0
        src = next((ch.source for ch in choices if ch.name == c.symbol), None)
        kernels.append({
            "kernel": c.symbol, "category": category(c.symbol), "source": src, "calls": c.calls,
            "in_module_ms": c.ms, "hot_ms": c.hot_ms, "cold_ms": c.cold_ms, "idle_ms": c.idle_ms,
            "db_ms": db_us * c.calls / 1e3 if db_us is not None else None,
            "gflops_in_module": (f * c.calls / (c.ms * 1e-3) / 1e9) if f and c.ms else None,
            "peak_frac": (f * c.calls / (c.ms * 1e-3) / 1e9 / peak_gflops) if f and c.ms and peak_gflops else None,
            "mflop": f / 1e6, "shapes": c.shapes})
    pred = engine.predict_latency(plan, db)
    lm.record_measurement(db, plan, e2e, network=name, note=f"profile_nets trials={args.trials}")
    feats = lm.plan_features(plan, db)
    tvm_cat: dict[str, float] = {}
    for k in kernels:
        tvm_cat[k["category"]] = tvm_cat.get(k["category"], 0.0) + k["in_module_ms"]
    sources = [c.source for c in choices]
    builtins = {c.symbol: c.ms for c in prof.calls if not c.kernel}
    row = {
        "net": name, "desc": {k: v for k, v in desc.items() if k != "torch_module"}, "gflop": flops / 1e9,
        "trials": trials_run, "tune_s": tune_s, "tasks": len([t for t in plan.tasks if t.tunable]),
        "kernel_sources": {s: sources.count(s) for s in set(sources)}, "rel_err_vs_ort": err,
        "e2e_ms": e2e, "ort_ms": ort_ms, "x_vs_ort": e2e / ort_ms,
        "e2e_named_ms": prof.e2e_ms, "instrumented_ms": prof.instrumented_ms,
        "db_kernel_sum_ms": pred.known_ms, "db_missing_tasks": len(pred.missing),
        "in_module_kernel_ms": prof.kernel_ms, "hot_isolated_kernel_ms": sum(k["hot_ms"] or 0 for k in kernels),
        "cold_isolated_kernel_ms": sum(k["cold_ms"] or 0 for k in kernels),
        "idle_isolated_kernel_ms": sum(k["idle_ms"] or 0 for k in kernels),
        "builtin_ms": prof.builtin_ms, "builtins": builtins,
        "outside_calls_ms": prof.instrumented_ms - prof.kernel_ms - prof.builtin_ms,
        "untuned_kernel_ms": sum(k["in_module_ms"] for k in kernels if k["source"] != "db"),
        "gflops_e2e": flops / (e2e * 1e-3) / 1e9, "gflops_ort": flops / (ort_ms * 1e-3) / 1e9,
        "tvm_by_category_ms": tvm_cat, "ort": ortp, "features": feats.__dict__,
        "kernels": kernels[: args.top],
    }
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(ALL), help=f"comma-separated, from {', '.join(ALL)}")
    ap.add_argument("--trials", type=int, default=64,
                    help="tuning budget per network (engine defaults otherwise); 0: the database as it is")
    ap.add_argument("--quick", action="store_true", help="squeezenet + nb201, 24 trials, fewer timings")
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10, help="instrumented runs (per-kernel medians)")
    ap.add_argument("--hot-repeat", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--top", type=int, default=12, help="kernels kept per network in the results file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", default=None, help="conv layout at import (frontend default when omitted)")
    ap.add_argument("--work-dir", default=None, help="databases (one per network); default a temporary folder")
    ap.add_argument("--keep", action="store_true", help="continue the databases in --work-dir instead of starting fresh")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.nets, args.trials, args.runs, args.hot_repeat, args.repeat = "squeezenet,nb201", 24, 4, 5, 12
    nets = [n for n in args.nets.split(",") if n]
    bad = [n for n in nets if n not in ALL]
    if bad:
        print(f"error: unknown network(s) {', '.join(bad)}; known: {', '.join(ALL)}", file=sys.stderr)
        return 2
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    theo = theoretical_peak()
    peak = measured_peak(args.threads)
    print(f"peak: theoretical {theo['gflops']:.1f} GFLOP/s ({theo['mhz_source']}), measured sgemm ORT "
          f"{peak['ort_gflops']:.1f}, torch {peak['torch_gflops']:.1f}", flush=True)
    peak_g = max(peak["ort_gflops"], peak["torch_gflops"])
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="cosearch-profile-"))
    rows = []
    config = {"nets": nets, "trials": args.trials, "target": target.to_dict(), "threads": args.threads,
              "runs": args.runs, "hot_repeat": args.hot_repeat, "repeat": args.repeat, "seed": args.seed,
              "quick": args.quick, "layout": args.layout, "work_dir": str(work)}
    for n in nets:
        t0 = time.perf_counter()
        row = profile_one(n, args, target, peak_g, work)
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        path = write_results("profile_nets", config, rows, args.out, peak={"theoretical": theo, "measured": peak},
                             machine_key=target.machine_key())
        print(f"  {n:12s} e2e {row['e2e_ms']:.3f} ms  ORT {row['ort_ms']:.3f}  db sum {row['db_kernel_sum_ms']:.3f}  "
              f"in-module kernels {row['in_module_kernel_ms']:.3f}  builtins {row['builtin_ms']:.3f}  "
              f"({row['wall_s']:.0f} s)", flush=True)
    print()
    print_table(rows, ["net", "trials", "e2e_ms", "ort_ms", "x_vs_ort", "db_kernel_sum_ms", "hot_isolated_kernel_ms",
                       "in_module_kernel_ms", "idle_isolated_kernel_ms", "cold_isolated_kernel_ms", "builtin_ms", "untuned_kernel_ms", "tune_s"])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
