"""How far the database's kernel sum is from the end-to-end latency, before and after
``engine.confirm`` re-times each task's best record on its own.

For every network database of a ``bench/latency.py --work-dir DIR`` run (or any
``--work-dir`` holding one database per network, named as bench/common's networks):
compile from the database, time the module end to end (median of ``--repeat``
timings, each >= 1 ms of calls), then confirm the best records (``engine.confirm``,
10 repeats each) and compare: tuning-time kernel sum vs e2e, confirmed kernel sum
vs e2e. The tuning-time best of a task is the minimum over every candidate it
measured, so it is biased low; the confirmed value is not.

    python bench/kernel_sum.py --work-dir /tmp/latwd --nets squeezenet,nb201

Writes bench/results/kernel_sum.json. Confirming appends ``confirm`` events to the
databases' history (what ``TuneConfig(confirm=True)`` does after tuning).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LIGHT_MODELS, MODELS, load_net, print_table, time_calls, write_results  # noqa: E402

ALL = list(LIGHT_MODELS) + list(MODELS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", required=True, help="one schedule database per network (bench/latency.py --work-dir)")
    ap.add_argument("--nets", default=",".join(ALL))
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work_dir)
    nets = [n for n in args.nets.split(",") if n and (work / n).is_dir()]
    if not nets:
        print(f"error: no network database under {work} (expected subfolders named from {', '.join(ALL)})",
              file=sys.stderr)
        return 2
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import tvm

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    rows = []
    for name in nets:
        db = work / name
        model, x, _ = load_net(name, seed=args.seed)
        plan = engine.plan(from_onnx(model), target)
        raw = engine.predict_latency(plan, db)
        ex = engine.compile_plan(plan, db)
        vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
        xt = tvm.runtime.tensor(x, tvm.cpu())
        before = time_calls(lambda: vm["main"](xt), repeat=args.repeat, warmup=3)
        t0 = time.perf_counter()
        done = engine.confirm(plan.tasks, target, database_dir=db)
        confirm_s = time.perf_counter() - t0
        conf = engine.predict_latency(plan, db)
        after = time_calls(lambda: vm["main"](xt), repeat=args.repeat, warmup=3)
        e2e = (before["median"] + after["median"]) / 2
        st = engine.status(plan, db)
        ratios = sorted(s.confirmed_us / s.best_us for s in st.values() if s.confirmed_us and s.best_us)
        rows.append({"net": name, "e2e_ms": e2e, "e2e_before_ms": before["median"], "e2e_after_ms": after["median"],
                     "kernel_sum_ms": raw.ms, "kernel_sum_err": raw.ms / e2e - 1, "confirmed_sum_ms": conf.ms,
                     "confirmed_err": conf.ms / e2e - 1, "tasks": len(st), "confirmed_now": len(done),
                     "confirm_s": confirm_s, "confirmed_over_tuning_median": ratios[len(ratios) // 2] if ratios else None,
                     "missing": len(raw.missing)})
        r = rows[-1]
        print(f"{name:12s} e2e {e2e:8.3f} ms  kernel sum {r['kernel_sum_err']:+.1%}  confirmed {r['confirmed_err']:+.1%}"
              f"  ({len(done)} confirmed in {confirm_s:.0f} s)", flush=True)
    path = write_results("kernel_sum", vars(args), rows, args.out)
    print_table(rows, ["net", "e2e_ms", "kernel_sum_ms", "kernel_sum_err", "confirmed_sum_ms", "confirmed_err",
                       "confirmed_over_tuning_median", "confirm_s"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
