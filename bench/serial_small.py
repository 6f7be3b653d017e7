"""Does a parallel loop pay on the smallest kernels? Per network, a database tuned for
``--budget`` (``TuneConfig.long``; resumable, per CPU: ``runs/bench-serial/<machine key>``), then
the same module compiled with the parallel loops of its small kernels turned serial -- every
kernel whose database time is under T µs, for each T of ``--thresholds`` ("light" adds the
kernels without a record: pools, adds) -- and every variant timed interleaved with ONNX Runtime
at 1 and 2 threads (``bench.common.time_against_ort``), outputs checked against ORT's.

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


def _variants(plan, db: Path, thresholds: list[str]) -> dict[str, set[str]]:
    """variant name -> names of the kernels compiled serial."""
    from cosearch.compile.plan import status

    st = status(plan, db)
    us = {t.name: (st[t.workload].best_us if t.tunable and st[t.workload].in_db else None) for t in plan.tasks}
    out: dict[str, set[str]] = {"base": set()}
    for th in thresholds:
        light = th.endswith("+light")
        lim = float(th.removesuffix("+light"))
        out[f"serial<{th}"] = {n for n, u in us.items() if (u is not None and u < lim) or (u is None and light)}
    out["serial-all"] = set(us)
    return out


def compile_serial(plan, db: Path, names: set[str]):
    """``compile_plan`` with the parallel loops of the kernels ``names`` made serial."""
    import tvm

    from cosearch.compile.codegen import fallback as fb
    from cosearch.compile.pipeline import compile_plan

    orig = fb.apply_schedules

    def patched(m, *a, **k):
        m, choices = orig(m, *a, **k)
        funcs = {}
        for gv, f in m.functions.items():
            if gv.name_hint in names and isinstance(f, tvm.tirx.PrimFunc) and "T.parallel(" in (s := f.script()):
                funcs[gv] = tvm.script.from_source(s.replace("T.parallel(", "T.serial("))
        for gv, f in funcs.items():
            m[gv] = f
        return m, choices

    fb.apply_schedules = patched
    try:
        return compile_plan(plan, db)
    finally:
        fb.apply_schedules = orig


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
    variants = _variants(plan, db, args.thresholds.split(","))
    exes = {v: compile_serial(plan, db, names) for v, names in variants.items()}
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
    for v, names in variants.items():
        rows.append({"net": name, "variant": v, "serial_kernels": len(names), "kernels": len(plan.tasks),
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
    ap.add_argument("--thresholds", default="2,4,8,4+light,8+light")
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
    target = load_target("host")
    work = ROOT / "runs" / "bench-serial" / target.machine_key()
    t0 = time.time()
    rows = []
    for n in nets:
        rows += run_net(n, args, target, work)
        print_table([r for r in rows if r["net"] == n], ["net", "variant", "serial_kernels", "ms_1", "ms_2", "vs_base_2", "best_vs_ort"])
    cfg = {"nets": nets, "budget": args.budget, "thresholds": args.thresholds, "rounds": args.rounds, "seed": args.seed,
           "machine_key": target.machine_key(), "work_dir": str(work)}
    p = write_results("serial_small", cfg, rows, args.out, machine_key=target.machine_key(), wall_s=round(time.time() - t0, 1))
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
