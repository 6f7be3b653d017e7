"""End-to-end latency at batch 1 on the search space's own networks and model-zoo graphs:
TVM tuned for 2 and 10 minutes beside ONNX Runtime and PyTorch, every engine at its best
thread count, on a quiet machine and with one core busy -- one interleaved run per network.

Networks (``--nets``): mbv2-small and the NB201 bench net (``bench.common.MODELS``), three
NB201 networks on the front of a real joint search (``bench/front_nb201.json``: front-lo,
front-mid, front-hi) and the ONNX model-zoo graphs of the ``onnx`` package (SqueezeNet,
ShuffleNet, ResNet-50, Inception v1; 224x224, seeded random weights). PyTorch (eager) runs the
space networks; the model-zoo graphs exist only as ONNX, and converting them (onnx2torch)
needs torchvision, whose ops do not load against our torch build (n/a).

Per network, resumable (the work folder says how far it got; ``--status`` prints it):

1. **tune**: ``TuneConfig.long`` (what ``cosearch tune --time`` runs) for each budget of
   ``--budgets`` (default 2m,10m), continuing in one database; after each budget the database
   is copied to ``at-<budget>/`` with ``done.json``. A run killed mid-budget restarts that
   budget from the previous copy.
2. **time**: the database copies compiled (checked against ORT's output) and timed
   interleaved with ORT and PyTorch at 1 and 2 threads (``deploy.threads``: the pool's
   threads free to run on any core, what artifacts run with), and "tvm-<budget>-pinned": the
   same module at 2 threads pinned one per core, how cosearch ran before ``deploy.threads``
   (the old default, measured in the same run). Then the same again with one busy process
   (one of the two cores taken). ``timing.json`` in the network's folder.
3. **report**: per engine the best quiet and loaded median and their thread counts, the ratio
   to ORT's best, the slowdown under load (loaded best / quiet best) beside ORT's, the kernel
   sum of the database against the 2-thread end-to-end median, and a latency fit from the
   other networks (``bench.latency_model``, leave one network out).

    python bench/latency.py                        # everything (~2 h: tuning is 12 min a network)
    python bench/latency.py --nets nb201,mbv2-small,front-lo,front-mid,front-hi
    python bench/latency.py --quick                # nb201 + squeezenet, 20 s + 40 s (minutes)
    python bench/latency.py --status               # how far the work folder got

The work folder is per CPU (``runs/bench-latency/<machine key>``): schedules and timings of two
CPUs never mix. Writes ``bench/results/latency_real.json`` (``complete: false`` until every
network is timed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (LIGHT_MODELS, ROOT, SPACE_NETS, busy_processes, load_net, onnx_flops,  # noqa: E402
                          ort_session, print_table, stop_processes, time_calls, write_results)

ALL = list(SPACE_NETS) + list(LIGHT_MODELS)
DEFAULT_NETS = ["mbv2-small", "nb201", "front-lo", "front-mid", "front-hi", *LIGHT_MODELS]
QUICK = {"nets": "nb201,squeezenet", "budgets": "20s,60s", "rounds": 3}
COUNTS = (1, 2)
#: runtime.config_threadpool affinity mode: one worker pinned per core (TVM's own default)
PINNED = 1


# --------------------------------------------------------------------------- stage 1: tune
def _tune(name: str, imported, target, work: Path, labels: list[str], budgets: list[float], seed: int) -> list[dict]:
    """Tune ``name`` to every budget (resuming from the last finished one) -> per budget its
    ``done.json`` (label, trials, tune_s, db)."""
    from cosearch.compile import engine
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.tuning.session import tune_tasks

    live = work / "db"
    out: list[dict] = []
    prev_snap, prev_budget = None, 0.0
    for label, budget in zip(labels, budgets):
        snap = work / f"at-{label}"
        done = snap / "done.json"
        if done.exists():
            out.append(json.loads(done.read_text()))
            prev_snap, prev_budget = snap, budget
            continue
        shutil.rmtree(live, ignore_errors=True)  # a budget killed half-way restarts from the last copy
        if prev_snap is not None:
            shutil.copytree(prev_snap, live, ignore=shutil.ignore_patterns("done.json"))
        live.mkdir(parents=True, exist_ok=True)
        plan = engine.plan(imported, target)
        t0 = time.perf_counter()
        cfg = TuneConfig.long(budget - prev_budget, seed=seed)
        oc = tune_tasks(plan.tasks, target, database_dir=live, trials=cfg.trials, config=cfg)
        info = {"label": label, "budget_s": budget, "trials": oc.trials_run, "tune_s": time.perf_counter() - t0,
                "search": oc.search, "db": str(snap)}
        tmp = work / f".at-{label}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(live, tmp)
        (tmp / "done.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        os.replace(tmp, snap)
        print(f"  {name}: tuned to {label} ({oc.trials_run} trials, {info['tune_s']:.0f} s)", flush=True)
        out.append(info)
        prev_snap, prev_budget = snap, budget
    return out


# --------------------------------------------------------------------------- stage 2: time
Engine = dict  # threads -> (set-up before timing, call)


def _engines(name: str, model, x, desc: dict, plan, tuned: list[dict]) -> tuple[dict[str, Engine], dict[str, dict]]:
    """Every engine of one network, callable at each thread count it runs at, and per TVM
    engine what the report needs (budget, trials, error vs ORT, kernel sum, ...)."""
    import numpy as np
    import torch
    import tvm

    from bench import latency_model as lm
    from cosearch.compile.deploy import threads as th
    from cosearch.compile.pipeline import compile_plan, task_reports

    dev = tvm.cpu()
    xt = tvm.runtime.tensor(x, dev)
    engines: dict[str, Engine] = {}
    extra: dict[str, dict] = {}
    sessions = {t: ort_session(model, t) for t in COUNTS}
    iname = sessions[1].get_inputs()[0].name
    ref = sessions[2].run(None, {iname: x})[0]
    engines["onnxruntime"] = {t: (None, (lambda s=sessions[t]: s.run(None, {iname: x}))) for t in COUNTS}
    net = desc.get("torch_module")
    if net is not None:
        xt_torch = torch.from_numpy(x)

        def eager():
            with torch.inference_mode():
                return net(xt_torch)

        engines["torch-eager"] = {t: ((lambda t=t: torch.set_num_threads(t)), eager) for t in COUNTS}
    pool = tvm.get_global_func("runtime.config_threadpool")
    cpus = [str(c) for c in th.usable_cpus()]
    for info in tuned:
        db = Path(info["db"])
        choices: list = []
        vm = tvm.relax.VirtualMachine(compile_plan(plan, db, report=choices), dev)
        main = vm["main"]
        th.apply(th.RuntimeSettings(2))
        out = main(xt)
        out = out if hasattr(out, "numpy") else out[0]
        err = float(np.abs(out.numpy() - ref).max() / max(1e-12, float(np.abs(ref).max())))
        src = [r.source for r in task_reports(plan, db, None, choices)]
        feats = lm.plan_features(plan, db)
        key = f"tvm-{info['label']}"
        engines[key] = {t: ((lambda t=t: th.apply(th.RuntimeSettings(t))), (lambda m=main: m(xt))) for t in COUNTS}
        engines[f"{key}-pinned"] = {2: ((lambda: pool(PINNED, 2, cpus[:2])), (lambda m=main: m(xt)))}
        meta = {"budget": info["label"], "trials": info["trials"], "tune_s": round(info["tune_s"], 1),
                "rel_err_vs_ort": err, "tasks": len(src), "tasks_db": src.count("db"),
                "tasks_transfer": src.count("transfer"), "tasks_fallback": src.count("fallback"),
                "tasks_untuned": src.count("untuned"), "kernel_sum_ms": feats.kernel_ms, "_features": feats,
                "_db": db}
        extra[key] = meta
        extra[f"{key}-pinned"] = {"budget": info["label"], "settings": "2 threads pinned (before deploy.threads)"}
        if err > 1e-3:
            print(f"  WARNING {name} {key}: output differs from ORT's (max rel err {err:.2e})", flush=True)
    return engines, extra


def _time(engines: dict[str, Engine], rounds: int, min_ms: float) -> dict[str, dict[int, float]]:
    """Interleaved timing: per round, per thread count, every engine in turn (the order
    reversed every other round) -> engine -> threads -> median ms."""
    import numpy as np

    samples: dict[tuple[str, int], list[float]] = {}
    names = list(engines)
    for r in range(max(1, rounds)):
        for t in COUNTS:
            for name in (names if r % 2 == 0 else names[::-1]):
                if t not in engines[name]:
                    continue
                setup, call = engines[name][t]
                if setup is not None:
                    setup()
                samples.setdefault((name, t), []).extend(
                    time_calls(call, repeat=3, warmup=1 if r else 3, min_ms=min_ms)["samples"])
    out: dict[str, dict[int, float]] = {}
    for (name, t), v in samples.items():
        out.setdefault(name, {})[t] = float(np.median(v))
    return out


def _time_net(name: str, loaded_net: tuple, work: Path, tuned: list[dict], args, target) -> list[dict]:
    """Stage 2 for one network (cached in ``timing.json``) -> its rows."""
    cached = work / "timing.json"
    labels = [t["label"] for t in tuned]
    if cached.exists():
        data = json.loads(cached.read_text())
        if data.get("budgets") == labels:
            return data["rows"]
    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.deploy import threads as th

    model, x, desc = loaded_net
    plan = engine.plan(from_onnx(model, **({"layout": args.layout} if args.layout else {})), target)
    engines, extra = _engines(name, model, x, desc, plan, tuned)
    quiet = _time(engines, args.rounds, args.min_ms)
    busy = busy_processes(1)
    try:
        time.sleep(0.5)
        loaded = _time(engines, args.rounds, args.min_ms)
    finally:
        stop_processes(busy)
    th.apply(th.RuntimeSettings(len(th.usable_cpus())))
    rows = _rows(name, onnx_flops(model), quiet, loaded, extra)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"budgets": labels, "rows": rows}, indent=1, default=str) + "\n")
    os.replace(tmp, cached)
    return rows


def _best(medians: dict[int, float]) -> tuple[float, int]:
    t = min(medians, key=medians.get)
    return medians[t], t


def _rows(name: str, flops: float, quiet: dict, loaded: dict, extra: dict[str, dict]) -> list[dict]:
    ort_q, _ = _best(quiet["onnxruntime"])
    ort_l, _ = _best(loaded["onnxruntime"])
    rows = []
    for eng in quiet:
        q, qt = _best(quiet[eng])
        lo, lt = _best(loaded[eng])
        row: dict[str, Any] = {
            "net": name, "engine": eng, "quiet_ms": q, "quiet_threads": qt, "x_vs_ort": q / ort_q,
            "loaded_ms": lo, "loaded_threads": lt, "slowdown": lo / q, "ort_slowdown": ort_l / ort_q,
            "loaded_x_vs_ort": lo / ort_l, "gflops": flops / (q * 1e-3) / 1e9,
            "quiet_ms_2t": quiet[eng].get(2), "quiet_by_threads": quiet[eng], "loaded_by_threads": loaded[eng]}
        meta = extra.get(eng, {})
        row.update({k: v for k, v in meta.items() if not k.startswith("_")})
        if "_features" in meta and 2 in quiet[eng]:
            e2e2 = quiet[eng][2]
            row["kernel_sum_err"] = meta["kernel_sum_ms"] / e2e2 - 1.0  # kernels were timed at 2 threads
            row["_sample"] = {**asdict(meta["_features"]), "network": name, "e2e_ms": e2e2}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- stage 3: report
def _fits(rows: list[dict]) -> dict[str, Any]:
    """Per TVM row the end-to-end prediction fitted on every *other* network's samples."""
    from bench import latency_model as lm

    samples = [r["_sample"] for r in rows if "_sample" in r]
    for r in rows:
        if "_sample" in r:
            fit = lm.fit_latency([s for s in samples if s["network"] != r["net"]])
            pred = fit.predict(lm.PlanFeatures(**{k: r["_sample"][k] for k in lm.PlanFeatures.__dataclass_fields__}))
            r.update({"predicted_ms": pred, "predicted_err": pred / r["quiet_ms_2t"] - 1.0, "fit_kind": fit.kind})
    return {"fit_all": lm.fit_latency(samples).to_dict() if samples else None,
            "leave_one_network_out": lm.leave_one_network_out(samples) if len({s["network"] for s in samples}) > 1 else {}}


