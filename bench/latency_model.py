"""End-to-end latency the tuner can trust: a fitted model over the database's kernel sum.

``engine.predict_latency`` gives the weighted sum of the tasks' best kernel times in
the schedule database. Those times are MetaSchedule's hot-cache repeats of one
kernel on its own; the compiled module runs every kernel once, after a different
one, with its inputs in whatever cache level the previous kernel left them, and
adds the VM's own work (allocation, dispatch, kernels no task covers). On
224x224 graphs the module took ~2x the kernel sum (docs/tuning.md, "Where the
time goes"). This module predicts the end-to-end median from a model's plan and
database, with coefficients fitted to measurements of this target::

    ms, detail = predict_e2e_ms(plan, database_dir)          # what the search ranks by
    record_measurement(database_dir, plan, e2e_ms, network="squeezenet")
    fit = fit_latency(read_samples(database_dir))            # predict_e2e_ms refits on its own

**Features** (``plan_features``, no compilation): ``kernel_ms`` = Σ weight x best µs
of the tasks the database holds; ``untuned_ms`` = the tasks it lacks, estimated from
their FLOPs at the median GFLOP/s the plan's own tuned kernels reached (bytes at
the median bandwidth for tasks without FLOPs); ``calls`` = kernel invocations
(Σ weight); ``mbytes`` = Σ weight x bytes of every kernel's arguments (inputs,
weights, output), in MB -- the data a cold cache has to bring in.

**Model**: ``e2e_ms = a x (kernel_ms + untuned_ms) + b x calls + c x mbytes``,
non-negative least squares on relative error (each row divided by its measured
e2e), fitted per database, i.e. per resolved target. With fewer than
``MIN_SAMPLES_LINEAR`` samples or fewer than two networks the fit is a single ratio
(``kind == "ratio"``: ``a`` = median of e2e / kernel sum, ``b = c = 0``); with none,
the prediction is the raw kernel sum (``kind == "none"``).

**Samples** are persisted next to the database: ``<db>/latency_samples.jsonl``, one
JSON object per line, append-only, written under an exclusive ``fcntl`` lock with
fsync, a torn last line ignored on read. Fields: ``v`` (format version, 1),
``when`` (UTC), ``network`` (free-form name; leave-one-network-out groups by it),
``target`` (machine key of the plan's target), the four features above plus
``missing`` (tasks without a record) and ``tasks``, ``e2e_ms`` (measured median)
and ``note``. The features are the database's state *at recording time*, so a
sample stays valid after the database grows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cosearch import jsonl
from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.engine import ModelPlan

SAMPLES_FILE = "latency_samples.jsonl"
VERSION = 1
FEATURES = ("kernel_ms", "untuned_ms", "calls", "mbytes")
MIN_SAMPLES_LINEAR = 4
BYTES_PER_ELEMENT = 4  # float32 plans (the shapes in TaskFeatures carry no dtype)
_DEFAULT_GFLOPS = 1.0  # untuned-task estimate when the plan has no tuned FLOP kernel at all
_DEFAULT_GBPS = 1.0


# --------------------------------------------------------------------------- features
@dataclass(frozen=True)
class PlanFeatures:
    kernel_ms: float
    untuned_ms: float
    calls: int
    mbytes: float
    missing: int
    tasks: int

    def row(self) -> list[float]:
        return [self.kernel_ms + self.untuned_ms, float(self.calls), self.mbytes]


def _task_bytes(shapes: Sequence[Sequence[int]]) -> float:
    return float(sum(math.prod(int(d) for d in s) for s in shapes)) * BYTES_PER_ELEMENT


def features_from_tasks(tasks: Iterable[tuple[float, float, int, float | None]]) -> PlanFeatures:
    """Features from ``(flops, bytes, weight, best_us or None)`` per task (the pure part of
    ``plan_features``; tests and offline analyses call it directly)."""
    tasks = list(tasks)
    rates = [f / us for f, _b, _w, us in tasks if us and f > 0]  # FLOP per µs
    bws = [b / us for f, b, _w, us in tasks if us and f <= 0 and b > 0]  # bytes per µs
    rate = _median(rates) if rates else _DEFAULT_GFLOPS * 1e3
    bw = _median(bws) if bws else _DEFAULT_GBPS * 1e3
    known = untuned = mbytes = 0.0
    calls = missing = 0
    for flops, nbytes, weight, us in tasks:
        calls += weight
        mbytes += weight * nbytes / 1e6
        if us is not None:
            known += weight * us
        else:
            missing += 1
            untuned += weight * (flops / rate if flops > 0 else nbytes / bw)
    return PlanFeatures(known / 1e3, untuned / 1e3, calls, mbytes, missing, len(tasks))


def plan_features(plan: "ModelPlan", database_dir: Path | str) -> PlanFeatures:
    """The plan's features against the database's current records (no compilation)."""
    from cosearch.compile import engine

    st = engine.status(plan, database_dir)
    rows = []
    for t in plan.tasks:
        if not t.tunable:
            continue
        rows.append((float(t.features.flops), _task_bytes(t.features.shapes), int(t.weight), st[t.workload].latency_us))
    return features_from_tasks(rows)


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


# --------------------------------------------------------------------------- samples
def samples_path(database_dir: Path | str) -> Path:
    return Path(database_dir) / SAMPLES_FILE


def append_sample(database_dir: Path | str, sample: dict[str, Any]) -> None:
    """Append one sample line under an exclusive lock (``<file>.lock``), fsynced."""
    p = samples_path(database_dir)
    jsonl.append(p, [sample], sort_keys=True, lock=p.with_name(p.name + ".lock"))


def record_measurement(database_dir: Path | str, plan: "ModelPlan", e2e_ms: float, *, network: str | None = None,
                       note: str | None = None, features: PlanFeatures | None = None) -> dict[str, Any]:
    """Persist one (plan features against this database, measured end-to-end median) sample.
    ``features``: taken earlier (``plan_features`` right after compiling, when the database
    has grown since); default: the database now."""
    if isinstance(e2e_ms, bool) or not isinstance(e2e_ms, (int, float)) or not math.isfinite(e2e_ms) or e2e_ms <= 0:
        raise CosearchError(f"e2e_ms must be a positive finite number of milliseconds, got {e2e_ms!r}")
    feats = features if features is not None else plan_features(plan, database_dir)
    from cosearch.compile.plan import target_key

    sample = {"v": VERSION, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "network": network, "target": target_key(plan.target), **asdict(feats), "e2e_ms": float(e2e_ms),
              "note": note}
    append_sample(database_dir, sample)
    return sample


def read_samples(database_dir: Path | str) -> list[dict[str, Any]]:
    """Every well-formed sample line of a database's samples file (or of a ``.jsonl`` file
    given directly); a torn or foreign line is skipped."""
    p = Path(database_dir)
    p = p if p.suffix == ".jsonl" else samples_path(p)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if isinstance(s, dict) and s.get("v") == VERSION and all(k in s for k in (*FEATURES, "e2e_ms")):
            out.append(s)
    return out


# --------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class LatencyFit:
    kind: str  # "linear" | "ratio" | "none"
    a: float = 1.0  # x (kernel_ms + untuned_ms)
    b_us: float = 0.0  # µs per kernel call
    c_ms_per_mb: float = 0.0  # ms per MB of kernel arguments
    n: int = 0
    networks: tuple[str, ...] = ()
    train_mean_abs_rel_err: float | None = None

    def predict(self, f: PlanFeatures) -> float:
        return self.a * (f.kernel_ms + f.untuned_ms) + self.b_us * f.calls / 1e3 + self.c_ms_per_mb * f.mbytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["networks"] = list(self.networks)
        return d


def _feat(s: dict[str, Any]) -> PlanFeatures:
    return PlanFeatures(float(s["kernel_ms"]), float(s["untuned_ms"]), int(s["calls"]), float(s["mbytes"]),
                        int(s.get("missing", 0)), int(s.get("tasks", 0)))


def fit_latency(samples: Sequence[dict[str, Any]]) -> LatencyFit:
    """Fit ``LatencyFit`` to samples (see the module docstring for the model and its kinds)."""
    import numpy as np

    rows = [s for s in samples if float(s["e2e_ms"]) > 0 and float(s["kernel_ms"]) + float(s["untuned_ms"]) > 0]
    nets = tuple(sorted({str(s.get("network")) for s in rows}))
    if not rows:
        return LatencyFit("none")
    feats = [_feat(s) for s in rows]
    y = np.array([float(s["e2e_ms"]) for s in rows])
    if len(rows) >= MIN_SAMPLES_LINEAR and len(nets) >= 2:
        from scipy.optimize import nnls

        X = np.array([[f.kernel_ms + f.untuned_ms, f.calls / 1e3, f.mbytes] for f in feats])
        coef, _ = nnls(X / y[:, None], np.ones(len(y)))
        fit = LatencyFit("linear", float(coef[0]), float(coef[1]), float(coef[2]), len(rows), nets)
    else:
        ratio = float(np.median(y / np.array([f.kernel_ms + f.untuned_ms for f in feats])))
        fit = LatencyFit("ratio", ratio, 0.0, 0.0, len(rows), nets)
    err = float(np.mean([abs(fit.predict(f) / yy - 1.0) for f, yy in zip(feats, y)]))
    return LatencyFit(fit.kind, fit.a, fit.b_us, fit.c_ms_per_mb, fit.n, fit.networks, err)


_FIT_CACHE: dict[str, tuple[int, LatencyFit]] = {}


def load_fit(database_dir: Path | str) -> LatencyFit:
    """The fit of the database's samples (refitted when the samples file grows)."""
    p = samples_path(database_dir)
    size = p.stat().st_size if p.exists() else 0
    key = str(p.resolve()) if p.exists() else str(p)
    hit = _FIT_CACHE.get(key)
    if hit is None or hit[0] != size:
        hit = (size, fit_latency(read_samples(database_dir)))
        _FIT_CACHE[key] = hit
    return hit[1]


