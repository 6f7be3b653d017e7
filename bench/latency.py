"""End-to-end latency at batch 1, side by side in one run:
PyTorch eager, torch.compile, ONNX Runtime, TVM untuned, TVM tuned at several
budgets. Reports ratios to ONNX Runtime, GFLOP/s (2 x MACs / latency) and the
tuning cost of each budget.

    python bench/latency.py                       # both models, budgets 64,200,400
    python bench/latency.py --models nb201 --budgets 32 --repeat 20   # quick

Writes bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, print_table, time_calls, write_results  # noqa: E402


def _no_grad(net, x):
    import torch

    with torch.inference_mode():
        return net(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--budgets", default="64,200,400", help="TVM tuning budgets (trials), each into a fresh database")
    ap.add_argument("--trials-per-iter", type=int, default=8, help="candidates per measured batch")
    ap.add_argument("--fit-batch", default="on", choices=("on", "off", "both"),
                    help="TuneConfig.fit_batch (shrink batches so every task gets one); 'both' tunes each budget "
                         "twice, side by side (engines tvm-tuned-B and tvm-tuned-B-nofit)")
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds over all engines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import numpy as np
    import onnxruntime as ort
    import torch

    from cosearch.compile.frontend import from_onnx, torch_to_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tune import TuneConfig, tune_and_compile
    from cosearch.estimate.signals import count_macs
    from cosearch.space import create_space

    torch.set_num_threads(args.threads)
    target = load_target(args.target)
    budgets = [int(b) for b in args.budgets.split(",") if b]
    config = {"models": {m: MODELS[m] for m in args.models.split(",")}, "budgets": budgets, "target": target.to_dict(),
              "trials_per_iter": args.trials_per_iter, "fit_batch": args.fit_batch,
              "threads": args.threads, "repeat": args.repeat, "seed": args.seed}
    rows: list[dict] = []
    for model_name in args.models.split(","):
        space_name, arch, settings = MODELS[model_name]
        space = create_space(space_name, **settings)
        net = space.build(arch, seed=args.seed).eval()
        shape = space.input_shape(arch, 1)
        x = torch.from_numpy(np.random.default_rng(args.seed).standard_normal(shape).astype("float32"))
        xn = x.numpy()
        flops = 2.0 * count_macs(net, shape)
        # Build every engine first, time them all afterwards in interleaved rounds:
        # the machines are shared, and timing ONNX Runtime minutes before TVM (after
        # tuning) compared different load levels, not engines.
        engines: dict[str, tuple] = {}  # name -> (callable, extra row fields)
        with torch.inference_mode():
            ref = net(x).numpy()
        engines["torch-eager"] = (lambda: _no_grad(net, x), {})
        if not args.no_torch_compile:
            t0 = time.perf_counter()
            cnet = torch.compile(net)
            _no_grad(cnet, x)
            engines["torch.compile"] = (lambda: _no_grad(cnet, x), {"compile_s": time.perf_counter() - t0})

        onnx_model = torch_to_onnx(net, (x,))
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(onnx_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        engines["onnxruntime"] = (lambda: sess.run(None, {iname: xn}), {})

        import tvm

        imported = from_onnx(onnx_model)
        dev = tvm.cpu()
        xt = tvm.runtime.tensor(xn, dev)

        def tvm_engine(executable):
            vm = tvm.relax.VirtualMachine(executable, dev)
            out = vm["main"](xt)
            out = out[0] if not hasattr(out, "numpy") else out
            err = float(np.abs(out.numpy() - ref).max())
            return (lambda: vm["main"](xt)), err

        t0 = time.perf_counter()
        ex = tvm.compile(imported.mod, target=target.tvm_target())
        fn, err = tvm_engine(ex)
        engines["tvm-untuned"] = (fn, {"compile_s": time.perf_counter() - t0, "max_abs_err": err})

        fits = {"on": [True], "off": [False], "both": [True, False]}[args.fit_batch]
        for budget in budgets:
            for fit in fits:
                with tempfile.TemporaryDirectory(prefix="cosearch-bench-db-") as db:
                    t0 = time.perf_counter()
                    res = tune_and_compile(imported, target, database_dir=Path(db),
                                           config=TuneConfig(trials=budget, trials_per_iter=args.trials_per_iter,
                                                             seed=args.seed, patience=None, fit_batch=fit))
                    tune_s = time.perf_counter() - t0
                fn, err = tvm_engine(res.executable)
                src = [t.source for t in res.tasks]
                name = f"tvm-tuned-{budget}" + ("" if fit or args.fit_batch == "off" else "-nofit")
                engines[name] = (fn, {
                    "trials": res.trials_run, "batch": res.trials_per_iter, "tune_s": tune_s,
                    "s_per_trial": tune_s / max(res.trials_run, 1),
                    "tasks": len(src), "tasks_tuned": src.count("tuned"), "max_abs_err": err,
                    "kernel_sum_ms_at_tuning": sum((t.best_us or 0.0) * t.weight for t in res.tasks) / 1e3})

        samples: dict[str, list[float]] = {name: [] for name in engines}
        rounds = max(1, args.rounds)
        for _ in range(rounds):  # interleaved: every engine sees the same load levels
            for name, (fn, _extra) in engines.items():
                samples[name] += time_calls(fn, repeat=max(1, args.repeat // rounds), warmup=2)["samples"]
        for name, (_fn, extra) in engines.items():
            p10, med, p90 = np.percentile(samples[name], [10, 50, 90])
            rows.append({"model": model_name, "engine": name, "median_ms": float(med), "p10_ms": float(p10),
                         "p90_ms": float(p90), "min_ms": float(min(samples[name])), "n": len(samples[name]),
                         "gflops": flops / (med * 1e-3) / 1e9, **extra})
            print(f"  {model_name:10s} {name:22s} {med:.4f} ms", flush=True)

    for model_name in {r["model"] for r in rows}:
        base = next((r for r in rows if r["model"] == model_name and r["engine"] == "onnxruntime"), None)
        for r in rows:
            if r["model"] == model_name and base:
                r["x_vs_ort"] = r["median_ms"] / base["median_ms"]
                r["x_vs_ort_p10"] = r["p10_ms"] / base["p10_ms"]
    path = write_results("latency", config, rows, args.out)
    print()
    print_table(rows, ["model", "engine", "median_ms", "p10_ms", "x_vs_ort", "x_vs_ort_p10", "gflops", "trials",
                       "batch", "tasks_tuned", "tune_s", "s_per_trial"])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
