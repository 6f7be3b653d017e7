"""``cosearch bench build``: a co-search benchmark of one space on this CPU (docs/benchmark.md).

Three phases, each resumable (rerun the same command after a kill -9 or in a later
session: finished work is read back from the folder and never redone):

1. **plan** -- every wanted architecture is built, imported and split into its
   MetaSchedule tasks (``engine.plan``) in ``workers`` spawned processes (planning
   measures nothing, so it may run in parallel); one ``plan`` line per architecture.
2. **tune** -- every distinct workload is tuned to convergence (``store.Convergence``)
   for every tuning seed (the primary, first, seed before the measure phase, the others
   after it), each seed into its own database ``tune/seed<S>/``, in calls of
   ``chunk`` trials per pending workload with the settings the search's engine uses
   (batches of ``batch``); after each call the curves are rewritten from the databases'
   task histories, with per-batch wall seconds. Each workload's untuned latency (the
   seeded fallback schedule compiled without a record, what the engine runs for a task
   it never tuned) is timed once. The primary seed's best records become ``schedules/``,
   the converged database.
3. **measure** -- every architecture is compiled against ``schedules/`` and timed
   end-to-end at 1 and 2 threads interleaved; its training-free estimate is computed and
   timed (the replay's accuracy cost). A crash (a killed or segfaulting process) is
   retried once on resume, then recorded as a failure.

One builder per folder at a time (``BENCH/.build.lock``); a benchmark belongs to one
CPU: building into a folder made on another machine key is refused.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from cosearch.cobench import store
from cosearch.cobench.store import Bench, Convergence, Curve
from cosearch.errors import CosearchError, first_line


@dataclass(frozen=True)
class BuildConfig:
    space: str = "nb201"
    space_settings: dict = field(default_factory=dict)
    target: str = "host"
    seeds: tuple[int, ...] = (0, 1)
    convergence: Convergence = field(default_factory=Convergence)
    chunk: int = 32  # trials per pending workload and tuning call
    batch: int = 8  # candidates per measured batch (the search's tune_batch)
    estimator: str = "naswot"  # timed per architecture: what accuracy costs the replay's clock
    rounds: int = 3  # interleaved measurement rounds
    repeat: int = 10  # timings per thread count and round
    threads: tuple[int, ...] = (1, 2)
    workers: int = 2  # planning processes
    untuned_repeat: int = 5

    def __post_init__(self) -> None:
        for name in ("chunk", "batch", "rounds", "repeat", "workers", "untuned_repeat"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CosearchError(f"bench build {name} must be a positive integer, got {v!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise CosearchError(f"bench build tuning seeds must be distinct integers >= 0, got {list(self.seeds)!r}")
        if not self.threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in self.threads):
            raise CosearchError(f"bench build threads must be positive integers, got {list(self.threads)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"], d["threads"], d["convergence"] = list(self.seeds), list(self.threads), self.convergence.to_dict()
        return d

    def tune_config(self, seed: int, trials: int):
        """The engine's tuning settings, as the search's ``EngineEvaluator`` uses them."""
        from cosearch.compile.tuning.config import TuneConfig

        return TuneConfig(trials=max(1, trials), seed=seed, patience=None, trials_per_iter=self.batch, fit_batch=False)


# --------------------------------------------------------------------------- which archs
def resolve_archs(space, *, archs_file: str | None = None, table: str | None = None, sample: int | None = None,
                  seed: int = 0, all_archs: bool = False) -> list[tuple[str, str]]:
    """(canonical arch, source) in order, one per isomorphism key: ``--table`` rows first,
    then ``--archs`` lines, then ``--all`` or a seeded ``--sample`` of N *other* keys."""
    out: list[tuple[str, str]] = []
    keys: set[str] = set()

    def add(a: str, source: str, where: str) -> bool:
        try:
            c = space.canonical(a.strip())
        except CosearchError as e:
            raise CosearchError(f"{where}: {e}") from None
        k = space.key(c)
        if k in keys:
            return False
        keys.add(k)
        out.append((c, source))
        return True

    if table is not None:
        try:
            with open(table, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as e:
            raise CosearchError(f"--table {table!r} cannot be read: {e.strerror or e}") from None
        if not rows or "arch" not in rows[0]:
            raise CosearchError(f"--table {table!r} has no 'arch' column; expected a CSV with a header row naming 'arch'")
        for i, r in enumerate(rows, start=2):
            add(r["arch"] or "", "table", f"--table {table!r} line {i}")
    if archs_file is not None:
        try:
            lines = Path(archs_file).read_text().splitlines()
        except OSError as e:
            raise CosearchError(f"--archs {archs_file!r} cannot be read: {e.strerror or e}") from None
        for i, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                add(line, "archs", f"--archs {archs_file!r} line {i}")
    if all_archs:
        lister = getattr(space, "all_archs", None)
        if lister is None:
            raise CosearchError(f"--all: space {space.name!r} cannot list its architectures; use --sample N")
        for a in lister():
            add(a, "all", "--all")
    elif sample:
        rng = np.random.default_rng([int(seed), 17])
        got, tries = 0, 0
        size = space.size() or 0
        while got < sample:
            tries += 1
            if tries > 200 * sample + 1000:
                raise CosearchError(f"--sample {sample}: only {got} new distinct architectures found in space "
                                    f"{space.name!r} (size {size}); ask for fewer")
            if add(space.sample(rng), f"sample:{seed}", "--sample"):
                got += 1
    return out


# --------------------------------------------------------------------------- header
def cpu_model() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` on Linux), else the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("apache-tvm", "apache-tvm-ffi", "torch", "cosearch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def make_header(cfg: BuildConfig, space, target) -> dict[str, Any]:
    from cosearch.compile.codegen.serial import SERIAL_BELOW_US
    from cosearch.compile.deploy.measure import MeasureConfig

    return {"format": store.FORMAT, "version": store.VERSION, "created": round(time.time(), 3),
            "space": space.config(), "target": target.to_dict() | {"identity": target.identity()},
            "machine_key": target.machine_key(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "versions": versions(), "convergence": cfg.convergence.to_dict(),
            "tuning": {"seeds": list(cfg.seeds), "chunk": cfg.chunk, "batch": cfg.batch,
                       "config": {k: v for k, v in cfg.tune_config(cfg.seeds[0], 1).to_dict().items()
                                  if k not in ("trials", "seed")}},
            "measure": {"threads": list(cfg.threads), "rounds": cfg.rounds,
                        "config": asdict(MeasureConfig(repeat=cfg.repeat, warmup=1)),
                        "serial_below_us": SERIAL_BELOW_US,  # codegen.serial, every architecture alike
                        "latency": "the lower median of the thread counts; p10/p90 of its samples"},
            "estimator": cfg.estimator}


IDENTITY_KEYS = ("space", "machine_key", "convergence")


def check_header(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    """A folder is extended only by a build of the same space, CPU, convergence rule and tuning."""
    for k in IDENTITY_KEYS:
        if old.get(k) != new.get(k):
            if k == "machine_key":
                raise CosearchError(
                    f"benchmark {str(out)!r} belongs to machine {old.get(k)!r} ({old.get('cpu')}); this machine is "
                    f"{new.get(k)!r} ({new.get('cpu')}): a benchmark belongs to one CPU; build a new one with another --out")
            raise CosearchError(f"benchmark {str(out)!r} was built with {k}={old.get(k)!r}; this build asks for "
                                f"{new.get(k)!r}; use another --out")
    if old["tuning"]["seeds"] != new["tuning"]["seeds"] or old["tuning"]["config"] != new["tuning"]["config"]:
        raise CosearchError(f"benchmark {str(out)!r} was tuned with {old['tuning']!r}; this build asks for "
                            f"{new['tuning']!r}; use another --out")


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / store.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CosearchError(f"another cosearch bench build is writing {str(out)!r}; wait for it or stop it") from None
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- plan (parallel)
_WORKER: dict[str, Any] = {}


def _plan_worker(space_cfg: dict, target: str, arch: str) -> dict[str, Any]:
    """In a spawned process: import + plan one arch -> its tasks and their features."""
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.space import create_space

    if "space" not in _WORKER:
        cfg = dict(space_cfg)
        _WORKER["space"] = create_space(cfg.pop("space"), **cfg)
        _WORKER["target"] = load_target(target)
    space, tgt = _WORKER["space"], _WORKER["target"]
    t0 = time.perf_counter()
    with engine.quiet_native_logs(None):
        p = engine.plan(engine.import_arch(space, arch, seed=0), tgt)
    sec = time.perf_counter() - t0
    tasks = [t for t in p.tasks if t.tunable]
    feats = {t.workload: {"name": t.name, "op": t.features.op_kind, "flops": t.features.flops,
                          "shapes": [list(s) for s in t.features.shapes]} for t in tasks}
    return {"arch": arch, "tasks": [[t.workload, int(t.weight)] for t in tasks], "features": feats, "plan_s": sec}


def phase_plan(out: Path, bench: Bench, cfg: BuildConfig, say: Callable[[str], None]) -> None:
    todo = [bench.archs[k] for k in bench.order if not bench.archs[k].planned and bench.archs[k].failed is None]
    if not todo:
        return
    say(f"plan: {len(todo)} architectures to plan ({len(bench.order) - len(todo)} planned already), "
        f"{cfg.workers} processes")
    known = set(bench.task_info)
    t_start, done = time.perf_counter(), 0

    def record(res: dict[str, Any], key: str) -> None:
        nonlocal done
        new = [{"event": "task", "workload": w, **f, "first_arch": res["arch"]}
               for w, f in res["features"].items() if w not in known]
        known.update(res["features"])
        store.append_events(out / store.TASKS, new)
        store.append_events(out / store.ARCHS, [{"event": "plan", "key": key, "arch": res["arch"],
                                                 "tasks": res["tasks"], "plan_s": round(res["plan_s"], 4)}])
        done += 1
        if done % 25 == 0 or done == len(todo):
            say(f"plan: {done}/{len(todo)} ({time.perf_counter() - t_start:.0f} s, {len(known)} workloads)")

    if cfg.workers == 1:
        for a in todo:
            record(_plan_worker(bench.space_config, cfg.target, a.arch), a.key)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawn: forking a process that holds TVM's or torch's thread pools deadlocks
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=mp.get_context("spawn")) as pool:
        futs = [(a.key, pool.submit(_plan_worker, bench.space_config, cfg.target, a.arch)) for a in todo]
        for key, f in futs:
            try:
                record(f.result(), key)
            except Exception as e:  # noqa: BLE001 - failures are data
                store.append_events(out / store.ARCHS, [{"event": "fail", "key": key, "stage": "plan",
                                                         "error": first_line(e)}])


# --------------------------------------------------------------------------- tune
def seed_dir(out: Path, seed: int) -> Path:
    return out / "tune" / f"seed{seed}"


def curves_from_history(out: Path, seed: int) -> tuple[dict[str, Curve], dict[str, float]]:
    """Per workload the curve of ``tune/seed<S>`` replayed from its task history, and per
    tuning call (run id) the seconds charged to its batches. Every batch is charged the wall
    time since the previous batch of its call; the first batch of a call is charged its
    trials x the call's median seconds per trial (the rest of that interval is the call's
    set-up: ``overhead_s`` of its line in ``tune/calls.jsonl``)."""
    from cosearch.compile.storage import history as hist

    runs: dict[str, list[dict[str, Any]]] = {}
    for e in hist.read(seed_dir(out, seed)):
        if e["event"] == "batch":
            runs.setdefault(str(e.get("run")), []).append(e)
    charged: dict[int, float] = {}
    by_run: dict[str, float] = {}
    rates_all: list[float] = []
    order: list[dict[str, Any]] = []
    for run, evs in runs.items():
        evs.sort(key=lambda e: float(e["t"]))
        rates = [(float(e["t"]) - float(prev["t"])) / max(1, int(e.get("trials", 1))) for prev, e in zip(evs, evs[1:])]
        rate = statistics.median(rates) if rates else None
        if rate is not None:
            rates_all.append(rate)
        for i, e in enumerate(evs):
            if i == 0:
                charged[id(e)] = -1.0 if rate is None else rate * int(e.get("trials", 0))
            else:
                charged[id(e)] = float(e["t"]) - float(evs[i - 1]["t"])
        order.extend(evs)
    fallback_rate = statistics.median(rates_all) if rates_all else 0.0
    order.sort(key=lambda e: float(e["t"]))
    curves: dict[str, Curve] = {}
    for e in order:
        w, trials = e["workload"], int(e.get("trials", 0))
        sec = charged[id(e)] if charged[id(e)] >= 0 else fallback_rate * trials
        by_run[str(e.get("run"))] = by_run.get(str(e.get("run")), 0.0) + sec
        c = curves.setdefault(w, Curve(w, seed, []))
        n0, best0, s0 = c.points[-1] if c.points else (0, float("inf"), 0.0)
        b = e.get("best_us")
        best = min(best0, float(b)) if b is not None else best0
        if best == float("inf"):
            continue  # no valid candidate yet: the workload stays untuned
        c.points.append((n0 + trials, best, s0 + sec))
    return curves, by_run


def _representatives(bench: Bench, workloads: Sequence[str], cfg: BuildConfig) -> dict[str, Any]:
    """workload -> PlannedTask, importing the first architecture of each workload (then, for
    any still missing, the other planned architectures in order)."""
    from cosearch.compile import engine
    from cosearch.compile.target import load_target

    space, target = bench.space(), load_target(cfg.target)
    need = set(workloads)
    found: dict[str, Any] = {}
    firsts = list(dict.fromkeys(str(bench.task_info.get(w, {}).get("first_arch", "")) for w in workloads))
    others = [bench.archs[k].arch for k in bench.order if bench.archs[k].planned]
    for a in [x for x in firsts if x] + others:
        if need <= set(found):
            break
        wanted = need - set(found)
        if a in others:
            entry = bench.archs.get(space.key(a))
            if entry is not None and not wanted & {w for w, _ in entry.tasks}:
                continue
        with engine.quiet_native_logs(None):
            p = engine.plan(engine.import_arch(space, a, seed=0), target)
        for t in p.tasks:
            if t.tunable and t.workload in need:
                found.setdefault(t.workload, t)
    missing = need - set(found)
    if missing:
        raise CosearchError(f"{len(missing)} workloads of the benchmark were not found again when re-planning "
                            f"(e.g. {sorted(missing)[0]}): TVM, torch or the space changed since they were planned")
    return found


def time_untuned(out: Path, bench: Bench, ptasks: dict[str, Any], target, cfg: BuildConfig,
                 say: Callable[[str], None]) -> None:
    """Time the fallback schedule of every workload that lacks an ``untuned`` line (the kernel
    the engine compiles for a task with no record)."""
    import tvm

    from cosearch.compile import engine
    from cosearch.compile.codegen.fallback import fallback_schedule, is_heavy

    todo = [w for w in ptasks if w not in bench.untuned]
    if not todo:
        return
    t0 = time.perf_counter()
    tgt = target.tvm_target()
    mods, ws = [], []
    for w in todo:
        mod = ptasks[w].mod
        func = fallback_schedule(mod, tgt, seed=0) if is_heavy(mod) else None
        mods.append(tvm.IRModule({"main": func}) if func is not None else mod)
        ws.append(w)
    with engine.quiet_native_logs(None):
        timed = engine.time_kernels(mods, target, repeat=cfg.untuned_repeat)
    sec = (time.perf_counter() - t0) / max(1, len(todo))
    store.append_events(out / store.TASKS, [
        {"event": "untuned", "workload": w, "us": None if s is None else round(statistics.median(s), 4),
         "schedule": "fallback" if is_heavy(ptasks[w].mod) else "default", "seconds": round(sec, 3)}
        for w, s in zip(ws, timed)])
    say(f"tune: untuned (fallback) latency of {len(todo)} workloads timed ({time.perf_counter() - t0:.0f} s)")


def phase_tune(out: Path, bench: Bench, cfg: BuildConfig, say: Callable[[str], None],
               seeds: Sequence[int] | None = None) -> None:
    """Tune every workload to convergence with each of ``seeds`` (default: all); with the primary
    seed (the first), time the untuned kernels first and rebuild ``schedules/`` after."""
    from cosearch.compile import engine
    from cosearch.compile.target.binding import bind_database
    from cosearch.compile.target import load_target

    seeds = list(cfg.seeds if seeds is None else seeds)
    primary = cfg.seeds[0] in seeds
    ws = bench.workloads()

    def pending(seed: int) -> list[str]:
        cs = bench.curves
        return [w for w in ws if not (w in cs and seed in cs[w] and cs[w][seed].converged)]

    todo = {s: pending(s) for s in seeds}
    need_untuned = primary and any(w not in bench.untuned for w in ws)
    if not any(todo.values()) and not need_untuned:
        if primary and not (out / store.SCHEDULES / ".complete").exists():
            merge_schedules(out, bench, load_target(cfg.target), say)
        return
    target = load_target(cfg.target)
    ptasks = _representatives(bench, sorted({w for v in todo.values() for w in v} |
                                            ({w for w in ws if w not in bench.untuned} if primary else set())), cfg)
    if primary:
        time_untuned(out, bench, ptasks, target, cfg, say)
        bench.reload()
    conv = cfg.convergence
    for seed in seeds:
        db = seed_dir(out, seed)
        bind_database(db, target)
        catch_up(out, bench, seed, conv, pending(seed))
        while True:
            pend = pending(seed)
            if not pend:
                break
            budgets = {}
            for w in pend:
                have = bench.curves.get(w, {}).get(seed)
                budgets[w] = max(1, min(cfg.chunk, conv.max_trials - (have.trials if have else 0)))
            total = sum(budgets.values())
            say(f"tune: seed {seed}: {len(pend)} of {len(ws)} workloads not converged, {total} trials in this call")
            t0 = time.time()
            res = engine.tune_tasks([ptasks[w] for w in pend], target, database_dir=db, trials=total,
                                    config=cfg.tune_config(seed, total), budgets=budgets, log_dir=out / "logs")
            t1 = time.time()
            new, by_run = curves_from_history(out, seed)
            store.append_events(out / store.CALLS, [{
                "event": "call", "seed": seed, "run": res.run, "t0": round(t0, 3), "t1": round(t1, 3),
                "trials": res.trials_run, "overhead_s": round(max(0.0, (t1 - t0) - by_run.get(res.run, 0.0)), 3)}])
            lines = []
            for w in pend:
                c = new.get(w)
                got = res.tasks[w].trials if res.tasks.get(w) is not None else 0
                if c is None:  # not one valid candidate yet
                    c = Curve(w, seed, [])
                    c.converged = "no_valid_candidate" if got < budgets[w] else None
                else:
                    c.converged = conv.verdict(c.points)
                    if c.converged is None and got < budgets[w]:
                        # MetaSchedule found fewer new candidates than asked: the design space is spent
                        c.converged = "exhausted"
                lines.append(c.to_event())
            store.append_events(out / store.TASKS, lines)
            bench.reload()
        if seed == cfg.seeds[0]:
            merge_schedules(out, bench, target, say)


def catch_up(out: Path, bench: Bench, seed: int, conv, pend: Sequence[str]) -> None:
    """A build killed after a call's records and history were written but before its curves
    reached ``tune/tasks.jsonl`` would tune those workloads again from a stale trial count. The
    history is the record: a pending workload whose history holds more trials than its last
    curve gets its curve (and verdict) from the history before any new call."""
    hist, _ = curves_from_history(out, seed)
    lines = []
    for w in pend:
        c, have = hist.get(w), bench.curves.get(w, {}).get(seed)
        if c is not None and c.points and (have is None or c.trials > have.trials):
            c.converged = conv.verdict(c.points)
            lines.append(c.to_event())
    if lines:
        store.append_events(out / store.TASKS, lines)
        bench.reload()


def merge_schedules(out: Path, bench: Bench, target, say: Callable[[str], None]) -> None:
    """``schedules/`` := the primary tuning seed's 8 best records per workload (rebuilt whole,
    then renamed): the database every architecture is compiled and measured against. The other
    seeds' curves are the replay's second opinion on how tuning proceeds; measuring against a
    database that mixes seeds would need every architecture measured again as a seed finishes."""
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.target.binding import bind_database

    final = out / store.SCHEDULES
    tmp = out / (store.SCHEDULES + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    d = seed_dir(out, bench.seeds[0])
    n = dbmod.merge_records(tmp, dbmod.best_records(dbmod.open_database(d, best_only=False), 8)) if d.is_dir() else 0
    bind_database(tmp, target)
    (tmp / ".complete").write_text(f"{n} records of tuning seed {bench.seeds[0]}\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    say(f"tune: converged database {final} ({n} records of seed {bench.seeds[0]})")


# --------------------------------------------------------------------------- measure
def phase_measure(out: Path, bench: Bench, cfg: BuildConfig, say: Callable[[str], None],
                  limit: int | None = None) -> None:
    from cosearch.compile import engine
    from cosearch.compile.deploy.measure import MeasureConfig, measure_interleaved
    from cosearch.compile.target import load_target
    from cosearch.estimate import create_estimator

    attempts: dict[str, int] = {}
    for e in store.read_events(out / store.ARCHS):
        if e["event"] == "attempt":
            attempts[e["key"]] = attempts.get(e["key"], 0) + 1
    todo = [bench.archs[k] for k in bench.order
            if bench.archs[k].planned and bench.archs[k].measured is None and bench.archs[k].failed is None]
    crashed = [a for a in todo if attempts.get(a.key, 0) >= 2]
    store.append_events(out / store.ARCHS, [{"event": "fail", "key": a.key, "stage": "measure",
                                             "error": "the process died twice while compiling or measuring it"}
                                            for a in crashed])
    todo = [a for a in todo if attempts.get(a.key, 0) < 2]
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return
    space, target = bench.space(), load_target(cfg.target)
    estimator = create_estimator(cfg.estimator, seed=0)
    mcfg = MeasureConfig(repeat=cfg.repeat, warmup=1)
    sched = out / store.SCHEDULES
    say(f"measure: {len(todo)} architectures to compile and time ({len(bench.measured())} measured already)")
    t_start = time.perf_counter()
    for i, a in enumerate(todo, start=1):
        store.append_events(out / store.ARCHS, [{"event": "attempt", "key": a.key}])
        # "plan": import + plan again here, one at a time on a quiet machine (the plan phase ran in
        # parallel processes, its seconds are kept as "plan_phase"): what planning costs the replay
        sec: dict[str, float] = {"plan_phase": float(a.plan_s or 0.0)}
        try:
            t0 = time.perf_counter()
            est = estimator.estimate(space, a.arch)
            sec["estimate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with engine.quiet_native_logs(out / "logs" / "compile.log"):
                p = engine.plan(engine.import_arch(space, a.arch, seed=0), target)
            sec["plan"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with engine.quiet_native_logs(out / "logs" / "compile.log"):
                exe = engine.compile_plan(p, sched, serial_below_us=bench.serial_below_us)
            sec["compile"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            lats = measure_interleaved(exe, p.imported.inputs, threads=cfg.threads, rounds=cfg.rounds, config=mcfg)
            sec["measure"] = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - failures are data
            stage = "compile" if "compile" not in sec else "measure"
            store.append_events(out / store.ARCHS, [{"event": "fail", "key": a.key, "stage": stage,
                                                     "error": first_line(e)}])
            continue
        best_t = min(lats, key=lambda t: lats[t].median_ms)
        best = lats[best_t]
        ksum = bench.kernel_sum_ms(a)
        store.append_events(out / store.ARCHS, [{
            "event": "measure", "key": a.key, "median_ms": round(best.median_ms, 5), "p10_ms": round(best.p10_ms, 5),
            "p90_ms": round(best.p90_ms, 5), "threads": best_t,
            "by_threads": {str(t): {"median_ms": round(v.median_ms, 5), "p10_ms": round(v.p10_ms, 5),
                                    "p90_ms": round(v.p90_ms, 5), "n": v.n} for t, v in lats.items()},
            "kernel_sum_ms": None if ksum is None else round(ksum, 5),
            "estimate": {"estimator": cfg.estimator, "score": float(est.score)},
            "seconds": {k: round(v, 4) for k, v in sec.items()}}])
        if i % 10 == 0 or i == len(todo):
            el = time.perf_counter() - t_start
            say(f"measure: {i}/{len(todo)} ({el:.0f} s, {el / i:.2f} s per architecture)")


# --------------------------------------------------------------------------- export
def export_arch(bench: Bench, arch: str, out: str | os.PathLike, *, target: str = "host") -> dict[str, Any]:
    """A deployable artifact of one benchmark architecture, compiled against the converged
    database ``BENCH/schedules`` (nothing tuned, the benchmark left untouched) and measured;
    on another CPU than the benchmark's it is refused in one line."""
    from cosearch.compile import engine
    from cosearch.compile.deploy.artifact import check_out_dir
    from cosearch.compile.deploy.measure import measure
    from cosearch.compile.target import load_target

    tgt = load_target(target)
    if tgt.machine_key() != bench.machine_key:
        raise CosearchError(f"the benchmark {str(bench.path)!r} was tuned on {bench.machine_key!r} "
                            f"({bench.header.get('cpu')}); target {tgt.name!r} here is {tgt.machine_key()!r}")
    space = bench.space()
    entry = bench.entry(space, arch)
    out_dir = check_out_dir(str(out))
    sched = bench.path / store.SCHEDULES
    with engine.quiet_native_logs(None):
        p = engine.plan(engine.import_arch(space, entry.arch, seed=0), tgt)
        choices: list[Any] = []
        exe = engine.compile_plan(p, sched, report=choices, serial_below_us=bench.serial_below_us)
    lat = measure(exe, tgt, p.imported.inputs).unwrap()
    config = {"command": "bench export", "bench": str(bench.path.resolve()), "arch": entry.arch,
              "model": {"kind": "space", "spec": f"{space.name}:{entry.arch}", "space": space.config(),
                        "arch": entry.arch}, "schedules": str(sched.resolve())}
    engine.write_model_artifact(out_dir, p, exe, sched, latency=lat, config=config, choices=choices,
                                extra_meta={"bench": {"key": entry.key, "recorded_ms": entry.ms}})
    return {"artifact": str(out_dir), "latency_ms": lat.median_ms, "recorded_ms": entry.ms, "threads": lat.threads}


