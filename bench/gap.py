"""The gap to ONNX Runtime on real ImageNet-size graphs, lever by lever, side by side.

For each model (onnx package model-zoo light graphs, seeded random weights,
1x3x224x224, batch 1) and each *variant* (an import layout + ``TuneConfig``
overrides), tune ``--trials`` trials into a fresh database with the same seed,
compile, check the output against ONNX Runtime, then time every variant and
ORT interleaved (one block per engine in turn, ``--repeat`` rounds).

Rows: median ms, x vs ORT, tuning and compile seconds, kernel sources
(tuned / fallback / default), the weighted kernel sum at tuning time, and the
three costliest kernels with their GFLOP/s (vs a nominal FP32 peak: 32
flops/cycle/core for AVX2 FMA x2, 64 with AVX-512, at the CPU's reported MHz).

    python bench/gap.py --models squeezenet --trials 128 \\
        --variants 'nchw:layout=NCHW' 'nchw8c:layout=NCHW8c'

A variant is ``name:key=value,key=value``; ``layout`` is the import layout,
every other key a ``TuneConfig`` field (ints, floats, None, strings).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, ort_session, print_table, randomized_light, write_results  # noqa: E402


def _value(v: str):
    if v == "None":
        return None
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    if v in ("True", "False"):
        return v == "True"
    return v


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    kv = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        kv[k.strip()] = _value(v.strip())
    return name, kv


def space_onnx(spec: str):
    """An ONNX model of a search-space network: ``nb201``, ``mbv2-small`` (bench/common MODELS)
    or SPACE:ARCH, seeded weights."""
    import torch

    from common import MODELS
    from cosearch.compile.frontend import torch_to_onnx
    from cosearch.space import create_space

    key = spec.split(":", 1)[1]
    space_name, arch, opts = MODELS[key] if key in MODELS else (spec.split(":", 1)[0], key, {})
    space = create_space(space_name, **opts)
    torch.manual_seed(0)
    net = space.build(arch, seed=0).eval()
    x = torch.randn(tuple(space.input_shape(arch)), generator=torch.Generator().manual_seed(0))
    return torch_to_onnx(net, (x,))


def nominal_peak_gflops(cores: int) -> float:
    mhz, avx512 = None, False
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz") and mhz is None:
            mhz = float(line.split(":")[1])
        if line.startswith("flags") and " avx512f" in line:
            avx512 = True
    return (64 if avx512 else 32) * (mhz or 0) / 1000 * cores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet")
    ap.add_argument("--variants", nargs="+", default=["nchw:layout=NCHW", "nchw8c:layout=NCHW8c"])
    ap.add_argument("--trials", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15, help="interleaved timing rounds")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import tvm

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig

    target = load_target(args.target)
    variants = [parse_variant(v) for v in args.variants]
    peak = nominal_peak_gflops(args.threads)
    rows = []
    for model_name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if ":" in model_name:  # SPACE:ARCH[;opt=v] -- a search-space network through torch -> ONNX
            model = space_onnx(model_name)
        else:
            model = randomized_light(model_name, seed=0)
        # initializers are not graph inputs (randomized_light; torch_to_onnx), so ORT folds them
        sess = ort_session(model, args.threads)
        iname = sess.get_inputs()[0].name
        shape = [int(d) for d in sess.get_inputs()[0].shape]
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        ref = sess.run(None, {iname: x})[0]
        dev = tvm.cpu()
        xt = tvm.runtime.tensor(x, dev)
        engines = {"onnxruntime": (lambda: sess.run(None, {iname: x}), {"model": model_name, "variant": "onnxruntime"})}
        for vname, kv in variants:
            kv = dict(kv)
            layout = kv.pop("layout", None)
            cfg = TuneConfig(**{"trials": args.trials, "seed": args.seed, **kv})
            t0 = time.perf_counter()
            imported = from_onnx(model, layout=layout)
            import_s = time.perf_counter() - t0
            plan = engine.plan(imported, target)
            with tempfile.TemporaryDirectory(prefix="gap-db-") as db:
                t1 = time.perf_counter()
                out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=cfg.trials, config=cfg)
                tune_s = time.perf_counter() - t1
                choices: list = []
                t2 = time.perf_counter()
                ex = engine.compile_plan(plan, db, report=choices)
                compile_s = time.perf_counter() - t2
                pred = engine.predict_latency(plan, db)
                st = engine.status(plan, db)
            # costliest kernels at tuning time
            agg: dict[str, list] = {}
            for t in plan.tasks:
                if t.tunable and st[t.workload].best_us is not None:
                    a = agg.setdefault(t.workload, [t.name, 0, t.features.flops, st[t.workload].best_us])
                    a[1] += t.weight
            top = sorted(agg.values(), key=lambda a: -a[1] * a[3])[:3]
            vm = tvm.relax.VirtualMachine(ex, dev)
            o = vm["main"](xt)
            o = (o if hasattr(o, "numpy") else o[0]).numpy()
            err = float(np.abs(o - ref).max())
            sources = {}
            for c in choices:
                sources[c.source] = sources.get(c.source, 0) + 1
            info = {
                "model": model_name, "variant": vname, "layout": imported.layout, "config": cfg.to_dict(),
                "tasks": len({t.workload for t in plan.tasks if t.tunable}), "trials_run": out.trials_run,
                "batch": out.batch, "import_s": round(import_s, 2), "tune_s": round(tune_s, 1),
                "compile_s": round(compile_s, 1), "kernel_sum_ms": round(pred.ms, 3), "kernels": sources,
                "max_abs_err": err,
                "top": [{"name": n[:60], "weight": w, "us": round(us, 1), "gflops": round(f / us / 1e3, 1),
                         "pct_peak": round(100 * f / us / 1e3 / peak, 1) if peak else None} for n, w, f, us in top],
            }
            print(f"[{model_name}/{vname}] tuned {out.trials_run} trials in {tune_s:.0f} s, err {err:.2e}, "
                  f"kernel sum {pred.ms:.2f} ms, top {[(d['us'], d['gflops']) for d in info['top']]}", flush=True)
            engines[f"{model_name}/{vname}"] = ((lambda vm=vm: vm["main"](xt)), info)
        samples = interleaved({e: fn for e, (fn, _) in engines.items()}, rounds=args.repeat)
        base = float(np.median(samples["onnxruntime"]))
        for e, (_, info) in engines.items():
            med = float(np.median(samples[e]))
            rows.append({**info, "median_ms": round(med, 3), "p10_ms": round(float(np.percentile(samples[e], 10)), 3),
                         "x_vs_ort": round(med / base, 3)})
    cfg = {**vars(args), "nominal_peak_gflops": peak}
    path = write_results("gap", cfg, rows, args.out)
    print_table(rows, ["model", "variant", "median_ms", "x_vs_ort", "kernel_sum_ms", "tasks", "trials_run", "tune_s",
                       "compile_s", "max_abs_err"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
