"""What schedule transfer gives new architectures: end-to-end latency at 0, 8 and 32 trials per new
task, with and without transfer, on a warm database.

    python bench/transfer.py --schedules DIR                 # 4 random NB201 archs + 2 mbv2 archs
    python bench/transfer.py --schedules DIR --archs 8 --trials 0,8

``--schedules`` is a database tuned on other networks of the spaces (e.g. the NB201 bench net and
mbv2-small, ``bench/runtime_overhead.py``'s); it is never written. Per architecture, its tasks
without a record are "new". At 0 trials the module is compiled twice from the database as it is:
new kernels get a design-space sample (``fallback``, the cold start) or the schedule of their
nearest tuned sibling (``transfer``, ``codegen.transfer``). At N trials a copy of the database
gets N trials on every new task (MetaSchedule, the engine's settings) twice: ``coldN`` starts the
evolutionary search from random samples (``TuneConfig(transfer=False)``), ``seededN`` from the
transferred schedule, timed as the first of the N trials (``tuning.seed``, the default); the
module is compiled from each (with transfer, which then only serves kernels whose records did
not replay). All
modules of one architecture are timed interleaved at their best thread count
(``measure.measure_interleaved``), ONNX Runtime alongside.

Times things: run it alone. Writes ``bench/results/transfer.json`` (resolved config, CPU, machine
key) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_by_tag, print_table, time_against_ort, write_results  # noqa: E402


def _arch_model(space_name: str, arch: str, seed: int):
    import torch

    from cosearch.compile.frontend import torch_to_onnx
    from cosearch.space import create_space

    space = create_space(space_name, **({"resolution": 64} if space_name == "mbv2" else {}))
    net = space.build(arch, seed=seed).eval()
    x = np.random.default_rng(seed).standard_normal(tuple(space.input_shape(arch, 1))).astype(np.float32)
    return torch_to_onnx(net, (torch.from_numpy(x),)), x


def one_arch(space_name: str, arch: str, args, target, db: Path, work: Path) -> dict[str, Any]:
    from cosearch.compile import engine
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.storage.database import open_database
    from cosearch.compile.tuning.config import TuneConfig

    model, x = _arch_model(space_name, arch, args.seed)
    imported = from_onnx(model)
    plan = engine.plan(imported, target)
    st = engine.status(plan, db)
    new = [t for t in plan.tasks if t.tunable and not st[t.workload].in_db]
    row: dict[str, Any] = {"space": space_name, "arch": arch, "tasks": len([t for t in plan.tasks if t.tunable]),
                           "new_tasks": len(new)}
    exes: dict[str, Any] = {}
    for tag, transfer in (("cold", False), ("transfer", True)):
        choices: list = []
        t0 = time.perf_counter()
        exes[tag] = compile_with_database(imported.mod, target, open_database(db), kernel_cache=None, report=choices,
                                          transfer=transfer)
        row[f"{tag}_compile_s"] = time.perf_counter() - t0
        row[f"{tag}_sources"] = {s: [c.source for c in choices].count(s) for s in {c.source for c in choices}}
    for n in args.trials_list:
        for tag, seeded in (("cold", False), ("seeded", True)):
            if n <= 0 or not new:
                continue
            copy = work / f"db-{tag}{n}"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(db, copy)
            t0 = time.perf_counter()
            out = engine.tune_tasks(new, target, database_dir=copy, trials=n * len(new),
                                    config=TuneConfig(trials=n * len(new), seed=args.seed, patience=None,
                                                      transfer=seeded),
                                    budgets={t.workload: n for t in new})
            row[f"{tag}{n}_trials"] = int(out.trials_run)
            row[f"{tag}{n}_tune_s"] = time.perf_counter() - t0
            if out.transfer:
                row[f"{tag}{n}_transfer"] = out.transfer
            exes[f"{tag}{n}"] = compile_with_database(imported.mod, target, open_database(copy), kernel_cache=None)
    best = best_by_tag(time_against_ort(exes, model, x, rounds=args.rounds, min_ms=10.0))
    best["ort"] = best.pop("ORT")
    row.update({f"{k}_ms": v for k, v in best.items()})
    row["transfer_over_cold"] = best["transfer"] / best["cold"]
    row["cold_over_ort"] = best["cold"] / best["ort"]
    row["transfer_over_ort"] = best["transfer"] / best["ort"]
    for n in args.trials_list:
        if f"seeded{n}" in best and f"cold{n}" in best:
            row[f"seeded{n}_over_cold{n}"] = best[f"seeded{n}"] / best[f"cold{n}"]
    top = max((n for n in args.trials_list if f"seeded{n}" in best), default=None)
    if top is not None:  # the share of the tuned speed-up over the fallback that transfer reaches at 0 trials
        tuned = min(best[f"seeded{top}"], best[f"cold{top}"])
        if best["cold"] > tuned:
            row[f"transfer_share_of_tuned{top}"] = (best["cold"] - best["transfer"]) / (best["cold"] - tuned)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedules", required=True, help="a tuned schedule database of this machine (read only)")
    ap.add_argument("--archs", type=int, default=4, help="random NB201 architectures (seeded)")
    ap.add_argument("--mbv2", type=int, default=2, help="random mbv2 architectures at 64x64 (seeded)")
    ap.add_argument("--trials", default="0,8,32", help="trials per new task, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--target", default="host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    try:
        args.trials_list = sorted({int(t) for t in args.trials.split(",") if t.strip()})
    except ValueError:
        print(f"error: --trials must be comma-separated integers, got {args.trials!r}", file=sys.stderr)
        return 2
    if not Path(args.schedules).is_dir():
        print(f"error: --schedules {args.schedules!r} is not a directory", file=sys.stderr)
        return 2

    from cosearch.compile.target import load_target
    from cosearch.space import create_space

    target = load_target(args.target)
    rng = np.random.default_rng(args.seed)
    archs = [("nb201", create_space("nb201").sample(rng)) for _ in range(args.archs)]
    mb = create_space("mbv2", resolution=64)
    archs += [("mbv2", mb.sample(rng)) for _ in range(args.mbv2)]
    config = {k: v for k, v in vars(args).items()}
    config.update(target=target.to_dict(), archs=archs)
    rows: list[dict[str, Any]] = []
    path = None
    with tempfile.TemporaryDirectory(prefix="cosearch-transfer-") as tmp:
        for space_name, arch in archs:
            t0 = time.perf_counter()
            rows.append(one_arch(space_name, arch, args, target, Path(args.schedules), Path(tmp)))
            rows[-1]["wall_s"] = time.perf_counter() - t0
            path = write_results("transfer", config, rows, args.out, machine_key=target.machine_key(),
                                 tvm_num_threads=os.environ.get("TVM_NUM_THREADS"))
            r = rows[-1]
            print(f"  {space_name} {arch[:50]}: new {r['new_tasks']}/{r['tasks']}  cold {r['cold_ms']:.4f}  "
                  f"transfer {r['transfer_ms']:.4f}  ort {r['ort_ms']:.4f} ms  ({r['wall_s']:.0f} s)", flush=True)
    cols = ["space", "new_tasks", "tasks", "cold_ms", "transfer_ms"]
    cols += [f"{tag}{n}_ms" for n in args.trials_list if n > 0 for tag in ("cold", "seeded")]
    cols += ["ort_ms", "transfer_over_cold", "transfer_over_ort"]
    cols += [f"seeded{n}_over_cold{n}" for n in args.trials_list if n > 0]
    print_table(rows, cols)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
