"""NCHW against a blocked layout (NCHW16c for AVX-512's 16 fp32 lanes, NCHW8c for AVX2's 8) on the
search's own networks, each compiled from a database tuned in its own layout with the same budget.

    python bench/layout_compare.py --nchw-db DB1 --blocked-db DB2 --layout NCHW16c

Tune the two databases first with equal budgets (``cosearch tune --layout L --time T``, or
``tune_and_compile`` with ``from_onnx(model, layout=L)``). Every module and ONNX Runtime are timed
interleaved at 1 and 2 threads (``--rounds`` rounds). Writes ``bench/results/layout_<cpu>.json``
(resolved config, CPU, machine key) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_by_tag, load_net, print_table, time_against_ort, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nchw-db", required=True)
    ap.add_argument("--blocked-db", required=True)
    ap.add_argument("--layout", default="NCHW16c", choices=("NCHW8c", "NCHW16c"))
    ap.add_argument("--nets", default="nb201,mbv2-small")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--target", default="host")
    ap.add_argument("--tuning", default="", help="how the databases were tuned (recorded in the results)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    rows = []
    for name in [n for n in args.nets.split(",") if n]:
        model, x, _ = load_net(name, seed=0)
        row: dict = {"net": name}
        exes = {}
        for layout, db in (("NCHW", args.nchw_db), (args.layout, args.blocked_db)):
            plan = engine.plan(from_onnx(model, layout=layout), target)
            exes[layout] = engine.compile_plan(plan, Path(db))
            pred = engine.predict_latency(plan, Path(db))
            row[f"{layout}_kernel_sum_ms"] = pred.known_ms
            row[f"{layout}_missing"] = len(pred.missing)
        med = time_against_ort(exes, model, x, rounds=args.rounds, counts=(1, 2))
        row["medians_ms"] = med
        best = best_by_tag(med)
        for tag in ("NCHW", args.layout, "ORT"):
            row[f"{tag}_best_ms"] = best[tag]
        row["blocked_over_nchw"] = row[f"{args.layout}_best_ms"] / row["NCHW_best_ms"]
        rows.append(row)
        print(f"  {name}: NCHW {row['NCHW_best_ms']:.4f}  {args.layout} {row[f'{args.layout}_best_ms']:.4f}  "
              f"ORT {row['ORT_best_ms']:.4f} ms", flush=True)
    key = target.machine_key()
    path = write_results(f"layout_{target.target.get('mcpu', 'cpu')}", {**vars(args), "target": target.to_dict()},
                         rows, args.out, machine_key=key)
    print_table(rows, ["net", "NCHW_kernel_sum_ms", f"{args.layout}_kernel_sum_ms", "NCHW_best_ms",
                       f"{args.layout}_best_ms", "ORT_best_ms", "blocked_over_nchw"])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
