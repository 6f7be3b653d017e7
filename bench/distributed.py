"""The search on workers: real Ray on this machine against one process, and the speed-up more
workers would give, simulated from a real run's recorded costs.

    python bench/distributed.py --real --max-archs 24          # engine search, inline vs --workers 2
    python bench/distributed.py --simulate runs/demo/journal.jsonl
    python bench/distributed.py --simulate runs/demo/journal.jsonl --boards

``--real``: the same search (NB201, naswot, seed, lookahead) twice from one starting schedule
database copy each: in one process, and with ``--workers 2`` (a local Ray instance). Records the
wall time of each, what the workers did, and, for architectures measured by both, the ratio of
their measured latencies (the lease must keep co-running work from corrupting measurements).
Times things: run it alone.

``--interference``: the measurement itself, with nothing else changed: the same compiled NB201
networks (a fixed database) timed by the driver alone, while two Ray workers keep screening
architectures under the lease (the driver's measurement holds it exclusive), and while they
screen without it; conditions interleaved round by round. The lease is what keeps the second
column equal to the first. Times things: run it alone.

``--simulate JOURNAL``: replays a run's journal with W workers (1, 2, 4, ..., 32): each
architecture's screening (its ``plan`` + ``accuracy`` seconds) runs on the first free worker as
soon as it is proposed (``lookahead`` 2W ahead), while the driver does the rest of the journal's
work (tuning, measuring) in order and waits where a screening it needs has not finished. The
driver's own work is the serial part: the simulation shows where it bounds the speed-up.
``--boards`` adds the case of a target measured on 1, 4 or 16 RPC boards with ``--workers``: a
tuning call of n tasks runs as ``k = min(workers, boards, n)`` parts side by side on workers
(``distributed.tune``), each costing ceil(n / k) / n of the call (budgets taken as equal); with
one part, its candidates are built on the workers (``tuning.builder.PoolBuilder``) and measured on
the boards, costing its generation + builds / workers + measurements / boards. That split is
measured on this machine first (``measure_shares``: a 64-trial call's reported build seconds, the
local runner's seconds per candidate; ``--shares`` takes it from an earlier results file); a
journal whose ``tune`` events report their builds uses its own build seconds. Archs measured
together (``--overlap``: a ``measure`` event's ``group``) run on ``min(workers, boards, archs)``
workers, one board each (``distributed.measure``); other end-to-end measurements stay serial in
the driver. Work sent to workers waits behind the screenings queued before it.

Several journals (``--simulate A B ...``): the first is the reference. Besides each journal's
own wall-time speed-up, the table gives the time to reach ``--fraction`` (0.95) of the
reference's final front hypervolume (every front scored with the reference's objectives), over
the reference's one-process time to it (``speedup_hv``): a journal of ``--overlap K`` is another
search, and this is how it compares.

Writes ``bench/results/distributed.json`` (resolved config, CPU, machine key) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_results  # noqa: E402


def _tune_parts(ev: dict[str, Any], shares: dict[str, float]) -> tuple[float, float, float]:
    """A tuning call's seconds split into (driver: candidate generation and bookkeeping, builds,
    measurements): builds as the call reported them (``builds.seconds``; else ``build_share`` of
    the call), measurements ``run_s_per_trial`` per trial (at most what is left)."""
    sec = float(ev.get("seconds") or 0.0)
    b = (ev.get("builds") or {}).get("seconds")
    build = min(sec, float(b) if b is not None else shares["build_share"] * sec)
    if "run_share" in shares:  # a fraction of the call (the journal's costs are another CPU's)
        run = min(sec - build, shares["run_share"] * sec)
    else:
        run = min(sec - build, shares["run_s_per_trial"] * float(ev.get("trials") or 0))
    return sec - build - run, build, run


def _tune_time(ev: dict[str, Any], workers: int, boards: int, shares: dict[str, float]) -> float:
    """A tuning call of one part with ``workers`` and ``boards`` (an RPC target): its candidate
    generation in the driver, its builds spread over the workers (``PoolBuilder``), its
    measurements over the boards (MetaSchedule's ``RPCRunner`` has one worker per board)."""
    trials = max(1, int(ev.get("trials") or 1))
    gen, build, run = _tune_parts(ev, shares)
    return gen + build / max(1, min(workers, trials)) + run / max(1, min(boards, trials))


def _driver_items(events: list[dict[str, Any]]) -> tuple[list[str], dict[str, float], list[tuple[str, Any]]]:
    """A journal as (proposal order, screening seconds per key, the driver's items in order):
    ``("screen", key)`` waits for a screening, ``("tune", event)``, ``("group", [seconds])`` archs
    measured together (``--overlap``: consecutive ``measure`` events of one ``group``),
    ``("work", seconds)`` anything else the driver does (measure, train), ``("front", points)``."""
    screen: dict[str, float] = {}
    order: list[str] = []
    driver: list[tuple[str, Any]] = []
    for ev in events:
        e, sec = ev.get("event"), float(ev.get("seconds") or 0.0)
        if e == "propose":
            order.append(ev["key"])
            screen[ev["key"]] = 0.0
        elif e == "plan" or (e == "accuracy" and ev.get("fidelity") != "train"):
            if ev.get("key") in screen:
                if e == "plan":
                    driver.append(("screen", ev["key"]))
                screen[ev["key"]] += sec
        elif e == "tune":
            driver.append(("tune", ev))
        elif e == "measure" and ev.get("group") is not None:
            last = driver[-1] if driver else None
            if last is not None and last[0] == "group" and last[1][0] == ev["group"]:
                last[1][1].append(sec)
            else:
                driver.append(("group", (ev["group"], [sec])))
        elif e == "measure" or (e == "accuracy" and ev.get("fidelity") == "train"):
            driver.append(("work", sec))
        elif e == "front":
            driver.append(("front", [(p[0], p[1]) for p in ev.get("points") or []]))
    return order, screen, driver


def simulate(events: list[dict[str, Any]], workers: int, lookahead: int | None = None, *, boards: int | None = None,
             shares: dict[str, float] | None = None, objectives: Any = None,
             target_hv: float | None = None) -> dict[str, Any]:
    """Wall time of the journal's work with ``workers`` (see the module doc): screening on the
    first free worker as soon as proposed; with ``boards`` (an RPC target), a tuning call's parts
    and a group's measurements also on workers (after the work queued before them), one board
    each. With ``objectives``, the hypervolume of the front over time (recomputed from the
    journal's ``front`` points) and ``t_target_s``: when it first reaches ``target_hv``."""
    from cosearch.search.pareto import hypervolume

    look = lookahead or 2 * workers
    order, screen, driver = _driver_items(events)
    free = [0.0] * workers
    heapq.heapify(free)
    done: dict[str, float] = {}
    submitted = 0
    t = 0.0

    def submit_until(n: int, now: float) -> None:
        nonlocal submitted
        while submitted < min(n, len(order)):
            k = order[submitted]
            start = max(heapq.heappop(free), now)
            done[k] = start + screen[k]
            heapq.heappush(free, done[k])
            submitted += 1

    def on_workers(jobs: list[float], k: int, now: float) -> float:
        """``jobs`` on ``k`` workers (the earliest free), none before ``now``: when the last ends."""
        slots = [max(heapq.heappop(free), now) for _ in range(k)]
        for sec in sorted(jobs, reverse=True):
            i = min(range(k), key=lambda j: slots[j])
            slots[i] += sec
        for v in slots:
            heapq.heappush(free, v)
        return max(slots)

    consumed = 0
    waited = serial = 0.0
    hv_at: list[tuple[float, float]] = []
    for kind, v in driver:
        if kind == "screen":
            consumed += 1
            submit_until(consumed + look - 1, t)
            ready = done.get(v, t)
            waited += max(0.0, ready - t)
            t = max(t, ready)
        elif kind == "front":
            if objectives is not None:
                hv_at.append((t, hypervolume(v, objectives)))
        elif kind == "tune":
            n = max(1, len(v.get("workloads") or []))
            k = min(workers, boards or 1, n)
            sec = float(v.get("seconds") or 0.0)
            if shares is None or k < 2:
                d = sec if shares is None else _tune_time(v, workers, boards or 1, shares)
                t, serial = t + d, serial + d
            else:  # parts of about equal trials; the longest has ceil(n / k) of the n tasks
                t = on_workers([sec * math.ceil(n / k) / n] * k, k, t)
        elif kind == "group":
            secs = v[1]
            k = min(workers, boards or 1, len(secs)) if shares is not None else 1
            if k < 2:
                t, serial = t + sum(secs), serial + sum(secs)
            else:
                t = on_workers(secs, k, t)
        else:
            t, serial = t + v, serial + v
    out = {"workers": workers, "boards": boards if shares is not None else None, "lookahead": look, "wall_s": t,
           "driver_work_s": serial, "driver_wait_s": waited, "screen_s": sum(screen.values())}
    if objectives is not None:
        out["final_hv"] = hv_at[-1][1] if hv_at else 0.0
        out["hv_at"] = [[round(a, 2), round(b, 5)] for a, b in hv_at]
        if target_hv is not None:
            out["t_target_s"] = next((a for a, b in hv_at if b >= target_hv - 1e-12), None)
    return out


def _journal(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A run's journal events and its resolved config (``config.json`` beside it, if any)."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cfg_path = path.parent / "config.json"
    return events, (json.loads(cfg_path.read_text()) if cfg_path.is_file() else {})


def run_simulation(journals: list[Path], shares: dict[str, float] | None = None,
                   fraction: float = 0.95) -> list[dict[str, Any]]:
    """Each journal on 1..32 workers (screening only: tuning and measuring in the driver, the
    local CPU) and, with ``shares``, an RPC target with 1, 4, 16 boards. ``speedup``: the
    journal's own one-process wall time over its wall time here. ``speedup_hv``: the time the
    first journal (the reference: one process, lookahead 1) takes to reach ``fraction`` of its
    final front hypervolume, over the time this one takes to reach that hypervolume (all fronts
    scored with the first journal's objectives)."""
    from cosearch.search.pareto import Objectives

    ref_events, ref_cfg = _journal(journals[0])
    obj = Objectives.from_dict(ref_cfg["objectives"]) if ref_cfg.get("objectives") else None
    ref = simulate(ref_events, 1, lookahead=1, objectives=obj)
    target = fraction * ref["final_hv"] if obj is not None else None
    t_ref = simulate(ref_events, 1, lookahead=1, objectives=obj, target_hv=target).get("t_target_s")
    rows = []
    for path in journals:
        events, cfg = _journal(path)
        search = cfg.get("search") or {}
        base = simulate(events, 1, lookahead=1)
        for boards in ([None] if shares is None else [None, 1, 4, 16]):
            for w in (1, 2, 4, 8, 16, 32):
                r = simulate(events, w, boards=boards, shares=shares if boards else None, objectives=obj,
                             target_hv=target)
                r.update(journal=str(path), overlap=search.get("overlap", 1), speedup=base["wall_s"] / r["wall_s"])
                r["efficiency"] = r["speedup"] / w
                r["driver_bound"] = base["wall_s"] / r["driver_work_s"] if r["driver_work_s"] else None
                if t_ref and r.get("t_target_s"):
                    r["speedup_hv"] = t_ref / r["t_target_s"]
                    r["efficiency_hv"] = r["speedup_hv"] / w
                rows.append(r)
    return rows


def as_fractions(shares: dict[str, Any]) -> dict[str, Any]:
    """``shares`` with the runner's cost as a fraction of the measured call (``run_share``), for
    journals whose costs were recorded on another CPU (a benchmark's replay): no timing of one
    CPU is added to another's, only the split of a call."""
    m = shares["measured_on"]
    return {**shares, "run_share": shares["run_s_per_trial"] * m["trials"] / m["tune_seconds"]}


def run_replay(args, shares: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The joint search replayed on a co-search benchmark (``--evaluator replay:BENCH``, its
    recorded costs, the table's accuracies) for each seed and ``--overlaps`` K (1 first: the
    reference), each journal simulated on workers and boards; -> (rows per run, medians over
    seeds per overlap, workers and boards). Runs are kept in ``--work`` and not made again."""
    import statistics

    bench = Path(args.replay)
    work = Path(args.work or f"runs/bench-distributed/{bench.name}-{args.budget}")
    overlaps = sorted({1, *(int(k) for k in args.overlaps.split(","))})
    rows = []
    for seed in range(args.seeds):
        journals = []
        for k in overlaps:
            out = work / f"k{k}-s{seed}"
            if not (out / "result.json").is_file():
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{bench}", "--estimator",
                       f"table:{args.table}", "--space", "nb201", "--budget", args.budget, "--seed", str(seed),
                       "--overlap", str(k), "--out", str(out), "--no-progress"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"replay search failed ({r.returncode}): {r.stderr[-2000:]}")
            journals.append(out / "journal.jsonl")
        print(f"  seed {seed}: {len(journals)} runs in {work}", flush=True)
        for r in run_simulation(journals, shares, args.fraction):
            r["seed"] = seed
            r.pop("hv_at", None)
            rows.append(r)
    med = []
    keys = sorted({(r["overlap"], r["boards"] or 0, r["workers"]) for r in rows})
    for k, b, w in keys:
        sel = [r for r in rows if (r["overlap"], r["boards"] or 0, r["workers"]) == (k, b, w)]
        hv = [r["speedup_hv"] for r in sel if r.get("speedup_hv")]
        med.append({"overlap": k, "boards": b or None, "workers": w, "seeds": len(sel), "reached": len(hv),
                    "speedup": statistics.median(r["speedup"] for r in sel),
                    "final_hv": statistics.median(r["final_hv"] for r in sel),
                    "speedup_hv": statistics.median(hv) if len(hv) == len(sel) else None,
                    "speedup_hv_min": min(hv) if hv else None,
                    "efficiency_hv": statistics.median(hv) / w if len(hv) == len(sel) else None})
    return rows, med


def measure_shares(args) -> dict[str, float]:
    """What a tuning call's parts cost on this machine: one call on the NB201 bench net (64
    trials, the engine's defaults) reports its build seconds; the local runner times a batch of
    the same net's heaviest kernel's candidates (design-space samples, built first): seconds
    per measured candidate."""
    import time as _t

    from bench.common import load_net
    from cosearch.compile import engine
    from cosearch.compile.codegen.fallback import fallback_schedule
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning import runner as runners
    from cosearch.compile.tuning.builder import InProcessBuilder
    from cosearch.compile.tuning.config import TuneConfig
    from tvm.s_tir import meta_schedule as ms

    target = load_target(args.target)
    plan = engine.plan(from_onnx(load_net("nb201", seed=args.seed)[0]), target)
    with tempfile.TemporaryDirectory() as d:
        out = engine.tune_tasks(plan.tasks, target, database_dir=Path(d), trials=64,
                                config=TuneConfig(trials=64, seed=args.seed, patience=None, transfer=False))
    task = max((t for t in plan.tasks if t.tunable), key=lambda t: float(t.features.flops))
    tgt = target.tvm_target()
    cands = [f for f in (fallback_schedule(task.mod, tgt, seed=s, tries=1) for s in range(16)) if f is not None]
    built = InProcessBuilder(workers=1).build([ms.builder.BuilderInput(_mod(f), tgt) for f in cands])
    inputs = [ms.runner.RunnerInput(b.artifact_path, str(tgt.kind.name), ms.arg_info.ArgInfo.from_prim_func(f))
              for b, f in zip(built, cands) if b.artifact_path]
    runner = runners.acquire_runner(target, TuneConfig())
    try:
        runner.run(inputs[:1])[0].result()  # warm the worker
        t0 = _t.perf_counter()
        for fut in runner.run(inputs):
            fut.result()
        run_s = (_t.perf_counter() - t0) / max(1, len(inputs))
    finally:
        runners.release_runner(runner)
    return {"build_share": out.builds["seconds"] / out.seconds, "run_s_per_trial": run_s,
            "measured_on": {"tune_seconds": out.seconds, "trials": out.trials_run, "build_seconds": out.builds["seconds"],
                            "runner_candidates": len(inputs), "task": task.name}}


def _mod(prim):
    import tvm

    return tvm.IRModule({"main": prim})


def _search(out: Path, sched: Path, args, workers: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "cosearch", "search", "--target", args.target, "--space", "nb201", "--estimator",
           args.estimator, "--max-archs", str(args.max_archs), "--seed", str(args.seed), "--lookahead",
           str(args.lookahead), "--schedules", str(sched), "--out", str(out), "--no-progress"]
    if workers:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"search failed ({r.returncode}): {r.stderr[-2000:]}")
    res = json.loads((out / "result.json").read_text())
    events = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    ms = {e["key"]: e["ms"] for e in events if e.get("event") == "measure" and e.get("ok") and not e.get("remeasure")}
    return {"wall_s": wall, "search_wall_s": res.get("wall_s"), "evaluated": res.get("evaluated"),
            "hypervolume": res.get("hypervolume"), "trials": res.get("trials"),
            "planned_by_workers": sum(1 for e in events if e.get("event") == "plan" and e.get("worker")),
            "plans": sum(1 for e in events if e.get("event") == "plan"), "measured": ms}


def run_real(args, keep: Path | None = None) -> list[dict[str, Any]]:
    """The two runs (``keep``: copy the one-process run's journal there, for ``--simulate``)."""
    from cosearch.compile.engine import default_schedules_dir
    from cosearch.compile.target import load_target
    from cosearch.distributed.lease import overlaps, read_holds

    target = load_target(args.target)
    start = Path(args.schedules) if args.schedules else default_schedules_dir(target)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cosearch-dist-") as tmp:
        runs = {}
        for tag, workers in (("inline", None), ("ray2", 2)):
            sched = Path(tmp) / f"sched-{tag}"
            if start.is_dir():
                shutil.copytree(start, sched)
            runs[tag] = _search(Path(tmp) / tag, sched, args, workers)
            holds = read_holds(Path(tmp) / tag / "lease") if workers else []
            runs[tag]["lease_holds"] = len(holds)
            runs[tag]["lease_overlaps"] = len(overlaps(holds))
            print(f"  {tag}: {runs[tag]['wall_s']:.0f} s, evaluated {runs[tag]['evaluated']}", flush=True)
            if tag == "inline" and keep is not None:
                shutil.copy(Path(tmp) / tag / "journal.jsonl", keep)
        common = sorted(set(runs["inline"]["measured"]) & set(runs["ray2"]["measured"]))
        ratios = [runs["ray2"]["measured"][k] / runs["inline"]["measured"][k] for k in common]
        for tag, r in runs.items():
            row = {k: v for k, v in r.items() if k != "measured"}
            row["run"] = tag
            if tag == "ray2":
                row["wall_over_inline"] = r["wall_s"] / runs["inline"]["wall_s"]
                row["common_measured"] = len(common)
                if ratios:
                    ratios.sort()
                    row["measure_ratio_median"] = ratios[len(ratios) // 2]
                    row["measure_ratio_min"], row["measure_ratio_max"] = ratios[0], ratios[-1]
            rows.append(row)
    return rows


def run_interference(args) -> list[dict[str, Any]]:
    """Median measured ms of each network per condition (see the module doc)."""
    import threading

    import numpy as np

    from cosearch.compile import engine
    from cosearch.compile.deploy.measure import SEARCH_MEASURE, measure
    from cosearch.compile.target import load_target
    from cosearch.distributed.lease import DeviceLease
    from cosearch.distributed.pool import RayPool
    from cosearch.distributed.screen import screen
    from cosearch.search.api import worker_evaluator
    from cosearch.search.config import SearchConfig
    from cosearch.space import create_space

    target = load_target(args.target)
    db = Path(args.schedules) if args.schedules else engine.default_schedules_dir(target)
    space = create_space("nb201")
    rng = np.random.default_rng(args.seed)
    nets = []
    for _ in range(args.nets):
        arch = space.sample(rng)
        p = engine.plan(engine.import_arch(space, arch, seed=args.seed), target)
        nets.append((arch, p, engine.compile_plan(p, db)))
    feed = [space.sample(rng) for _ in range(64)]
    cfg = SearchConfig(space="nb201", estimator=args.estimator, target=args.target, max_archs=1).to_dict()
    tmp = Path(tempfile.mkdtemp(prefix="cosearch-interf-"))
    lease = DeviceLease.for_run(tmp)
    base = {"factory": worker_evaluator, "search": cfg, "schedules": str(tmp / "worker-db")}
    specs = {"workers, lease": {**base, "lease": {"dir": lease.dir, "host": lease.host}},
             "workers, no lease": {**base, "lease": None}}
    pool = RayPool(workers=2)
    samples: dict[tuple[int, str], list[float]] = {}
    screened = {c: 0 for c in specs}
    try:
        for c, spec in specs.items():  # warm the workers (imports, evaluator) outside the timing
            [pd.result() for pd in [pool.submit(screen, spec, feed[i]) for i in range(2)]]
        for r in range(args.rounds):
            order = ["alone", *specs][r % 3:] + ["alone", *specs][:r % 3]
            for cond in order:
                stop = threading.Event()

                def feeder(spec=specs.get(cond), cond=cond) -> None:
                    i = 0
                    while not stop.is_set():
                        pend = [pool.submit(screen, spec, feed[(i + k) % len(feed)]) for k in range(2)]
                        for pd in pend:
                            pd.result()
                        screened[cond] += 2
                        i += 2

                th = threading.Thread(target=feeder, daemon=True) if cond != "alone" else None
                if th is not None:
                    th.start()
                    time.sleep(1.0)  # the workers are busy before the first measurement
                for k, (_arch, p, exe) in enumerate(nets):
                    ctx = lease.measuring("measure") if cond == "workers, lease" else contextlib.nullcontext()
                    with ctx:
                        res = measure(exe, target, p.imported.inputs, config=SEARCH_MEASURE)
                    samples.setdefault((k, cond), []).append(res.latency.median_ms)
                stop.set()
                if th is not None:
                    th.join()
    finally:
        pool.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for k, (arch, _p, _exe) in enumerate(nets):
        med = {c: float(np.median(samples[(k, c)])) for c in ("alone", *specs)}
        rows.append({"arch": arch, "alone_ms": med["alone"], "lease_ms": med["workers, lease"],
                     "no_lease_ms": med["workers, no lease"], "lease_over_alone": med["workers, lease"] / med["alone"],
                     "no_lease_over_alone": med["workers, no lease"] / med["alone"], "rounds": args.rounds})
    rows.append({"arch": "(screened by the workers meanwhile)", **{f"screened[{c}]": n for c, n in screened.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="engine search inline vs --workers 2 on this machine")
    ap.add_argument("--simulate", default=None, nargs="+", metavar="JOURNAL",
                    help="real runs' journal.jsonl (the first is the reference for the time to the hypervolume)")
    ap.add_argument("--interference", action="store_true",
                    help="driver measurements alone vs beside two screening workers, with and without the lease")
    ap.add_argument("--boards", action="store_true",
                    help="with --simulate: also builds on the workers and measurements on 1, 4, 16 boards "
                         "(measures a tuning call's build share and the runner's cost per candidate first)")
    ap.add_argument("--shares", default=None, metavar="RESULTS",
                    help="with --boards: take the tuning call's split from an earlier results file's 'shares'")
    ap.add_argument("--replay", default=None, metavar="BENCH",
                    help="simulate replayed joint searches on a co-search benchmark (cosearch bench build)")
    ap.add_argument("--table", default="bench/results/nb201_subset725_table.csv",
                    help="with --replay: the accuracy table (NAS-Bench-201 subset, NASLib)")
    ap.add_argument("--overlaps", default="1,2,4,8", help="with --replay: the --overlap values to run")
    ap.add_argument("--seeds", type=int, default=8, help="with --replay: seeds 0..N-1")
    ap.add_argument("--budget", default="10m", help="with --replay: each search's (replayed) budget")
    ap.add_argument("--work", default=None, help="with --replay: where the runs are kept (resumable)")
    ap.add_argument("--fraction", type=float, default=0.95,
                    help="the hypervolume to reach: this fraction of the reference run's final front's")
    ap.add_argument("--nets", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--max-archs", type=int, default=24)
    ap.add_argument("--lookahead", type=int, default=4)
    ap.add_argument("--estimator", default="naswot")
    ap.add_argument("--target", default="host")
    ap.add_argument("--schedules", default=None, help="starting schedule database (copied; default: the target's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not args.real and not args.simulate and not args.interference and not args.replay:
        print("error: give --real, --interference, --simulate JOURNAL and/or --replay BENCH", file=sys.stderr)
        return 2
    if args.replay and not (Path(args.replay) / "header.json").is_file():
        print(f"error: --replay {args.replay!r} is not a co-search benchmark (no header.json)", file=sys.stderr)
        return 2
    for j in args.simulate or []:
        if not Path(j).is_file():
            print(f"error: --simulate {j!r} is not a file (a search's journal.jsonl)", file=sys.stderr)
            return 2
    if args.shares and not (Path(args.shares).is_file() and "shares" in json.loads(Path(args.shares).read_text())):
        print(f"error: --shares {args.shares!r} is not a results file of --boards (no 'shares')", file=sys.stderr)
        return 2
    from cosearch.compile.target import load_target

    target = load_target(args.target)
    out: dict[str, Any] = {}
    journals = [Path(j) for j in args.simulate or []]
    if args.real:
        keep = Path(tempfile.mkdtemp(prefix="cosearch-dist-journal-")) / "journal.jsonl"
        out["real"] = run_real(args, keep)
        journals = journals or [keep]
        out["simulated_from"] = "the one-process run above" if not args.simulate else args.simulate
        print_table(out["real"], ["run", "wall_s", "evaluated", "plans", "planned_by_workers", "hypervolume",
                                  "wall_over_inline", "common_measured", "measure_ratio_median", "lease_overlaps"])
    if args.interference:
        out["interference"] = run_interference(args)
        print_table(out["interference"], ["arch", "alone_ms", "lease_ms", "no_lease_ms", "lease_over_alone",
                                          "no_lease_over_alone"])
    shares = None
    if (journals or args.replay) and args.boards:
        if args.shares:
            shares = out["shares"] = json.loads(Path(args.shares).read_text())["shares"]
        else:
            shares = out["shares"] = measure_shares(args)
        print(f"tuning call: builds {shares['build_share']:.0%} of its time; "
              f"{shares['run_s_per_trial'] * 1e3:.0f} ms per measured candidate")
        if args.replay:
            shares = out["shares"] = as_fractions(shares)
    if args.replay:
        out["replay_runs"], out["replay"] = run_replay(args, shares)
        hdr = json.loads((Path(args.replay) / "header.json").read_text())
        out["replay_bench"] = {"path": args.replay, "machine_key": hdr.get("machine_key"), "cpu": hdr.get("cpu")}
        print_table(out["replay"], ["overlap", "boards", "workers", "seeds", "reached", "speedup", "final_hv",
                                    "speedup_hv", "speedup_hv_min", "efficiency_hv"])
    if journals:
        out["simulated"] = run_simulation(journals, shares, args.fraction)
        print_table(out["simulated"], ["overlap", "workers", "boards", "wall_s", "speedup", "efficiency",
                                       "driver_work_s", "driver_bound", "final_hv", "t_target_s", "speedup_hv",
                                       "efficiency_hv"])
    path = write_results("distributed", vars(args), [], args.out, machine_key=target.machine_key(),
                         tvm_num_threads=os.environ.get("TVM_NUM_THREADS"), **out)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