# --------------------------------------------------------------------------- build
def build(out: str | os.PathLike, cfg: BuildConfig, archs: Sequence[tuple[str, str]], *,
          say: Callable[[str], None] = print, phases: Sequence[str] = ("plan", "tune", "measure"),
          measure_limit: int | None = None) -> dict[str, Any]:
    """Build (or extend, or resume) the benchmark in ``out``; returns its progress."""
    from cosearch.compile.target import load_target
    from cosearch.fsio import creatable
    from cosearch.space import create_space

    out = Path(out)
    space = create_space(cfg.space, **cfg.space_settings)
    target = load_target(cfg.target)
    if target.measure != "local":
        raise CosearchError(f"target {target.name!r} is measured with {target.measure!r}; a benchmark is built on "
                            "the CPU that runs it (measure: local)")
    ok, why = target.runs_here()
    if not ok:
        raise CosearchError(f"target {target.name!r} cannot run here: {why}")
    if out.exists() and not out.is_dir():
        raise CosearchError(f"--out {str(out)!r} is a file; expected a new folder or a benchmark to extend")
    if out.is_dir() and any(out.iterdir()) and not (out / store.HEADER).exists():
        raise CosearchError(f"--out {str(out)!r} holds something else; give a new folder or a benchmark to extend")
    ok, probe = creatable(out)
    if not ok:
        raise CosearchError(f"--out {str(out)!r}: {str(probe)!r} is not writable")
    header = make_header(cfg, space, target)
    with build_lock(out):
        if (out / store.HEADER).exists():
            check_header(store.Bench(out).header, header, out)
        else:
            store.write_json(out / store.HEADER, header)
        store.write_json(out / store.CONFIG, {"command": "bench build", **cfg.to_dict(),
                                              "archs_requested": len(archs)})
        bench = store.Bench(out)
        store.append_events(out / store.ARCHS, [{"event": "want", "key": space.key(a), "arch": a, "source": src}
                                                for a, src in archs if space.key(a) not in bench.archs])
        bench.reload()
        say(f"bench: {out} on {header['machine_key']} ({header['cpu']}): {len(bench.order)} architectures wanted")
        # the primary seed's convergence is what the architectures are measured against; the other
        # seeds' curves come after the measurements (they change no measured latency)
        steps = [("plan", lambda: phase_plan(out, bench, cfg, say)),
                 ("tune", lambda: phase_tune(out, bench, cfg, say, seeds=cfg.seeds[:1])),
                 ("measure", lambda: phase_measure(out, bench, cfg, say, limit=measure_limit)),
                 ("tune", lambda: phase_tune(out, bench, cfg, say, seeds=cfg.seeds[1:]))]
        for name, step in steps:
            if name not in phases:
                continue
            step()
            bench.reload()
            store.write_json(out / store.PROGRESS, bench.progress())
        prog = bench.progress()
        store.write_json(out / store.PROGRESS, prog)
        return prog