def predict_e2e_ms(plan: "ModelPlan", database_dir: Path | str, target: Any = None, *,
                   fit: LatencyFit | None = None) -> tuple[float, dict[str, Any]]:
    """Predicted end-to-end median (ms) of ``plan`` compiled with ``database_dir``, and the
    detail (features, fit, kernel sum). ``target`` is accepted for symmetry with the
    engine and must match the plan's when given (the database is per target)."""
    if target is not None and getattr(target, "name", None) != getattr(plan.target, "name", None):
        raise CosearchError(f"target {getattr(target, 'name', target)!r} differs from the plan's "
                            f"{getattr(plan.target, 'name', plan.target)!r}")
    f = plan_features(plan, database_dir)
    fit = fit if fit is not None else load_fit(database_dir)
    ms = fit.predict(f)
    return ms, {"features": asdict(f), "fit": fit.to_dict(), "kernel_sum_ms": f.kernel_ms + f.untuned_ms}


def leave_one_network_out(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per network: the samples predicted by a fit of every *other* network's samples.
    ``mean_abs_rel_err`` and ``max_abs_rel_err`` of those predictions, and the same for the raw
    kernel sum (``raw_*``) for comparison."""
    nets = sorted({str(s.get("network")) for s in samples})
    out: dict[str, dict[str, Any]] = {}
    for net in nets:
        train = [s for s in samples if str(s.get("network")) != net]
        test = [s for s in samples if str(s.get("network")) == net]
        fit = fit_latency(train)
        errs, raw = [], []
        for s in test:
            f = _feat(s)
            y = float(s["e2e_ms"])
            errs.append(fit.predict(f) / y - 1.0)
            raw.append((f.kernel_ms + f.untuned_ms) / y - 1.0)
        out[net] = {"n": len(test), "fit": fit.to_dict(), "rel_err": errs,
                    "mean_abs_rel_err": sum(map(abs, errs)) / len(errs), "max_abs_rel_err": max(map(abs, errs)),
                    "raw_mean_abs_rel_err": sum(map(abs, raw)) / len(raw)}
    return out


# --------------------------------------------------------------------------- profiling
@dataclass
class CallStat:
    symbol: str
    kernel: bool  # a compiled kernel (not a vm.builtin.* runtime function)
    calls: int = 0  # per inference
    ms: float = 0.0  # per inference, inside the module (median over runs)
    hot_ms: float | None = None  # per inference, each call repeated on its own (tuner-like, hot cache)
    cold_ms: float | None = None  # per inference, each call once after a cache flush
    idle_ms: float | None = None  # per inference, each call once after sleeping as long as the flush takes
    shapes: list = field(default_factory=list)


@dataclass
class VMProfile:
    e2e_ms: float  # uninstrumented median
    instrumented_ms: float  # median wall of an instrumented run
    calls: list[CallStat]

    @property
    def kernel_ms(self) -> float:
        return sum(c.ms for c in self.calls if c.kernel)

    @property
    def builtin_ms(self) -> float:
        return sum(c.ms for c in self.calls if not c.kernel)


def profile_vm(executable, inputs: Sequence[Any], *, runs: int = 10, hot_repeat: int = 20, flush_mb: int = 64,
               device=None, seed: int | None = 0) -> VMProfile:
    """Time every call the Relax VM makes in ``main`` (TVM 0.27's VM has no ``profile=True``:
    this uses ``VirtualMachine.set_instrument``, timing between the before/after hooks).

    Per symbol: the time inside the running module (median over ``runs``), the time of
    each call repeated ``hot_repeat`` times on its own arguments (what the tuner measures),
    and the time of each call once after writing ``flush_mb`` MB (cold cache). The
    uninstrumented end-to-end median is measured on a second VM, interleaved."""
    import numpy as np
    import tvm
    from tvm import relax

    del seed  # inputs are given; kept for the house signature
    dev = device or tvm.cpu()
    args = [tvm.runtime.tensor(np.asarray(a), dev) for a in inputs]
    plain = relax.VirtualMachine(executable, dev)
    vm = relax.VirtualMachine(executable, dev)
    pc = time.perf_counter
    log: list[list[Any]] = []

    def instrument(func, symbol, before, ret, *fargs):
        if before:
            log.append([str(symbol), pc(), 0.0, func, fargs])
        else:
            log[-1][2] = pc()
        return 0

    vm.set_instrument(instrument)
    for _ in range(2):
        plain["main"](*args)
        log.clear()
        vm["main"](*args)
    per_run: list[dict[str, float]] = []
    e2e: list[float] = []
    inst: list[float] = []
    first: list[list[Any]] = []
    for r in range(max(1, runs)):
        t0 = pc()
        plain["main"](*args)
        e2e.append((pc() - t0) * 1e3)
        log.clear()
        t0 = pc()
        vm["main"](*args)
        inst.append((pc() - t0) * 1e3)
        agg: dict[str, float] = {}
        for sym, a, b, *_ in log:
            agg[sym] = agg.get(sym, 0.0) + (b - a) * 1e3
        per_run.append(agg)
        if r == 0:
            first = list(log)
    stats: dict[str, CallStat] = {}
    for sym, _a, _b, _f, fargs in first:
        c = stats.setdefault(sym, CallStat(sym, not sym.startswith("vm.builtin.")))
        c.calls += 1
        if not c.shapes:
            c.shapes = [list(getattr(x, "shape", ())) for x in fargs if hasattr(x, "shape")]
    for sym, c in stats.items():
        c.ms = float(np.median([run.get(sym, 0.0) for run in per_run]))
    # isolated: every kernel call of one inference on its own arguments, hot and cold
    flush = np.ones(flush_mb * (1 << 20) // 8)
    hot: dict[str, float] = {}
    cold: dict[str, float] = {}
    idle: dict[str, float] = {}
    t0 = pc()
    flush += 1.0
    flush_s = pc() - t0
    def median_ms(func, fargs, n: int, before=None) -> float:
        ts = []
        for _ in range(max(1, n)):
            if before is not None:
                before()
            t0 = pc()
            func(*fargs)
            ts.append(pc() - t0)
        return float(np.median(ts)) * 1e3

    def evict() -> None:
        nonlocal flush
        flush += 1.0  # write the flush buffer: evicts the kernel's data from the caches

    def idle_pool() -> None:
        time.sleep(flush_s)  # the thread pool idles as long, the caches keep the data

    for sym, _a, _b, func, fargs in first:
        if sym.startswith("vm.builtin."):
            continue
        func(*fargs)
        hot[sym] = hot.get(sym, 0.0) + median_ms(func, fargs, hot_repeat)
        cold[sym] = cold.get(sym, 0.0) + median_ms(func, fargs, 3, evict)
        idle[sym] = idle.get(sym, 0.0) + median_ms(func, fargs, 3, idle_pool)
    for sym, c in stats.items():
        if c.kernel:
            c.hot_ms = hot.get(sym)
            c.cold_ms = cold.get(sym)
            c.idle_ms = idle.get(sym)
    vm.set_instrument(lambda *a: 0)
    return VMProfile(float(np.median(e2e)), float(np.median(inst)),
                     sorted(stats.values(), key=lambda c: -c.ms))
