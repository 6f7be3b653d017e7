"""Kernels without a tuning record: TVM's default schedule vs cosearch's fallback.

Model-zoo graphs shipped with the ``onnx`` package (``backend/test/data/light``,
224x224, batch 1) compiled with NO tuning record, side by side in one run:

- ``tvm-default``: ``compile_with_database(..., fallback="none")`` (every kernel
  keeps TVM's default CPU schedule, what untuned tasks got before);
- ``tvm-fallback``: ``fallback="auto"`` (an unmeasured MetaSchedule design-space
  sample per kernel, see ``cosearch/compile/fallback.py``);
- ``onnxruntime`` for reference.

Engines are timed interleaved (round-robin blocks) so machine noise hits all alike.

    python bench/fallback.py                                  # squeezenet, inception_v1
    python bench/fallback.py --models squeezenet --repeat 10  # quick

Writes bench/results/fallback.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_calls, write_results  # noqa: E402


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
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import onnxruntime as ort
    import tvm

    from cosearch.compile import fallback as fb
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
        # interleaved timing: one block per engine in turn
        samples: dict[str, list[float]] = {e: [] for e in engines}
        for fn, _ in engines.values():
            fn()
        for _ in range(args.repeat):
            for e, (fn, _) in engines.items():
                samples[e].extend(time_calls(fn, repeat=3, warmup=1, min_ms=20.0)["samples"])
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


if __name__ == "__main__":
    raise SystemExit(main())