def _status(work: Path, nets: list[str], labels: list[str]) -> list[tuple[str, str]]:
    out = []
    for n in nets:
        d = work / n
        tuned = [lb for lb in labels if (d / f"at-{lb}" / "done.json").exists()]
        timed = (d / "timing.json").exists()
        state = "timed" if timed else (f"tuned to {tuned[-1]}" if tuned else "not started")
        out.append((n, state))
    return out


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(DEFAULT_NETS), help=f"comma-separated, from {', '.join(ALL)}")
    ap.add_argument("--budgets", default="2m,10m",
                    help="cumulative tuning clocks, each continuing the previous one in the same database")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK}")
    ap.add_argument("--target", default="host")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds (each quiet and loaded)")
    ap.add_argument("--min-ms", type=float, default=20.0, help="each timing sample lasts at least this long")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", default=None, help="conv layout at import (frontend default when omitted)")
    ap.add_argument("--work-dir", default=None, help="default: runs/bench-latency/<machine key>[-quick]")
    ap.add_argument("--status", action="store_true", help="say how far the work folder got, and stop")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from cosearch.cli_args import duration_s
    from cosearch.errors import CosearchError

    nets = [n for n in args.nets.split(",") if n]
    labels = [b.strip() for b in args.budgets.split(",") if b.strip()]
    try:
        budgets = [duration_s("budget", b) for b in labels]
    except (ValueError, CosearchError):
        budgets = []
    bad = [n for n in nets if n not in ALL]
    if bad or not nets or not budgets or budgets != sorted(set(budgets)):
        print(f"error: networks must be from {', '.join(ALL)} (got {args.nets!r}) and budgets increasing "
              f"durations such as 2m,10m (got {args.budgets!r})", file=sys.stderr)
        return 2
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    key = target.machine_key()
    work = Path(args.work_dir) if args.work_dir else ROOT / "runs" / "bench-latency" / (key + ("-quick" if args.quick else ""))
    if args.status:
        for n, state in _status(work, nets, labels):
            print(f"  {n:14s} {state}")
        print(f"work folder {work}")
        return 0
    work.mkdir(parents=True, exist_ok=True)
    mark = work / "machine.json"
    if mark.exists() and json.loads(mark.read_text())["machine_key"] != key:
        print(f"error: {work} holds schedules of {json.loads(mark.read_text())['machine_key']}, this CPU is {key}; "
              "pass another --work-dir", file=sys.stderr)
        return 2
    mark.write_text(json.dumps({"machine_key": key, "identity": target.identity()}, indent=1) + "\n")
    return _run(args, nets, labels, budgets, target, work)


