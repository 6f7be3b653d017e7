"""Tuning settings side by side: seconds per trial vs the latency they reach.

Each variant is a set of ``TuneConfig`` overrides; every (model, variant, seed)
tunes into a fresh database with the same budget, then all compiled modules are
timed in interleaved rounds (shared machine). Tuning is noisy (measured kernel
times drive the search), so each variant runs with several seeds and the table
reports medians over seeds and ratios to the first variant.

    python bench/tune_settings.py                                   # defaults below
    python bench/tune_settings.py --models nb201 --trials 64 --seeds 0,1 \\
        --variants 'pop64={"population":64};pop16={"population":16}'

Writes bench/results/tune_settings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, print_table, time_calls, write_results  # noqa: E402

DEFAULT_VARIANTS = 'pop64={"population":64};pop32={"population":32};pop16={"population":16,"init_min_unmeasured":8}'


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--trials-per-iter", type=int, default=8)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="NAME=JSON overrides, ';'-separated; first is the base")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch
    import tvm

    from cosearch.compile.frontend import from_onnx, torch_to_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile
    from cosearch.space import create_space

    variants = {}
    for part in args.variants.split(";"):
        name, _, js = part.partition("=")
        variants[name.strip()] = json.loads(js)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    target = load_target(args.target)
    config = {"models": args.models.split(","), "trials": args.trials, "trials_per_iter": args.trials_per_iter,
              "variants": variants, "seeds": seeds, "target": target.to_dict(), "threads": args.threads,
              "repeat": args.repeat, "rounds": args.rounds}
    rows: list[dict] = []
    dev = tvm.cpu()
    for model_name in args.models.split(","):
        space_name, arch, settings = MODELS[model_name]
        space = create_space(space_name, **settings)
        net = space.build(arch, seed=0).eval()
        x = torch.from_numpy(np.random.default_rng(0).standard_normal(space.input_shape(arch, 1)).astype("float32"))
        with torch.inference_mode():
            ref = net(x).numpy()
        imported = from_onnx(torch_to_onnx(net, (x,)))
        xt = tvm.runtime.tensor(x.numpy(), dev)
        runs = {}
        for vname, over in variants.items():
            for seed in seeds:
                cfg = TuneConfig(**{"trials": args.trials, "trials_per_iter": args.trials_per_iter, "seed": seed,
                                    "patience": None, **over})
                with tempfile.TemporaryDirectory(prefix="cosearch-bench-db-") as db:
                    t0 = time.perf_counter()
                    res = tune_and_compile(imported, target, database_dir=Path(db), config=cfg)
                    wall = time.perf_counter() - t0
                vm = tvm.relax.VirtualMachine(res.executable, dev)
                err = float(np.abs(vm["main"](xt).numpy() - ref).max())
                src = [t.source for t in res.tasks]
                runs[(vname, seed)] = ((lambda vm=vm: vm["main"](xt)), {
                    "model": model_name, "variant": vname, "seed": seed, "trials": res.trials_run,
                    "batch": res.trials_per_iter, "tune_s": res.seconds.get("tune", 0.0), "wall_s": wall,
                    "s_per_trial": res.seconds.get("tune", 0.0) / max(res.trials_run, 1),
                    "tasks_tuned": src.count("tuned"), "tasks": len(src), "max_abs_err": err})
                print(f"  {model_name} {vname} seed {seed}: {runs[(vname, seed)][1]['s_per_trial']:.3f} s/trial",
                      flush=True)
        samples: dict = {k: [] for k in runs}
        for _ in range(max(1, args.rounds)):
            for k, (fn, _) in runs.items():
                samples[k] += time_calls(fn, repeat=max(1, args.repeat // args.rounds), warmup=2)["samples"]
        for k, (_, extra) in runs.items():
            rows.append({**extra, "median_ms": float(np.median(samples[k]))})

    summary = []
    for model_name in args.models.split(","):
        base = None
        for vname in variants:
            rs = [r for r in rows if r["model"] == model_name and r["variant"] == vname]
            s = {"model": model_name, "variant": vname, "seeds": len(rs),
                 "s_per_trial": float(np.median([r["s_per_trial"] for r in rs])),
                 "median_ms": float(np.median([r["median_ms"] for r in rs])),
                 "worst_ms": float(max(r["median_ms"] for r in rs))}
            base = base or s
            s["x_time_vs_base"] = s["s_per_trial"] / base["s_per_trial"]
            s["x_latency_vs_base"] = s["median_ms"] / base["median_ms"]
            summary.append(s)
    path = write_results("tune_settings", config, rows, args.out, summary=summary)
    print()
    print_table(rows, ["model", "variant", "seed", "batch", "trials", "s_per_trial", "median_ms", "tasks_tuned"])
    print()
    print_table(summary, ["model", "variant", "seeds", "s_per_trial", "x_time_vs_base", "median_ms", "worst_ms",
                          "x_latency_vs_base"])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
