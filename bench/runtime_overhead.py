"""Where a small network's end-to-end time goes beyond its kernels, and which runtime settings remove it.

    python bench/runtime_overhead.py --schedules DIR                    # NB201 bench net + mbv2-small
    python bench/runtime_overhead.py --schedules DIR --archs 4 --load  # + 4 random NB201 archs, + one core busy

The search's own networks (NB201 cells at 32x32, mbv2 at 64x64) are ~30-100 kernel calls of
2-70 us. Per network, compiled from the database ``--schedules`` (tune it first, e.g.
``cosearch tune --time 5m``; nothing is tuned here), this times in one process, interleaved
(``--rounds`` rounds, each timing every variant in turn, so load that comes and goes hits all
alike):

- TVM at 1 and at 2 threads with the pool's default affinity (workers pinned one per core),
  2 threads with the workers free to run on any core (``runtime.config_threadpool`` mode -3),
  and the same module built with the parallel loops of small kernels made serial
  (``codegen.serial_small``) at 2 threads;
- ONNX Runtime on the same ONNX graph at 1 and 2 intra-op threads;
- and, in a fresh process right after, the module at TVM's own defaults (``TVM_NUM_THREADS``
  unset, no pool configuration): what cosearch ran with before ``compile/deploy/threads.py``.

Then, at 1 and 2 threads, the Relax VM's calls one by one (``bench.latency_model.profile_vm``):
the kernels' time inside the module, the same kernel calls repeated alone (hot: what the tuner
measures) and once after the pool idled (idle), the VM's builtins, and the rest (the VM's own
dispatch between calls). ``--load`` repeats the interleaved timing with one busy process per
``--load-procs`` (default 1: one of the two cores taken), the state a shared machine is in.

Times things: run it alone. Writes ``bench/results/runtime_overhead.json`` (resolved config, CPU,
machine key) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MODELS, busy_processes, load_net, ort_session, print_table, stop_processes, time_calls, write_results  # noqa: E402

#: runtime.config_threadpool affinity modes (tvm/src/runtime/threading_backend.h)
PINNED, SHARED = 1, -3


def interleave(variants: dict[str, tuple[Callable[[], None], Callable[[], Any]]], *, rounds: int, repeat: int,
               min_ms: float) -> dict[str, list[float]]:
    """``variants``: name -> (set-up, call). Each round sets every variant up and times it in turn."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for k in order:
            setup, fn = variants[k]
            setup()
            samples[k] += time_calls(fn, repeat=repeat, warmup=2, min_ms=min_ms)["samples"]
    return samples


def _variants(executables: dict[str, Any], model, x: np.ndarray, cores: int) -> dict[str, tuple]:
    import tvm

    dev = tvm.cpu()
    xt = tvm.runtime.tensor(x, dev)
    config = tvm.get_global_func("runtime.config_threadpool")
    cpus = [str(i) for i in range(cores)]
    out: dict[str, tuple] = {}
    for tag, ex in executables.items():
        vm = tvm.relax.VirtualMachine(ex, dev)
        main = vm["main"]
        run = (lambda m=main: m(xt))
        if tag == "tvm":
            out["tvm_t1"] = (lambda: config(PINNED, 1, cpus[:1]), run)
            out["tvm_t2"] = (lambda: config(PINNED, 2, cpus[:2]), run)
            out["tvm_t2_shared"] = (lambda: config(SHARED, 2, cpus[:2]), run)
        else:
            out[f"{tag}_t2"] = (lambda: config(PINNED, 2, cpus[:2]), run)
            out[f"{tag}_t1"] = (lambda: config(PINNED, 1, cpus[:1]), run)
    for t in (1, 2):
        sess = ort_session(model, t)
        name = sess.get_inputs()[0].name
        out[f"ort_t{t}"] = (lambda: None, (lambda s=sess, n=name: s.run(None, {n: x})))
    return out


