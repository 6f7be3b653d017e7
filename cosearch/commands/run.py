"""`cosearch run DIR`: load an artifact with the plain TVM runtime, time it, and
check its output against ONNX Runtime on the artifact's ``model.onnx``.

Exit codes: 0 output within tolerance; 1 output mismatch (or measurement
failure); 2 bad input / artifact that cannot run on this machine.
"""

from __future__ import annotations

import sys

from cosearch.errors import CosearchError, first_line

DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a tuned artifact with the plain TVM runtime and check it against ONNX Runtime",
        description="Load DIR (written by 'cosearch tune'), time it with the TVM runtime and compare "
        "its output with ONNX Runtime on DIR/model.onnx. Exit 1 if |tvm - ort| > tol + rtol*|ort| anywhere.",
    )
    p.add_argument("dir", metavar="DIR", help="artifact directory (the --out of 'cosearch tune')")
    p.add_argument("--input", metavar="X.npy", help="input array (.npy; .npz keyed by input name for several "
                   "inputs); default: seeded random input of the recorded shape")
    p.add_argument("--repeat", default="30", metavar="N", help="timed repeats (default 30)")
    p.add_argument("--tolerance", default=str(DEFAULT_ATOL), metavar="T",
                   help=f"absolute tolerance vs ONNX Runtime (default {DEFAULT_ATOL:g})")
    p.add_argument("--rtol", default=str(DEFAULT_RTOL), metavar="R",
                   help=f"relative tolerance vs ONNX Runtime (default {DEFAULT_RTOL:g})")
    p.add_argument("--seed", default="0", metavar="S", help="seed of the random input (default 0)")
    p.add_argument("--threads", default=None, metavar="N",
                   help="runtime threads (default: the count recorded in the artifact, measured fastest at export)")
    p.add_argument("--affinity", default=None, choices=("pinned", "shared"),
                   help="pool threads pinned one per core, or free on the cores used (default: as recorded)")
    p.set_defaults(func=run)


