"""What the compiler engine costs and what a kill loses.

Three measurements, one run (shared machine: compare within the run):

1. **kill -9 at a random moment** (``--kills`` times): a real ``cosearch tune`` of an
   NB201 network into a fresh database is killed after a seeded random delay; we
   count the trials the database + history kept, the seconds since the last
   persisted batch (work lost) and the batch duration (the bound).
2. **per-batch persistence overhead**: an in-process ``engine.tune_tasks`` run; the
   seconds spent appending records + history after batches vs the tuning time.
3. **new architecture, warm database, cold process**: a fresh Python process plans,
   compiles and measures an NB201 architecture never seen before whose tasks the
   database already holds (no tuning): the cost a search pays per such arch.

Writes ``bench/results/engine_cost.json`` (with the resolved config) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|",
]


def _batches(db: Path) -> list[dict]:
    from cosearch.compile.storage import history

    return [e for e in history.read(db) if e["event"] == "batch"] if db.exists() else []


def kill_runs(n: int, seed: int, work: Path, lo: float, hi: float) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        db = work / f"kill{k}" / "db"
        delay = rng.uniform(lo, hi)
        cmd = [sys.executable, "-m", "cosearch", "tune", f"nb201:{ARCHS[0]}", "--target", "host", "--trials", "400",
               "--patience", "100", "--schedules", str(db), "--out", str(work / f"kill{k}" / "out")]
        t0 = time.time()
        p = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.time() - t0 < delay and p.poll() is None:
            time.sleep(0.05)
        finished = p.poll() is not None
        p.send_signal(signal.SIGKILL)
        p.wait()
        t_kill = time.time()
        b = _batches(db)
        times = [e["t"] for e in b]
        gaps = [y - x for x, y in zip(times, times[1:])]
        rec_file = db / "database_tuning_record.json"
        out.append({
            "delay_s": round(delay, 2), "finished_before_kill": finished,
            "batches_kept": len(b), "trials_kept": sum(e["trials"] for e in b),
            "records_kept": len([x for x in rec_file.read_text().splitlines() if x.strip()]) if rec_file.exists() else 0,
            "s_since_last_batch": round(t_kill - times[-1], 2) if times else None,
            "median_batch_s": round(sorted(gaps)[len(gaps) // 2], 2) if gaps else None,
        })
        print(f"kill {k}: {out[-1]}", flush=True)
    return out


def persist_overhead(trials: int, work: Path) -> dict:
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.space import create_space

    space = create_space("nb201")
    target = load_target("host")
    imported = engine.import_arch(space, ARCHS[1], seed=0)
    plan = engine.plan(imported, target)
    db = work / "overhead-db"
    t0 = time.perf_counter()
    out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=trials, config=TuneConfig(trials=trials))
    wall = time.perf_counter() - t0
    return {"trials": out.trials_run, "tune_s": round(wall, 2), "persist_s": round(out.persist_seconds, 3),
            "persist_share": round(out.persist_seconds / wall, 4), "records_written": out.records_written,
            "s_per_trial": round(wall / max(1, out.trials_run), 3), "db": str(db)}


COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from cosearch.compile import engine
from cosearch.compile.target import load_target
from cosearch.compile.deploy.measure import measure, SEARCH_MEASURE
from cosearch.space import create_space
t_import = time.perf_counter()
space = create_space("nb201"); target = load_target("host")
imported = engine.import_arch(space, sys.argv[2], seed=0)
t_model = time.perf_counter()
plan = engine.plan(imported, target)
pred = engine.predict_latency(plan, sys.argv[1])
t_plan = time.perf_counter()
exe = engine.compile_plan(plan, sys.argv[1])
t_compile = time.perf_counter()
res = measure(exe, target, imported.inputs, config=SEARCH_MEASURE)
t_end = time.perf_counter()
print(json.dumps({"imports_s": t_import - t0, "model_s": t_model - t_import, "plan_predict_s": t_plan - t_model,
                  "compile_s": t_compile - t_plan, "measure_s": t_end - t_compile, "total_s": t_end - t0,
                  "missing_tasks": len(pred.missing), "pred_ms": pred.ms,
                  "measured_ms": res.latency.median_ms if res.ok else None}))
"""


def cold_new_arch(db: Path, arch: str) -> dict:
    r = subprocess.run([sys.executable, "-c", COLD, str(db), arch], cwd=str(REPO), capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--kill-window", default="10,45", help="kill delay range in seconds (uniform, seeded)")
    ap.add_argument("--trials", type=int, default=96, help="trials of the persistence-overhead run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "engine_cost.json"))
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.kill_window.split(","))
    work = Path(tempfile.mkdtemp(prefix="cosearch-engine-cost-"))
    try:
        over = persist_overhead(args.trials, work)
        print("persistence:", over, flush=True)
        # the third arch shares the first two's cell ops (same shapes) but is a new network
        cold = cold_new_arch(Path(over["db"]), ARCHS[2])
        print("cold new arch:", cold, flush=True)
        kills = kill_runs(args.kills, args.seed, work, lo, hi)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from cosearch.compile.deploy.artifact import package_versions

    from cosearch.compile.tuning.config import TuneConfig

    result = {"config": vars(args) | {"archs": ARCHS, "cpu_count": os.cpu_count(),
                                      "task_scheduler": TuneConfig().task_scheduler},
              "versions": package_versions(),
              "persistence": over, "cold_new_arch": cold, "kills": kills}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print()
    print(f"{'kill':>4} {'delay s':>8} {'batches':>8} {'trials':>7} {'records':>8} {'lost s':>7} {'batch s':>8}")
    for i, k in enumerate(kills):
        print(f"{i:>4} {k['delay_s']:>8} {k['batches_kept']:>8} {k['trials_kept']:>7} {k['records_kept']:>8} "
              f"{k['s_since_last_batch']!s:>7} {k['median_batch_s']!s:>8}")
    print(f"persistence: {over['persist_s']} s of {over['tune_s']} s tuning ({100 * over['persist_share']:.2f} %), "
          f"{over['s_per_trial']} s/trial")
    print(f"new arch, warm db, cold process: {cold}")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
