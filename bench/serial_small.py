"""Does a parallel loop pay on the smallest kernels? Per network, a database tuned for
``--budget`` (``TuneConfig.long``; resumable, per CPU: ``runs/bench-serial/<machine key>``), then
the same module compiled with ``codegen.serial``'s threshold at each value T of ``--below`` (the
kernels estimated under T µs compiled without a parallel loop; 0: none, the build before
``codegen.serial``; inf: every kernel that has a record or is light) -- and every variant timed
interleaved with ONNX Runtime at 1 and 2 threads (``bench.common.time_against_ort``), outputs checked against ORT's.

    python bench/serial_small.py                           # mbv2-small, front-lo, front-mid, nb201
    python bench/serial_small.py --nets front-lo --budget 1m --rounds 5

Writes ``bench/results/serial_small.json`` (the CPU and machine key named).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, SPACE_NETS, best_by_tag, load_net, ort_session, print_table, time_against_ort, write_results  # noqa: E402


def _compile(plan, db: Path, below: float):
    """-> (executable, names of the kernels compiled serial, compile seconds)."""
    from cosearch.compile.pipeline import compile_plan

    choices: list = []
    t0 = time.perf_counter()
    exe = compile_plan(plan, db, report=choices, serial_below_us=below)
    return exe, sorted(c.name for c in choices if c.serial), time.perf_counter() - t0


def run_net(name: str, args, target, work: Path) -> list[dict]:
    import numpy as np
    import tvm

    from bench.latency import _tune
    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx

    model, x, _desc = load_net(name)
    imported = from_onnx(model)
    tuned = _tune(name, imported, target, work / name, [args.budget], [args.budget_s], args.seed)[-1]
    db = Path(tuned["db"])
    plan = engine.plan(imported, target)
    built = {("base" if t == 0 else f"serial<{t:g}"): _compile(plan, db, t) for t in args.below}
    exes = {v: b[0] for v, b in built.items()}
    s = ort_session(model, 2)
    ref = s.run(None, {s.get_inputs()[0].name: x})[0]
    errs = {}
    for v, e in exes.items():
        out = tvm.relax.VirtualMachine(e, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu()))
        out = (out if hasattr(out, "numpy") else out[0]).numpy()
        errs[v] = float(np.abs(out - ref).max() / max(1e-12, float(np.abs(ref).max())))
    med = time_against_ort(exes, model, x, rounds=args.rounds, counts=[1, 2])
    best = best_by_tag(med)
    rows = []
    for v, (_, names, sec) in built.items():
        rows.append({"net": name, "variant": v, "serial_kernels": len(names), "kernels": len(plan.tasks),
                     "compile_s": round(sec, 2),
                     "ms_1": round(med[f"{v}@1"], 4), "ms_2": round(med[f"{v}@2"], 4),
                     "vs_base_2": round(med[f"{v}@2"] / med["base@2"], 3), "best_vs_ort": round(best[v] / best["ORT"], 3),
                     "rel_err_vs_ort": errs[v], "trials": tuned["trials"]})
    rows.append({"net": name, "variant": "ORT", "ms_1": round(med["ORT@1"], 4), "ms_2": round(med["ORT@2"], 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from cosearch.compile.target import load_target
    from cosearch.search.config import parse_duration

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="mbv2-small,front-lo,front-mid,nb201")
    ap.add_argument("--budget", default="2m")
    ap.add_argument("--below", default="0,2,4,8,inf",
                    help="serial_below_us values compiled and timed (0: every kernel parallel, the old build)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    nets = args.nets.split(",")
    bad = [n for n in nets if n not in SPACE_NETS]
    if bad:
        print(f"error: unknown net(s) {', '.join(bad)}; accepted: {', '.join(SPACE_NETS)}", file=sys.stderr)
        return 2
    args.budget_s = parse_duration(args.budget)
    try:
        args.below = [float(t) for t in args.below.split(",")]
    except ValueError:
        print(f"error: --below takes comma-separated numbers (µs), got {args.below!r}", file=sys.stderr)
        return 2
    target = load_target("host")
    work = ROOT / "runs" / "bench-serial" / target.machine_key()
    t0 = time.time()
    rows = []
    for n in nets:
        rows += run_net(n, args, target, work)
        print_table([r for r in rows if r["net"] == n], ["net", "variant", "serial_kernels", "ms_1", "ms_2", "vs_base_2", "best_vs_ort"])
    cfg = {"nets": nets, "budget": args.budget, "below_us": args.below, "rounds": args.rounds, "seed": args.seed,
           "machine_key": target.machine_key(), "work_dir": str(work)}
    p = write_results("serial_small", cfg, rows, args.out, machine_key=target.machine_key(), wall_s=round(time.time() - t0, 1))
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
