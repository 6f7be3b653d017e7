"""End-to-end latency at batch 1 on real graphs, side by side in one interleaved run:
ONNX Runtime, PyTorch (eager, torch.compile) where a faithful torch model exists,
and TVM tuned at increasing budgets -- incremental, into one database per network
(budget 2 continues budget 1). Per TVM row: ratio to ONNX Runtime, GFLOP/s,
tuning seconds, the database's kernel sum and the fitted end-to-end prediction
(``bench.latency_model``) with their errors vs the measured median.

Networks: the ONNX model-zoo graphs of the ``onnx`` package (SqueezeNet,
ShuffleNet, ResNet-50, Inception v1; 224x224, seeded random weights) and the
benches' mbv2-small and NB201 nets. PyTorch for the model-zoo graphs is n/a:
they exist only as ONNX, and converting them (onnx2torch) needs torchvision,
whose ops do not load against our torch build -- no cheap faithful way.

Budgets in trials tune with the engine defaults (``TuneConfig()``); budgets in time (``2m,10m``)
with ``TuneConfig.long`` (what ``cosearch tune --time`` runs). ``--variants`` tunes each network
once per named setting (``VARIANTS``; one database each) and times them all in the same
interleaved run, e.g. ``--budgets 5m --variants defaults,long``: the cheap defaults against
the long settings on the same clock.
Every TVM measurement is recorded as a latency sample in its network's database;
the prediction for a network is fitted on the *other* networks' samples of this
run (leave one network out), plus ``--samples`` files from earlier runs.

    python bench/latency.py --quick            # nb201 + squeezenet, 2 small budgets (a few minutes)
    python bench/latency.py                    # all six networks, budgets 64,160,320 (<= 45 min)

Writes bench/results/latency_real.json (bench/results/latency.json holds the
earlier run on the two small nets, "before").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LIGHT_MODELS, MODELS, load_net, onnx_flops, interleaved, ort_session, print_table, write_results  # noqa: E402

ALL = list(LIGHT_MODELS) + list(MODELS)
QUICK = {"nets": "nb201,squeezenet", "budgets": "16,32", "repeat": 12, "rounds": 3}


def _variants():
    """Named tuning settings for ``--variants``: budget (trials, or seconds when timed), seed -> TuneConfig."""
    from cosearch.compile.tuning.config import TuneConfig

    def clock(make):
        return lambda budget, seed, timed: make(budget, seed) if timed else TuneConfig(trials=int(budget), seed=seed)

    return {
        # the engine defaults (cheap search: population 64, 1 genetic iteration, random cost model); on a
        # clock without the stall rule, so every variant spends the same time
        "defaults": lambda budget, seed, timed: (TuneConfig(trials=10**6, max_seconds=budget, seed=seed, patience=None)
                                                 if timed else TuneConfig(trials=int(budget), seed=seed)),
        # what `cosearch tune --time` runs: the wide search only with >= 20 s of clock per task
        "time": clock(lambda b, seed: TuneConfig.long(b, seed=seed)),
        # the wide search (population 256, 2 genetic iterations, XGBoost) whatever the clock per task, on
        # kernels costing >= 100 us (what "long" meant in latency_real_5m.json)
        "long": clock(lambda b, seed: TuneConfig.long(b, seed=seed, wide_min_s_per_task=None)),
        "long-wide": clock(lambda b, seed: TuneConfig.long(b, seed=seed, wide_min_s_per_task=None,
                                                           wide_min_us=None)),  # every task wide
        # "long" on convs blocked at import (layout "auto": NCHW8c on ImageNet-size graphs);
        # skipped where "auto" leaves the network's layout unchanged (then it is "long")
        "long-auto": clock(lambda b, seed: TuneConfig.long(b, seed=seed, wide_min_s_per_task=None)),
    }


#: a variant's import layout, when not --layout's
VARIANT_LAYOUT = {"long-auto": "auto"}


def _no_grad(net, x):
    import torch

    with torch.inference_mode():
        return net(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", "--models", dest="nets", default=",".join(ALL), help=f"comma-separated, from {', '.join(ALL)}")
    ap.add_argument("--budgets", default="64,160,320",
                    help="cumulative TVM budgets, each continuing the previous one in the same database: trials "
                         "(64,160,320: TuneConfig() defaults) or durations (2m,10m: TuneConfig.long, the clock)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK}")
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds over all engines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-compile", action="store_true", help="also torch.compile (space nets; ~30 s each)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated tuning settings, each its own database, timed side by side: "
                         "defaults, time, long, long-wide, long-auto (default: long for durations, defaults for trials)")
    ap.add_argument("--layout", default=None, help="conv layout at import (frontend default when omitted)")
    ap.add_argument("--samples", default="", help="comma-separated latency_samples.jsonl files from earlier runs, "
                                                  "added to every fit")
    ap.add_argument("--work-dir", default=None, help="databases, one per network (default: a temporary folder)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    nets = [n for n in args.nets.split(",") if n]
    bad = [n for n in nets if n not in ALL]
    labels = [b.strip() for b in args.budgets.split(",") if b.strip()]
    timed = any(not b.isdigit() for b in labels)
    from cosearch.errors import CosearchError

    try:
        if timed:
            from cosearch.cli_args import duration_s

            budgets = [duration_s("budget", b) for b in labels]
        else:
            budgets = [int(b) for b in labels]
    except (ValueError, CosearchError):  # reported below
        budgets = []
    if bad or not budgets or any(b <= 0 for b in budgets) or budgets != sorted(set(budgets)):
        print(f"error: networks must be from {', '.join(ALL)} (got {args.nets!r}) and budgets increasing positive "
              f"trial counts or durations such as 2m,10m (got {args.budgets!r})", file=sys.stderr)
        return 2
    known = _variants()
    variants = [v for v in (args.variants or "").split(",") if v]
    if any(v not in known for v in variants) or len(set(variants)) != len(variants):
        print(f"error: --variants must be distinct names from {', '.join(known)}, got {args.variants!r}", file=sys.stderr)
        return 2

    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch
    import tvm

    from cosearch.compile import engine
    from bench import latency_model as lm
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    torch.set_num_threads(args.threads)
    target = load_target(args.target)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="cosearch-latency-"))
    t_all = time.perf_counter()
    rows: list[dict] = []
    measured: list[tuple[str, dict, object, Path, object, dict]] = []  # (net, row, plan, db, features, sample)
    for net_name in nets:
        model, x, desc = load_net(net_name, seed=args.seed)
        flops = onnx_flops(model)
        engines: dict[str, tuple] = {}  # name -> (callable, extra row fields)
        sess = ort_session(model, args.threads)
        iname = sess.get_inputs()[0].name
        ref = sess.run(None, {iname: x})[0]
        engines["onnxruntime"] = (lambda s=sess, n=iname: s.run(None, {n: x}), {})
        net = desc.pop("torch_module", None)
        if net is not None:
            xt_torch = torch.from_numpy(x)
            engines["torch-eager"] = (lambda: _no_grad(net, xt_torch), {})
            if args.torch_compile:
                t0 = time.perf_counter()
                cnet = torch.compile(net)
                _no_grad(cnet, xt_torch)
                engines["torch.compile"] = (lambda: _no_grad(cnet, xt_torch), {"compile_s": time.perf_counter() - t0})
        imported = from_onnx(model, **({"layout": args.layout} if args.layout else {}))
        plan = engine.plan(imported, target)
        dev = tvm.cpu()
        xt = tvm.runtime.tensor(x, dev)
        for variant in variants or [None]:
            v_imported, v_plan = imported, plan
            if variant in VARIANT_LAYOUT:
                v_imported = from_onnx(model, layout=VARIANT_LAYOUT[variant])
                if v_imported.layout == imported.layout:
                    print(f"  {net_name}: {variant} skipped (layout {VARIANT_LAYOUT[variant]} is {imported.layout} here)")
                    continue
                v_plan = engine.plan(v_imported, target)
            db = work / net_name / variant if variant else work / net_name
            db.mkdir(parents=True, exist_ok=True)
            done = 0
            tune_total = 0.0
            for label, budget in zip(labels, budgets):
                if variant:
                    cfg = known[variant](budget - done, args.seed, timed)
                else:
                    cfg = (TuneConfig.long(budget - done, seed=args.seed) if timed
                           else TuneConfig(trials=int(budget - done), seed=args.seed))
                t0 = time.perf_counter()
                res = tune_and_compile(v_imported, target, database_dir=db, config=cfg)
                tune_s = time.perf_counter() - t0
                tune_total += tune_s
                done = budget
                vm = tvm.relax.VirtualMachine(res.executable, dev)
                out = vm["main"](xt)
                out = out if hasattr(out, "numpy") else out[0]
                err = float(np.abs(out.numpy() - ref).max() / max(1e-12, float(np.abs(ref).max())))
                feats = lm.plan_features(v_plan, db)  # the database as this executable was compiled from it
                src = [t.source for t in res.tasks]
                name = f"tvm-{variant}-{label}" if variant else f"tvm-{label}"
                engines[name] = ((lambda v=vm: v["main"](xt)), {
                    "budget": label, "variant": variant, "trials": res.trials_run, "tune_s": tune_s,
                    "tune_s_total": tune_total, "tasks": len(src), "tasks_from_db": src.count("tuned") + src.count("db"),
                    "tasks_fallback": src.count("fallback"), "tasks_untuned": src.count("untuned"),
                    "rel_err_vs_ort": err, "kernel_sum_ms": feats.kernel_ms, "untuned_est_ms": feats.untuned_ms,
                    "layout": v_imported.layout, "_features": feats, "_db": db, "_plan": v_plan})
                print(f"  {net_name}: {variant or 'tuned'} to {label} ({res.trials_run} trials, {tune_s:.0f} s)", flush=True)
        samples = interleaved({name: fn for name, (fn, _) in engines.items()}, rounds=args.rounds,
                              repeat=max(1, args.repeat // max(1, args.rounds)), min_ms=1.0)
        ort_med = float(np.median(samples["onnxruntime"]))
        for name, (_fn, extra) in engines.items():
            p10, med, p90 = np.percentile(samples[name], [10, 50, 90])
            row = {"net": net_name, "engine": name, "median_ms": float(med), "p10_ms": float(p10), "p90_ms": float(p90),
                   "n": len(samples[name]), "x_vs_ort": float(med) / ort_med, "gflops": flops / (med * 1e-3) / 1e9,
                   "gflop": flops / 1e9, **{k: v for k, v in extra.items() if not k.startswith("_")}}
            rows.append(row)
            if "_features" in extra:
                sample = lm.record_measurement(extra["_db"], extra["_plan"], float(med), network=net_name, features=extra["_features"],
                                               note=f"bench/latency.py budget={extra['budget']}")
                row["kernel_sum_err"] = extra["_features"].kernel_ms / float(med) - 1.0
                measured.append((net_name, row, extra["_plan"], extra["_db"], extra["_features"], sample))
            print(f"  {net_name:12s} {name:20s} {med:9.3f} ms  {float(med) / ort_med:6.2f}x ORT", flush=True)
        del engines

    # the prediction per network: fitted on every other network's samples (+ earlier runs' files)
    extra_samples = []
    for f in [s for s in args.samples.split(",") if s]:
        extra_samples += lm.read_samples(f)
    all_samples = [m[5] for m in measured]
    for net_name, row, _plan, _db, feats, _s in measured:
        fit = lm.fit_latency([s for s in all_samples + extra_samples if s.get("network") != net_name])
        pred = fit.predict(feats)
        row.update({"predicted_ms": pred, "predicted_err": pred / row["median_ms"] - 1.0, "fit_kind": fit.kind})
    fit_all = lm.fit_latency(all_samples + extra_samples)
    lono = lm.leave_one_network_out(all_samples + extra_samples) if len({s["network"] for s in all_samples}) > 1 else {}
    config = {"nets": nets, "budgets": budgets, "target": target.to_dict(), "threads": args.threads,
              "repeat": args.repeat, "rounds": args.rounds, "seed": args.seed, "quick": args.quick,
              "layout": args.layout, "variants": variants or None, "tune_config": ("TuneConfig.long, max_seconds = budget increments" if timed
                                            else "TuneConfig() defaults, trials = budget increments"),
              "work_dir": str(work), "torch_for_zoo_graphs": "n/a: ONNX-only graphs; onnx2torch needs torchvision"}
    path = write_results("latency_real", config, rows, args.out, wall_s=time.perf_counter() - t_all,
                         fit_all=fit_all.to_dict(), leave_one_network_out=lono, samples=all_samples)
    print()
    print_table(rows, ["net", "engine", "median_ms", "x_vs_ort", "gflops", "trials", "tune_s", "tasks_from_db",
                       "tasks_fallback", "kernel_sum_ms", "kernel_sum_err", "predicted_ms", "predicted_err"])
    if lono:
        print("\nleave one network out (fit on the others):")
        for n, v in lono.items():
            print(f"  {n:12s} n={v['n']}  mean |err| {v['mean_abs_rel_err']:.1%}  max {v['max_abs_rel_err']:.1%}  "
                  f"(raw kernel sum {v['raw_mean_abs_rel_err']:.1%})")
    print(f"\nwall {time.perf_counter() - t_all:.0f} s; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