def _profile(ex, x: np.ndarray, threads: int, runs: int, hot_repeat: int) -> dict[str, Any]:
    import tvm

    from bench import latency_model as lm

    tvm.get_global_func("runtime.config_threadpool")(PINNED, threads, [str(i) for i in range(threads)])
    p = lm.profile_vm(ex, [x], runs=runs, hot_repeat=hot_repeat)
    kernels = [c for c in p.calls if c.kernel]
    return {
        "threads": threads, "e2e_ms": p.e2e_ms, "instrumented_ms": p.instrumented_ms,
        "kernel_calls": sum(c.calls for c in kernels), "builtin_calls": sum(c.calls for c in p.calls if not c.kernel),
        "in_module_kernel_ms": p.kernel_ms, "hot_kernel_ms": sum(c.hot_ms or 0.0 for c in kernels),
        "idle_kernel_ms": sum(c.idle_ms or 0.0 for c in kernels), "builtin_ms": p.builtin_ms,
        "vm_dispatch_ms": p.instrumented_ms - p.kernel_ms - p.builtin_ms,
        "e2e_over_hot_kernels": p.e2e_ms / max(1e-9, sum(c.hot_ms or 0.0 for c in kernels)),
    }


def _probe_default(name: str, args) -> float | None:
    """The module timed in a fresh process left at TVM's defaults (``TVM_NUM_THREADS`` unset, no
    ``config_threadpool`` call): what every cosearch process ran with before ``deploy.threads``."""
    cmd = [sys.executable, __file__, "--probe-default", name, "--schedules", args.schedules, "--target", args.target,
           "--seed", str(args.seed)]
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        return float(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"  default probe failed: {r.stderr.strip()[-300:]}", file=sys.stderr)
        return None


def _run_probe(args) -> int:
    os.environ.pop("TVM_NUM_THREADS", None)  # cosearch's import set it; the probe wants TVM's own default
    import tvm

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target

    name = args.probe_default
    model, x, _ = load_net(name, seed=args.seed) if not name.startswith("nb201:") else _nb201_arch(name[6:], args.seed)
    ex = engine.compile_plan(engine.plan(from_onnx(model), load_target(args.target)), Path(args.schedules))
    dev = tvm.cpu()
    xt = tvm.runtime.tensor(x, dev)
    main = tvm.relax.VirtualMachine(ex, dev)["main"]
    best = min(time_calls(lambda: main(xt), repeat=args.repeat, warmup=2, min_ms=args.min_ms)["median"]
               for _ in range(3))
    print(best)
    return 0


def _summary(samples: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.median(v)) for k, v in samples.items()}


def one_net(name: str, args, target, db: Path) -> dict[str, Any]:
    from cosearch.compile import engine
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.storage.database import open_database

    if name in MODELS or not name.startswith("nb201:"):
        model, x, desc = load_net(name, seed=args.seed)
    else:
        model, x, desc = _nb201_arch(name.split(":", 1)[1], args.seed)
    imported = from_onnx(model)
    plan = engine.plan(imported, target)
    pred = engine.predict_latency(plan, db)
    ex = engine.compile_plan(plan, db)
    exes = {"tvm": ex}
    if args.serial_small:
        exes["serial"] = compile_with_database(imported.mod, target, open_database(db), kernel_cache=None,
                                               serial_below_us=args.serial_small)
    cores = os.cpu_count() or 1
    variants = _variants(exes, model, x, cores)
    quiet = _summary(interleave(variants, rounds=args.rounds, repeat=args.repeat, min_ms=args.min_ms))
    row: dict[str, Any] = {"net": name, "desc": {k: v for k, v in desc.items() if k != "torch_module"},
                           "tasks": len([t for t in plan.tasks if t.tunable]),
                           "db_kernel_sum_ms": pred.known_ms, "db_missing": len(pred.missing)}
    row.update({f"{k}_ms": v for k, v in quiet.items()})
    row["best_tvm_over_best_ort"] = min(v for k, v in quiet.items() if not k.startswith("ort")) / min(
        quiet["ort_t1"], quiet["ort_t2"])
    row["tvm_process_default_ms"] = _probe_default(name, args)
    row["profile"] = [_profile(ex, x, t, args.runs, args.hot_repeat) for t in (1, 2)]
    if args.load:
        busy = busy_processes(args.load_procs)
        try:
            time.sleep(0.5)
            loaded = _summary(interleave(variants, rounds=args.rounds, repeat=args.repeat, min_ms=args.min_ms))
        finally:
            stop_processes(busy)
        row.update({f"loaded_{k}_ms": v for k, v in loaded.items()})
        row["loaded_slowdown"] = {k: loaded[k] / quiet[k] for k in quiet}
    return row


