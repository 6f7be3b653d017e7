"""Shared helpers for the bench scripts: timing, result files, tables.

Every bench writes ``bench/results/<name>.json`` holding its resolved config,
the machine it ran on and its rows, then prints a short table. Comparisons are
measured side by side in one run (the machines are shared and noisy), and the
tables report ratios rather than absolute numbers alone.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # scripts that import this file as plain ``common`` still reach bench.zoo
    sys.path.insert(0, str(ROOT))

#: the benches' default models: a small MobileNetV2-like net (mbv2 space, 64x64)
#: and a NAS-Bench-201 network (C=16, N=5, 32x32), both at batch 1.
MODELS = {
    "mbv2-small": ("mbv2", "w0.35-k3e3d1-k3e3d2-k3e3d2-k3e3d1-k3e3d1-k3e3d1", {"resolution": 64}),
    "nb201": (
        "nb201",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        {},
    ),
}


def _front_networks() -> dict[str, tuple[str, str, dict]]:
    """``bench/front_nb201.json``: NB201 networks on the front of a real joint search (provenance
    in the file), as MODELS entries."""
    data = json.loads((Path(__file__).resolve().parent / "front_nb201.json").read_text())
    return {name: (data["space"], v["arch"], dict(data["settings"])) for name, v in data["networks"].items()}


#: three NB201 front networks of a real search (low, middle and high latency)
FRONT = _front_networks()
#: every network built from a search space: name -> (space, arch, space settings)
SPACE_NETS = {**MODELS, **FRONT}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}


def time_calls(fn: Callable[[], Any], *, repeat: int = 50, warmup: int = 5, min_ms: float = 1.0) -> dict[str, float]:
    """Median/p10/p90 over ``repeat`` timings, each the mean of enough calls to last ``min_ms``."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(np.ceil(min_ms / 1e3 / one)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e3)
    p10, med, p90 = np.percentile(samples, [10, 50, 90])
    return {"median": float(med), "p10": float(p10), "p90": float(p90), "n": repeat, "samples": samples}


def interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int, repeat: int = 3, min_ms: float = 20.0,
                warmup: int = 1) -> dict[str, list[float]]:
    """Time every engine in turn, one block of ``repeat`` timings each per round, so machine
    noise hits all engines alike; -> per-engine ms samples (``rounds * repeat`` each)."""
    samples: dict[str, list[float]] = {e: [] for e in fns}
    for fn in fns.values():
        fn()
    for _ in range(max(1, rounds)):
        for e, fn in fns.items():
            samples[e].extend(time_calls(fn, repeat=repeat, warmup=warmup, min_ms=min_ms)["samples"])
    return samples


def time_against_ort(executables: dict[str, Any], model, x: np.ndarray, *, rounds: int, min_ms: float = 20.0,
                     counts: Sequence[int] | None = None) -> dict[str, float]:
    """Every compiled module and ONNX Runtime (on ``model``) at each thread count of ``counts``
    (default: 1, half and all usable CPUs), interleaved ``rounds`` times, on input ``x``:
    median ms per ``"<tag>@<threads>"`` (``tag`` a key of ``executables``, or ``"ORT"``)."""
    import tvm

    from cosearch.compile.deploy import threads as th

    counts = list(counts) if counts is not None else th.candidates(len(th.usable_cpus()))
    dev = tvm.cpu()
    xt = tvm.runtime.tensor(x, dev)
    fns = {k: tvm.relax.VirtualMachine(e, dev)["main"] for k, e in executables.items()}
    sessions = {t: ort_session(model, t) for t in counts}
    iname = sessions[counts[0]].get_inputs()[0].name
    samples: dict[str, list[float]] = {}
    for _ in range(max(1, rounds)):
        for t in counts:
            th.apply(th.RuntimeSettings(t))
            calls = {**{k: (lambda f=f: f(xt)) for k, f in fns.items()},
                     "ORT": (lambda s=sessions[t]: s.run(None, {iname: x}))}
            for k, fn in calls.items():
                samples.setdefault(f"{k}@{t}", []).extend(time_calls(fn, repeat=3, warmup=1, min_ms=min_ms)["samples"])
    return {k: float(np.median(v)) for k, v in samples.items()}


def best_by_tag(medians: dict[str, float]) -> dict[str, float]:
    """``time_against_ort``'s medians -> per tag the median at its fastest thread count."""
    best: dict[str, float] = {}
    for k, v in medians.items():
        tag = k.rsplit("@", 1)[0]
        best[tag] = min(best.get(tag, float("inf")), v)
    return best


def busy_processes(n: int) -> list:
    """``n`` busy Python processes (each holds one core): the load of a shared machine."""
    import subprocess

    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_processes(ps: list) -> None:
    for p in ps:
        p.kill()
        p.wait()


def write_results(name: str, config: dict[str, Any], rows: list[dict[str, Any]], out: str | None = None, **extra: Any) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"bench": name, "config": config, "machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra, "rows": rows}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# --------------------------------------------------------------------------- real graphs
# ONNX model-zoo graphs shipped with the ``onnx`` package, seeded weights (bench.zoo)
from bench.zoo import LIGHT_MODELS, light_path, randomized_light  # noqa: E402,F401


def onnx_flops(model) -> float:
    """2 x multiply-accumulates of the Conv / Gemm / MatMul nodes (shape inference)."""
    from onnx import shape_inference

    m = shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in m.graph.initializer:
        shapes[t.name] = tuple(t.dims)
    total = 0.0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if not out:
            continue
        if n.op_type == "Conv":
            w = shapes.get(n.input[1])
            if w:
                total += 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0])
            if a:
                k = a[-1] if not (n.op_type == "Gemm" and any(x.name == "transA" and x.i for x in n.attribute)) else a[0]
                total += 2.0 * float(np.prod(out)) * float(k)
    return total


def load_net(name: str, *, seed: int = 0):
    """A bench network by name -> (onnx.ModelProto, input array, description). ``name`` is a
    key of SPACE_NETS (MODELS and FRONT: built in torch, exported to ONNX) or of LIGHT_MODELS
    (model-zoo graph)."""
    from cosearch.compile.frontend import torch_to_onnx

    if name in LIGHT_MODELS:
        model = randomized_light(name, seed=seed)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        shape = tuple(int(d.dim_value) for d in dims)
        x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
        return model, x, {"kind": "onnx-zoo", "path": str(light_path(name)), "seed": seed}
    if name not in SPACE_NETS:
        raise KeyError(f"unknown bench network {name!r}; known: {', '.join(list(SPACE_NETS) + list(LIGHT_MODELS))}")
    import torch

    from cosearch.space import create_space

    space_name, arch, settings = SPACE_NETS[name]
    space = create_space(space_name, **settings)
    net = space.build(arch, seed=seed).eval()
    shape = tuple(space.input_shape(arch, 1))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    model = torch_to_onnx(net, (torch.from_numpy(x),))
    return model, x, {"kind": "space", "space": space_name, "arch": arch, "settings": settings, "seed": seed,
                      "torch_module": net}


def matmul_model(n: int):
    """An ONNX graph of one n x n FP32 ``MatMul`` (inputs ``a``, ``b``): the peak-rate probe."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def ort_session(model, threads: int, *, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
