"""Kernels without a tuning record: TVM's default schedule vs cosearch's fallback.

Model-zoo graphs shipped with the ``onnx`` package (``backend/test/data/light``,
224x224, batch 1) compiled with NO tuning record, side by side in one run:

- ``tvm-default``: ``compile_with_database(..., fallback="none")`` (every kernel
  keeps TVM's default CPU schedule, what untuned tasks got before);
- ``tvm-fallback``: ``fallback="auto"`` (an unmeasured MetaSchedule design-space
  sample per kernel, see ``cosearch/compile/fallback.py``);
- ``onnxruntime`` for reference.

Engines are timed interleaved (round-robin blocks) so machine noise hits all alike.
``max_abs_err`` is against ONNX Runtime; the "light" graphs make their weights with
``ConstantOfShape`` (constants), so their outputs are nearly uniform and the error
says little (``tests/test_model_zoo.py`` randomizes the weights for that check).

    python bench/fallback.py                                  # squeezenet, inception_v1
    python bench/fallback.py --models squeezenet --repeat 10  # quick
    python bench/fallback.py --overhead 4   # apply overhead on 4 NB201 networks instead

Writes bench/results/fallback.json (``--overhead``: bench/results/fallback_overhead.json:
TVM's ``MetaScheduleApplyDatabase`` pass vs ``apply_schedules`` cold and warm, per
NB201 architecture, against a database tuned on the first two of them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, print_table, write_results  # noqa: E402


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeezenet,inception_v1", help="comma-separated light_<name>.onnx graphs")
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20, help="timing blocks per engine (interleaved)")
    ap.add_argument("--seed", type=int, default=0, help="fallback sampling seed")
    ap.add_argument("--overhead", type=int, default=0, metavar="N",
                    help="measure the schedule-application overhead on N sampled NB201 networks instead")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    if args.overhead:
        return overhead(args)

    import numpy as np
    import onnxruntime as ort
    import tvm

    from cosearch.compile.codegen import fallback as fb
    from cosearch.compile.codegen import KernelCache, compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = light_dir() / f"light_{name}.onnx"
        imported = from_onnx(path)
        iname, shape, _ = imported.inputs[0]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ref = sess.run(None, {iname: x})[0]
        engines = {"onnxruntime": (lambda: sess.run(None, {iname: x}), {})}
        dev = tvm.cpu()
        xt = tvm.runtime.tensor(x, dev)
        for engine, mode in (("tvm-default", "none"), ("tvm-fallback", "auto")):
            fb.clear_caches()
            report: list = []
            t0 = time.perf_counter()
            ex = compile_with_database(imported.mod, target, None, fallback=mode, report=report,
                                       kernel_cache=KernelCache())
            compile_s = time.perf_counter() - t0
            vm = tvm.relax.VirtualMachine(ex, dev)
            out = vm["main"](xt)
            out = out if hasattr(out, "numpy") else out[0]
            err = float(np.abs(out.numpy() - ref).max())
            sources = {s: sum(c.source == s for c in report) for s in fb.SOURCES}
            engines[engine] = ((lambda vm=vm: vm["main"](xt)),
                               {"compile_s": compile_s, "max_abs_err": err, "kernels": sources})
        samples = interleaved({e: fn for e, (fn, _) in engines.items()}, rounds=args.repeat)
        base = float(np.median(samples["onnxruntime"]))
        for e, (_, info) in engines.items():
            med = float(np.median(samples[e]))
            rows.append({"model": name, "engine": e, "median_ms": med,
                         "p10_ms": float(np.percentile(samples[e], 10)), "x_vs_ort": med / base, **info})
        dflt = next(r for r in rows if r["model"] == name and r["engine"] == "tvm-default")
        for r in rows:
            if r["model"] == name:
                r["x_vs_default"] = r["median_ms"] / dflt["median_ms"]
    path = write_results("fallback", vars(args), rows, args.out)
    print_table(rows, ["model", "engine", "median_ms", "p10_ms", "x_vs_ort", "x_vs_default", "compile_s", "max_abs_err"])
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