def _nb201_arch(arch: str, seed: int):
    import torch

    from cosearch.compile.frontend import torch_to_onnx
    from cosearch.space import create_space

    space = create_space("nb201")
    net = space.build(arch, seed=seed).eval()
    x = np.random.default_rng(seed).standard_normal(tuple(space.input_shape(arch, 1))).astype(np.float32)
    return torch_to_onnx(net, (torch.from_numpy(x),)), x, {"kind": "space", "space": "nb201", "arch": arch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedules", required=True, help="a tuned schedule database of this machine")
    ap.add_argument("--nets", default="nb201,mbv2-small")
    ap.add_argument("--archs", type=int, default=0, help="also this many random NB201 archs (seeded)")
    ap.add_argument("--target", default="host")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--min-ms", type=float, default=20.0, help="each timing is the mean of calls lasting this long")
    ap.add_argument("--runs", type=int, default=20, help="instrumented runs per profile")
    ap.add_argument("--hot-repeat", type=int, default=20)
    ap.add_argument("--serial-small", type=float, default=0.0,
                    help="also time the module with kernels under this many us (database) made serial")
    ap.add_argument("--load", action="store_true", help="repeat the timing with busy processes running")
    ap.add_argument("--load-procs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--probe-default", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe_default:
        return _run_probe(args)
    # the pool's size is fixed when it starts: every core, before any other TVM call
    os.environ["TVM_NUM_THREADS"] = str(os.cpu_count() or 1)
    import tvm

    if tvm.get_global_func("runtime.NumThreads")() != (os.cpu_count() or 1):
        print("error: TVM's thread pool started before this script could size it", file=sys.stderr)
        return 2

    from cosearch.compile.target import load_target
    target = load_target(args.target)
    nets = [n for n in args.nets.split(",") if n]
    if args.archs:
        from cosearch.space import create_space

        space = create_space("nb201")
        rng = np.random.default_rng(args.seed)
        nets += [f"nb201:{space.sample(rng)}" for _ in range(args.archs)]
    config = {**vars(args), "nets": nets, "target": target.to_dict(), "machine_key": target.machine_key()}
    rows: list[dict[str, Any]] = []
    path = None
    for n in nets:
        t0 = time.perf_counter()
        rows.append(one_net(n, args, target, Path(args.schedules)))
        rows[-1]["wall_s"] = time.perf_counter() - t0
        path = write_results("runtime_overhead", config, rows, args.out, machine_key=target.machine_key())
        r = rows[-1]
        print(f"  {n[:40]:40s} tvm t1 {r['tvm_t1_ms']:.4f}  t2 {r['tvm_t2_ms']:.4f}  ort t1 {r['ort_t1_ms']:.4f}  "
              f"t2 {r['ort_t2_ms']:.4f} ms  ({r['wall_s']:.0f} s)", flush=True)
    cols = ["net", "db_kernel_sum_ms", "tvm_process_default_ms", "tvm_t1_ms", "tvm_t2_ms", "tvm_t2_shared_ms"]
    cols += ["serial_t1_ms", "serial_t2_ms"] if args.serial_small else []
    cols += ["ort_t1_ms", "ort_t2_ms", "best_tvm_over_best_ort"]
    print_table([{**r, "net": r["net"][:28]} for r in rows], cols)
    prof = [{"net": r["net"][:28], **p} for r in rows for p in r["profile"]]
    print_table(prof, ["net", "threads", "e2e_ms", "kernel_calls", "in_module_kernel_ms", "hot_kernel_ms", "idle_kernel_ms",
                       "builtin_ms", "vm_dispatch_ms", "e2e_over_hot_kernels"])
    if args.load:
        print_table([{"net": r["net"][:28], **{k: v for k, v in r["loaded_slowdown"].items()}} for r in rows],
                    ["net", *rows[0]["loaded_slowdown"]])
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
