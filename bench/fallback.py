"""Kernels without a tuning record: TVM's default schedule vs cosearch's fallbacks.

Networks compiled with NO usable record for some or all kernels, side by side in one
interleaved run, every engine at its best of 1 and 2 threads (``common.time_against_ort``):

- ``tvm-default``: ``fallback="none"`` (every record-less kernel keeps TVM's default CPU
  schedule: serial, unvectorised);
- ``tvm-mac``: ``fallback="mac"``, the previous rule: a design-space sample for
  multiply-accumulate kernels only, every other kernel TVM's default;
- ``tvm-light``: ``fallback="auto"``: MAC kernels as above, every other kernel (pools, adds,
  softmax, concatenations) ``light_schedule`` (inlined, parallelised, vectorised);
- ``tvm-light-serial``: the same with ``LIGHT_JOBS_PER_CORE = -1`` (vectorised, no parallel
  loop: whether small kernels pay for the thread pool's fork/join);
- ``onnxruntime`` for reference.

``--schedules DIR`` compiles against that database (read-only: the case of a search's new
architectures, whose pools and adds are new tasks while their convs have records); without it
no kernel has a record. ``--archs N`` adds N random NB201 architectures (seeded). The error is
against ONNX Runtime (relative to its output's largest value).

    python bench/fallback.py                                   # squeezenet, inception_v1
    python bench/fallback.py --models nb201,mbv2-small,squeezenet --archs 4 --schedules DIR
    python bench/fallback.py --overhead 4   # apply overhead on 4 NB201 networks instead

Writes bench/results/fallback.json (``--overhead``: bench/results/fallback_overhead.json:
TVM's ``MetaScheduleApplyDatabase`` pass vs ``apply_schedules`` cold and warm, per
NB201 architecture, against a database tuned on the first two of them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_by_tag, load_net, ort_session, print_table, time_against_ort, write_results  # noqa: E402


ENGINES = (("tvm-default", "none", None), ("tvm-mac", "mac", None), ("tvm-light", "auto", 16),
           ("tvm-light-serial", "auto", -1))


def _nets(args) -> list[tuple[str, Any, Any]]:
    """(name, onnx model, input) for ``--models`` and ``--archs``."""
    import numpy as np
    import torch

    from cosearch.compile.frontend import torch_to_onnx
    from cosearch.space import create_space

    out = [(n, *load_net(n, seed=args.seed)[:2]) for n in args.models.split(",") if n.strip()]
    space = create_space("nb201")
    rng = np.random.default_rng(args.seed)
    for i in range(args.archs):
        arch = space.sample(rng)
        x = np.random.default_rng(args.seed).standard_normal(tuple(space.input_shape(arch, 1))).astype(np.float32)
        net = space.build(arch, seed=args.seed).eval()
        out.append((f"nb201-{i}:{arch}", torch_to_onnx(net, (torch.from_numpy(x),)), x))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet,inception_v1",
                    help="comma-separated bench networks (bench.common: model-zoo graphs and space nets)")
    ap.add_argument("--archs", type=int, default=0, help="also N random NB201 architectures (seeded)")
    ap.add_argument("--schedules", default=None, help="a schedule database of this CPU (read-only)")
    ap.add_argument("--target", default="host")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    ap.add_argument("--seed", type=int, default=0, help="fallback sampling and network seed")
    ap.add_argument("--overhead", type=int, default=0, metavar="N",
                    help="measure the schedule-application overhead on N sampled NB201 networks instead")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.overhead:
        return overhead(args)

    import numpy as np
    import tvm

    from cosearch.compile.codegen import fallback as fb
    from cosearch.compile.codegen import KernelCache, compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.storage.database import open_database
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    db = open_database(args.schedules) if args.schedules else None
    rows = []
    for name, model, x in _nets(args):
        imported = from_onnx(model)
        ref = ort_session(model, 2).run(None, {ort_session(model, 1).get_inputs()[0].name: x})[0]
        exes, info = {}, {}
        dev = tvm.cpu()
        for engine, mode, jobs in ENGINES:
            fb.clear_caches()
            fb.LIGHT_JOBS_PER_CORE = jobs if jobs is not None else 16
            report: list = []
            t0 = time.perf_counter()
            ex = compile_with_database(imported.mod, target, db, fallback=mode, report=report, kernel_cache=KernelCache())
            compile_s = time.perf_counter() - t0
            out = tvm.relax.VirtualMachine(ex, dev)["main"](tvm.runtime.tensor(x, dev))
            out = out if hasattr(out, "numpy") else out[0]
            err = float(np.abs(out.numpy() - ref).max() / max(1e-12, float(np.abs(ref).max())))
            exes[engine] = ex
            info[engine] = {"compile_s": compile_s, "rel_err_vs_ort": err,
                            "kernels": {s: sum(c.source == s for c in report) for s in fb.SOURCES}}
        fb.LIGHT_JOBS_PER_CORE = 16
        med = time_against_ort(exes, model, x, rounds=args.rounds)
        best = best_by_tag(med)
        for e in ["ORT", *exes]:
            threads = min((k for k in med if k.rsplit("@", 1)[0] == e), key=med.get).rsplit("@", 1)[1]
            rows.append({"model": name.split(":")[0], "arch": name.split(":", 1)[1] if ":" in name else None,
                         "engine": e, "best_ms": best[e], "threads": int(threads), "x_vs_ort": best[e] / best["ORT"],
                         "x_vs_default": best[e] / best["tvm-default"], **info.get(e, {})})
            print(f"  {name.split(':')[0]:14s} {e:18s} {best[e]:9.3f} ms  {best[e] / best['ORT']:6.2f}x ORT", flush=True)
    config = {**vars(args), "engines": [list(e) for e in ENGINES]}
    path = write_results("fallback", config, rows, args.out)
    print_table(rows, ["model", "engine", "best_ms", "threads", "x_vs_ort", "x_vs_default", "compile_s", "rel_err_vs_ort"])
    print(f"wrote {path}")
    return 0


def overhead(args) -> int:
    """Time the schedule application alone (the rest of the compile is the same)."""
    import collections
    import tempfile
    import warnings

    import numpy as np
    import torch
    import tvm
    from tvm.relax.transform import MetaScheduleApplyDatabase

    from cosearch.compile.codegen import fallback as fb
    from cosearch.compile.storage.database import open_database
    from cosearch.compile.frontend import from_torch
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile
    from cosearch.space import create_space

    space = create_space("nb201")
    target = load_target(args.target)
    tgt = target.tvm_target()
    db_dir = tempfile.mkdtemp(prefix="cosearch-bench-fallback-")
    mods = []
    for i in range(args.overhead):
        arch = space.sample(np.random.default_rng(args.seed + i))
        imported = from_torch(space.build(arch), (torch.randn(1, 3, 32, 32),))
        mods.append(imported)
        if i < 2:
            tune_and_compile(imported, target, database_dir=db_dir, config=TuneConfig(trials=16, trials_per_iter=4, seed=0))
    db = open_database(db_dir)

    def ms_of(fn, n=3):
        best = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best * 1e3

    def stock(m):
        with tgt, db, tvm.transform.PassContext(opt_level=3):
            return MetaScheduleApplyDatabase(enable_warning=False)(m)

    rows = []
    for i, imported in enumerate(mods):
        m = imported.mod
        try:
            stock_ms = ms_of(lambda: stock(m))
            stock_ok = "ok"
        except Exception as e:  # the failure this module exists for
            stock_ms, stock_ok = None, str(e).strip().splitlines()[0][:80]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fb.ScheduleWarning)
            fb.clear_caches()
            cold_none = ms_of(lambda: fb.apply_schedules(m, tgt, db, fallback="none"), n=1)
            fb.clear_caches()
            t0 = time.perf_counter()
            _, choices = fb.apply_schedules(m, tgt, db, fallback="auto")
            cold_auto = (time.perf_counter() - t0) * 1e3
            warm = ms_of(lambda: fb.apply_schedules(m, tgt, db, fallback="auto"))
        rows.append({"arch": i, "kernels": len(choices),
                     **{f"n_{k}": v for k, v in collections.Counter(c.source for c in choices).items()},
                     "tvm_pass_ms": stock_ms, "tvm_pass": stock_ok, "cold_no_fallback_ms": cold_none,
                     "cold_ms": cold_auto, "warm_ms": warm})
    path = write_results("fallback_overhead", vars(args), rows, args.out)
    print_table(rows, ["arch", "kernels", "n_db", "n_fallback", "n_default", "tvm_pass_ms", "tvm_pass",
                       "cold_no_fallback_ms", "cold_ms", "warm_ms"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