def _int(name: str, text: str, minimum: int) -> int:
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
    if v < minimum:
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def _nonneg_float(name: str, text: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise CosearchError(f"{name} must be a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise CosearchError(f"{name} must be a finite number >= 0, got {text!r}")
    return v


def load_inputs(path: str | None, specs, seed: int):
    """Arrays for ``specs`` [(name, shape, dtype)] from ``path`` or seeded random."""
    import numpy as np

    from cosearch.compile.deploy.measure import random_inputs

    if path is None:
        return random_inputs(specs, seed)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CosearchError(f"--input {path!r} does not exist; expected a .npy file") from None
    except (OSError, ValueError) as e:
        raise CosearchError(f"--input {path!r} is not a readable .npy/.npz file: {e}") from None
    if isinstance(data, np.ndarray):
        if len(specs) != 1:
            raise CosearchError(f"--input {path!r} holds one array but the model has {len(specs)} inputs "
                                f"({', '.join(s[0] for s in specs)}); give a .npz keyed by input name")
        arrays = {specs[0][0]: data}
    else:
        arrays = {k: data[k] for k in data.files}
    out = []
    for name, shape, dtype in specs:
        if name not in arrays:
            raise CosearchError(f"--input {path!r} lacks input {name!r}; it has {', '.join(arrays)}")
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise CosearchError(f"--input {path!r}: input {name!r} has shape {tuple(a.shape)}; expected {tuple(shape)}")
        if a.dtype != np.dtype(dtype):
            if not np.can_cast(a.dtype, dtype, casting="same_kind"):
                raise CosearchError(f"--input {path!r}: input {name!r} has dtype {a.dtype}; expected {dtype}")
            a = a.astype(dtype)
        out.append(np.ascontiguousarray(a))
    return out


def _to_numpy_list(out):
    import numpy as np

    if hasattr(out, "numpy"):
        return [out.numpy()]
    if isinstance(out, (list, tuple)) or hasattr(out, "__len__"):
        res = []
        for o in out:
            res.extend(_to_numpy_list(o))
        return res
    return [np.asarray(out)]


def _runtime_settings(art, threads: int | None, affinity: str | None):
    """The artifact's recorded runtime settings, with ``--threads`` / ``--affinity`` applied."""
    from cosearch.compile.deploy.threads import DEFAULT_AFFINITY, RuntimeSettings

    settings = art.runtime()
    if threads is None and affinity is None:
        return settings
    return RuntimeSettings(threads or (settings.threads if settings else 1),
                           affinity or (settings.affinity if settings else DEFAULT_AFFINITY))


def run(args) -> int:
    repeat = _int("--repeat", args.repeat, 1)
    seed = _int("--seed", args.seed, 0)
    atol = _nonneg_float("--tolerance", args.tolerance)
    rtol = _nonneg_float("--rtol", args.rtol)
    threads = _int("--threads", args.threads, 1) if args.threads is not None else None

    from cosearch.compile.deploy.artifact import read_artifact, why_not_runnable_here

    art = read_artifact(args.dir)
    reason = why_not_runnable_here(art)
    if reason:
        raise CosearchError(reason)
    specs = art.inputs
    arrays = load_inputs(args.input, specs, seed)

    import numpy as np

    from cosearch.compile.deploy.artifact import load_artifact
    from cosearch.compile.deploy.measure import MeasureConfig, measure_local

    art = load_artifact(art.path)
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(art.module, dev)
    try:
        outs = _to_numpy_list(vm["main"](*[tvm.runtime.tensor(a, dev) for a in arrays]))
    except Exception as e:  # noqa: BLE001 - the compiled model itself failed
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        print(f"cosearch run: error: the compiled model failed to run: {first}", file=sys.stderr)
        return 1

    tmeta = art.target
    settings = _runtime_settings(art, threads, args.affinity)
    res = measure_local(art.module, specs, threads=settings.threads if settings else None,
                        affinity=settings.affinity if settings else "shared",
                        config=MeasureConfig(repeat=repeat, seed=seed), arrays=arrays)

    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(art.onnx_path), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {name: a for (name, _, _), a in zip(specs, arrays)})
    except Exception as e:  # noqa: BLE001 - a broken reference is a bad artifact
        first = first_line(e)
        raise CosearchError(f"ONNX Runtime cannot run {str(art.onnx_path)!r}: {first}") from None

    print(f"artifact: {art.path} (target {tmeta.get('name')}, {art.library.name})")
    print(f"input: {args.input or f'random (seed {seed})'}; " +
          ", ".join(f"{n} {tuple(s)} {d}" for n, s, d in specs))
    if res.ok:
        lat = res.latency
        print(f"latency: median {lat.median_ms:.4f} ms, p10 {lat.p10_ms:.4f} ms, "
              f"p90 {lat.p90_ms:.4f} ms, n={lat.n}, threads={lat.threads} ({lat.affinity or 'default'})")
        rec = art.meta.get("latency_ms")
        if rec:
            print(f"recorded at tune time: median {rec['median']:.4f} ms (n={rec['n']})")
    else:
        print(f"latency: measurement failed: {res.error}")

    if len(outs) != len(ref):
        print(f"cosearch run: error: TVM returned {len(outs)} outputs, ONNX Runtime {len(ref)}", file=sys.stderr)
        return 1
    ok = True
    for i, (o, r) in enumerate(zip(outs, ref)):
        if o.shape != r.shape:
            print(f"output {i}: shape {o.shape} vs ONNX Runtime {r.shape}: MISMATCH")
            ok = False
            continue
        diff = np.abs(o.astype(np.float64) - r.astype(np.float64))
        err = float(diff.max()) if diff.size else 0.0
        within = bool(np.all(diff <= atol + rtol * np.abs(r.astype(np.float64)))) and bool(np.isfinite(o).all())
        ok &= within
        print(f"output {i}: shape {tuple(o.shape)}, max abs error {err:.3e} vs ONNX Runtime "
              f"(tolerance {atol:g} + {rtol:g}*|ref|): {'OK' if within else 'MISMATCH'}")
    if not res.ok:
        return 1
    return 0 if ok else 1