def _run(args, nets: list[str], labels: list[str], budgets: list[float], target, work: Path) -> int:
    from cosearch.compile.frontend import from_onnx

    t_all = time.perf_counter()
    rows: list[dict] = []
    for name in nets:
        net = load_net(name, seed=args.seed)
        imported = from_onnx(net[0], **({"layout": args.layout} if args.layout else {}))
        tuned = _tune(name, imported, target, work / name, labels, budgets, args.seed)
        rows += _time_net(name, net, work / name, tuned, args, target)
        _write(args, nets, labels, budgets, target, work, rows, t_all)
        print(f"  {name}: timed ({time.perf_counter() - t_all:.0f} s so far)", flush=True)
    path = _write(args, nets, labels, budgets, target, work, rows, t_all)
    print()
    print_table(rows, ["net", "engine", "quiet_ms", "quiet_threads", "x_vs_ort", "loaded_ms",
                                    "loaded_threads", "slowdown", "ort_slowdown", "trials", "kernel_sum_err",
                                    "predicted_err"])
    print(f"\nwall {time.perf_counter() - t_all:.0f} s; written {path}")
    return 0


def _write(args, nets, labels, budgets, target, work: Path, rows: list[dict], t_all: float) -> Path:
    fits = _fits(rows)
    done = sorted({r["net"] for r in rows})
    config = {"nets": nets, "budgets": labels, "budgets_s": budgets, "target": target.to_dict(),
              "machine_key": target.machine_key(), "thread_counts": list(COUNTS), "rounds": args.rounds,
              "min_ms": args.min_ms, "seed": args.seed, "quick": args.quick, "layout": args.layout,
              "tune_config": "TuneConfig.long(max_seconds = budget increment, seed)", "work_dir": str(work),
              "load": "one busy Python process (one of the cores)", "front": "bench/front_nb201.json",
              "torch_for_zoo_graphs": "n/a: ONNX-only graphs; onnx2torch needs torchvision"}
    out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return write_results("latency_real", config, out, args.out, complete=len(done) == len(nets), timed=done,
                         pending=[n for n in nets if n not in done], wall_s=time.perf_counter() - t_all, **fits)


if __name__ == "__main__":
    sys.exit(main())
