"""The benchmark format (version 1; documented in docs/benchmark.md) and its reader.

A benchmark is a folder::

    BENCH/
      header.json        written once: format, version, space, target, machine key, CPU model,
                         versions of TVM / tvm-ffi / torch / cosearch, the convergence rule,
                         the tuning settings and seeds, the measurement settings
      config.json        the resolved settings of the last `cosearch bench build` call
      archs.jsonl        append-only: want / plan / measure / fail events per architecture
      tasks.jsonl        append-only: task / untuned / curve events per workload (and seed)
      tune/calls.jsonl   append-only: one line per finished tuning call (seed, run id, start, end)
      tune/seed<S>/      the schedule database tuned with seed S (MetaSchedule JSON + tasks.jsonl history)
      schedules/         the converged database: the primary (first) tuning seed's best records of every
                         workload; what the architectures were compiled against (`cosearch bench export`)
      progress.json      derived, rewritten atomically: how far the build got

Every ``.jsonl`` line is one JSON object with ``"v": 1`` and ``"event"``; lines are
appended and fsynced by the one builder holding ``BENCH/.build.lock``; a torn last
line (a kill mid-write) is skipped by the reader. A later event of the same kind and
key supersedes an earlier one (a ``curve`` line holds the whole curve so far).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cosearch import jsonl
from cosearch.errors import CosearchError

FORMAT = "cosearch-cobench"
VERSION = 1
HEADER = "header.json"
CONFIG = "config.json"
ARCHS = "archs.jsonl"
TASKS = "tasks.jsonl"
CALLS = "tune/calls.jsonl"
PROGRESS = "progress.json"
SCHEDULES = "schedules"
LOCK = ".build.lock"


@dataclass(frozen=True)
class Convergence:
    """When a task's tuning (one seed) counts as converged: after ``max_trials`` trials, or
    once it has ``min_trials`` and its last ``window`` trials improved the best by less
    than ``min_gain`` (relative) -- the curve is flat."""

    min_trials: int = 128
    max_trials: int = 256
    window: int = 64
    min_gain: float = 0.01

    def __post_init__(self) -> None:
        for name in ("min_trials", "max_trials", "window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CosearchError(f"convergence {name} must be a positive integer, got {v!r}")
        if self.min_trials > self.max_trials:
            raise CosearchError(f"convergence min_trials={self.min_trials} exceeds max_trials={self.max_trials}")
        if not 0 <= float(self.min_gain) < 1:
            raise CosearchError(f"convergence min_gain must be in [0, 1), got {self.min_gain!r}")

    def verdict(self, points: list[tuple[int, float, float]]) -> str | None:
        """``"max_trials"``, ``"flat"`` or ``None`` (tune further) for a curve of
        ``(trials, best µs, seconds)`` points."""
        if not points:
            return None
        n, best = points[-1][0], points[-1][1]
        if n >= self.max_trials:
            return "max_trials"
        if n < self.min_trials:
            return None
        before = [us for t, us, _ in points if t <= n - self.window]
        if before and (before[-1] - best) < self.min_gain * before[-1]:
            return "flat"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"min_trials": self.min_trials, "max_trials": self.max_trials, "window": self.window,
                "min_gain": self.min_gain}


# --------------------------------------------------------------------------- lines
def append_events(path: Path, events: list[dict[str, Any]]) -> None:
    """Append events (``"v"`` added) as JSON lines, fsynced (``cosearch.jsonl``). A torn last
    line left by a killed writer is ended first, so the new lines stay readable."""
    jsonl.append(path, [{"v": VERSION, **e} for e in events], compact=True)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Valid events in file order; torn or corrupt lines are skipped."""
    for e in jsonl.read(path):
        if isinstance(e.get("event"), str):
            yield e


def _keyed(path: Path, field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event[field], event) for the events of ``path`` whose ``field`` is a string."""
    for e in read_events(path):
        k = e.get(field)
        if isinstance(k, str):
            yield k, e


def write_json(path: Path, data: Any) -> None:
    from cosearch.fsio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


# --------------------------------------------------------------------------- model
@dataclass
class Curve:
    """One workload tuned with one seed: ``points`` are (cumulative trials, best µs after
    them, cumulative wall seconds of the batches) after every measured batch."""

    workload: str
    seed: int
    points: list[tuple[int, float, float]]
    converged: str | None = None

    @property
    def trials(self) -> int:
        return self.points[-1][0] if self.points else 0

    @property
    def final_us(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def best_at(self, n: int) -> float | None:
        """Best µs after ``n`` trials: the last point with at most ``n`` trials (a step
        function); below the first batch, the first batch's best; ``None`` for ``n <= 0``."""
        if n <= 0 or not self.points:
            return None
        best = self.points[0][1]
        for t, us, _ in self.points:
            if t > n:
                break
            best = us
        return best

    def seconds_per_trial(self) -> float:
        """Mean wall seconds per trial over the curve's batches after the first (the first
        of a tuning call carries the call's set-up, see ``Bench.call_overhead_s``)."""
        if len(self.points) < 2:
            return self.points[0][2] / max(1, self.points[0][0]) if self.points else 0.0
        return max(0.0, (self.points[-1][2] - self.points[0][2]) / max(1, self.points[-1][0] - self.points[0][0]))

    def seconds_at(self, n: int) -> float:
        """Cumulative seconds of the first ``n`` trials (linear between points, the mean per
        trial beyond the last)."""
        if n <= 0 or not self.points:
            return 0.0
        prev_t, prev_s = 0, 0.0
        for t, _, s in self.points:
            if n <= t:
                return prev_s + (s - prev_s) * (n - prev_t) / max(1, t - prev_t)
            prev_t, prev_s = t, s
        return prev_s + (n - prev_t) * self.seconds_per_trial()

    def to_event(self) -> dict[str, Any]:
        return {"event": "curve", "workload": self.workload, "seed": self.seed, "trials": self.trials,
                "converged": self.converged, "points": [[t, round(us, 4), round(s, 3)] for t, us, s in self.points]}


@dataclass
class ArchEntry:
    arch: str
    key: str
    source: str = ""
    tasks: list[tuple[str, int]] = field(default_factory=list)  # (workload, weight), merged by workload
    plan_s: float | None = None
    measured: dict[str, Any] | None = None  # the "measure" event
    failed: dict[str, Any] | None = None  # the last "fail" event (when not measured)

    @property
    def planned(self) -> bool:
        return self.plan_s is not None

    @property
    def ms(self) -> float | None:
        return None if self.measured is None else float(self.measured["median_ms"])

    def cost_s(self, step: str) -> float:
        """Recorded seconds of ``step`` (plan, estimate, compile, measure) of a measured arch;
        ``plan`` falls back on the plan phase's when the measure phase did not time it."""
        sec = (self.measured or {}).get("seconds", {})
        if step == "plan" and sec.get("plan") is None:
            return float(self.plan_s or 0.0)
        return float(sec.get(step, 0.0) or 0.0)


class Bench:
    """A benchmark folder, read (``open_bench``). Read-only; the builder appends."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        hp = self.path / HEADER
        if not hp.is_file():
            raise CosearchError(f"{str(self.path)!r} is not a benchmark (no {HEADER}); build one with "
                                "cosearch bench build --space S --target T ... --out BENCH")
        try:
            self.header = json.loads(hp.read_text())
        except ValueError as e:
            raise CosearchError(f"{str(hp)!r} is not valid JSON: {e}") from None
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            raise CosearchError(f"{str(hp)!r} is not a cosearch benchmark header (format {FORMAT!r} expected)")
        if self.header.get("version") != VERSION:
            raise CosearchError(f"benchmark {str(self.path)!r} has format version {self.header.get('version')!r}; "
                                f"this cosearch reads version {VERSION}")
        self.convergence = Convergence(**self.header["convergence"])
        self.seeds: list[int] = [int(s) for s in self.header["tuning"]["seeds"]]
        self.archs: dict[str, ArchEntry] = {}
        self.order: list[str] = []  # keys in the order they were wanted
        self.task_info: dict[str, dict[str, Any]] = {}
        self.untuned: dict[str, float] = {}
        self.curves: dict[str, dict[int, Curve]] = {}
        self.calls: list[dict[str, Any]] = []
        self.reload()

    # ------------------------------------------------------------------ reading
    def reload(self) -> None:
        self.archs.clear()
        self.order.clear()
        for k, e in _keyed(self.path / ARCHS, "key"):
            kind = e["event"]
            if kind == "want":
                if k not in self.archs:
                    self.archs[k] = ArchEntry(str(e["arch"]), k, str(e.get("source", "")))
                    self.order.append(k)
                continue
            a = self.archs.get(k)
            if a is None:
                continue
            if kind == "plan":
                merged: dict[str, int] = {}
                for w, wt in e["tasks"]:
                    merged[str(w)] = merged.get(str(w), 0) + int(wt)
                a.tasks = list(merged.items())
                a.plan_s = float(e["plan_s"])
            elif kind == "measure":
                a.measured, a.failed = e, None
            elif kind == "fail":
                a.failed = e
        self.task_info.clear()
        self.untuned.clear()
        self.curves.clear()
        for w, e in _keyed(self.path / TASKS, "workload"):
            if e["event"] == "task":
                self.task_info.setdefault(w, {k: v for k, v in e.items() if k not in ("v", "event", "workload")})
            elif e["event"] == "untuned" and e.get("us") is not None:
                self.untuned[w] = float(e["us"])
            elif e["event"] == "curve":
                pts = [(int(t), float(us), float(s)) for t, us, s in e["points"]]
                self.curves.setdefault(w, {})[int(e["seed"])] = Curve(w, int(e["seed"]), pts, e.get("converged"))
        self.calls = list(read_events(self.path / CALLS))

    # ------------------------------------------------------------------ queries
    @property
    def space_config(self) -> dict[str, Any]:
        return dict(self.header["space"])

    def space(self):
        from cosearch.space import create_space

        cfg = self.space_config
        return create_space(cfg.pop("space"), **cfg)

    @property
    def machine_key(self) -> str:
        return str(self.header["machine_key"])

    @property
    def serial_below_us(self) -> float:
        """``codegen.serial``'s threshold every architecture of this benchmark is compiled with
        (benchmarks older than it: 0, every kernel parallel)."""
        return float(self.header.get("measure", {}).get("serial_below_us", 0.0))

    def workloads(self) -> list[str]:
        """Every workload of the planned architectures, in first-seen order."""
        out: dict[str, None] = {}
        for k in self.order:
            for w, _ in self.archs[k].tasks:
                out.setdefault(w, None)
        return list(out)

    def measured(self) -> list[ArchEntry]:
        return [self.archs[k] for k in self.order if self.archs[k].measured is not None]

    def converged_us(self, workload: str) -> float | None:
        """The workload's best µs at the end of the primary seed's tuning (what ``schedules/``
        holds and the architectures were measured against)."""
        c = self.primary_curve(workload)
        return None if c is None else c.final_us

    def primary_curve(self, workload: str) -> Curve | None:
        """The workload's curve for the primary (first) tuning seed."""
        return self.curves.get(workload, {}).get(self.seeds[0])

    def primary_converged(self, workload: str) -> bool:
        c = self.primary_curve(workload)
        return c is not None and bool(c.converged)

    def is_converged(self, workload: str) -> bool:
        cs = self.curves.get(workload, {})
        return all(s in cs and cs[s].converged for s in self.seeds)

    def task_curves(self) -> list:
        """Every recorded curve as a ``search.curves.TaskCurve`` (one per workload and tuning
        seed, in workload order): what tuning-gain predictors are trained and scored on."""
        from cosearch.search.curves import TaskCurve, elements_of

        out = []
        for w in sorted(self.curves):
            ti = self.task_info.get(w, {})
            for s in sorted(self.curves[w]):
                c = self.curves[w][s]
                if c.points:
                    out.append(TaskCurve(w, ti.get("op", "other"), float(ti.get("flops", 0.0)),
                                         elements_of(ti.get("shapes", [])),
                                         tuple((int(t), float(us)) for t, us, _ in c.points),
                                         converged=bool(c.converged), exhausted=c.converged == "exhausted"))
        return out

    def write_estimates(self, path: str | os.PathLike) -> dict[str, Any]:
        """The measured architectures' recorded estimates (the build's training-free estimator,
        computed once per architecture) as a ``table:`` CSV (``arch,accuracy``): an accuracy
        oracle that covers the whole benchmark, not only the architectures an accuracy table has."""
        import csv
        import io

        rows = [(a.arch, float(a.measured["estimate"]["score"])) for a in self.measured()
                if isinstance((a.measured or {}).get("estimate"), dict) and finite(a.measured["estimate"].get("score"))]
        if not rows:
            raise CosearchError(f"{self.path}: no measured architecture has a recorded estimate")
        names = {str(a.measured["estimate"].get("estimator")) for a in self.measured() if a.measured.get("estimate")}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["arch", "accuracy"])
        w.writerows(rows)
        from cosearch.fsio import atomic_write_text

        atomic_write_text(path, buf.getvalue())
        return {"path": str(path), "archs": len(rows), "estimator": sorted(names)}

    def kernel_sum_ms(self, arch: ArchEntry, us_of=None) -> float | None:
        """Weighted kernel sum of ``arch`` (ms) with ``us_of(workload)`` µs (default: converged)."""
        us_of = us_of or self.converged_us
        tot = 0.0
        for w, wt in arch.tasks:
            us = us_of(w)
            if us is None:
                return None
            tot += wt * us
        return tot / 1000.0

    def call_overhead_s(self) -> float:
        """Set-up seconds of one tuning call beyond its trials: the median over recorded calls of
        (call wall seconds - its trials x the per-trial seconds of its workloads' curves)."""
        if "call_overhead_s" in self.header.get("derived", {}):
            return float(self.header["derived"]["call_overhead_s"])
        vals = sorted(float(c["overhead_s"]) for c in self.calls if c.get("overhead_s") is not None)
        return vals[len(vals) // 2] if vals else 0.0

    def progress(self) -> dict[str, Any]:
        """How far the build got (also written to ``progress.json``)."""
        ws = self.workloads()
        planned = sum(1 for k in self.order if self.archs[k].planned or self.archs[k].failed is not None)
        measured = sum(1 for k in self.order if self.archs[k].measured is not None)
        failed = sum(1 for k in self.order if self.archs[k].failed is not None and self.archs[k].measured is None)
        conv = sum(1 for w in ws if self.is_converged(w))
        prim = sum(1 for w in ws if self.primary_converged(w))
        phase = ("plan" if planned < len(self.order) else "tune" if prim < len(ws) else
                 "measure" if measured + failed < len(self.order) else "tune-seeds" if conv < len(ws) else "done")
        return {"phase": phase, "archs_wanted": len(self.order), "archs_planned": planned,
                "archs_measured": measured, "archs_failed": failed, "tasks": len(ws),
                "tasks_converged_primary": prim, "tasks_converged": conv,
                "build_seconds": round(self.build_seconds(), 1)}

    def build_seconds(self) -> float:
        """Seconds the build spent: plan + tuning calls + untuned timings + measure (summed from the records)."""
        s = sum(a.plan_s or 0.0 for a in self.archs.values())
        s += sum(float(c.get("t1", 0)) - float(c.get("t0", 0)) for c in self.calls)
        s += sum(float(v.get("seconds", 0) or 0) for v in self.task_info.values())
        for a in self.archs.values():
            if a.measured is not None:
                sec = a.measured.get("seconds", {})
                s += sum(float(sec.get(k, 0) or 0) for k in ("estimate", "plan", "compile", "measure"))
        return s

    def info(self) -> dict[str, Any]:
        """``cosearch bench info``: one JSON object."""
        # kernels whose design space is one schedule (elementwise: MetaSchedule offers a single
        # candidate, "exhausted" after 1 trial) are counted apart from the searched ones
        single = {w for w, cs in self.curves.items() if cs and all(c.converged == "exhausted" and c.trials <= 1
                                                                  for c in cs.values())}
        trials = sorted(c.trials for w, cs in self.curves.items() if w not in single for c in cs.values())
        med = trials[len(trials) // 2] if trials else 0
        prog = self.progress()
        return {"path": str(self.path), "format": FORMAT, "version": VERSION,
                "machine_key": self.machine_key, "cpu": self.header.get("cpu"),
                "space": self.space_config, "target": self.header.get("target", {}).get("name"),
                "tasks": prog["tasks"], "single_schedule_tasks": len(single),
                "tasks_converged_primary": prog["tasks_converged_primary"],
                "tasks_converged": prog["tasks_converged"], "tuning_seeds": self.seeds,
                "trials_per_task": {"min": trials[0] if trials else 0, "median": med,
                                    "max": trials[-1] if trials else 0},
                "archs": prog["archs_wanted"], "archs_measured": prog["archs_measured"],
                "archs_failed": prog["archs_failed"], "phase": prog["phase"],
                "build_seconds": prog["build_seconds"], "convergence": self.convergence.to_dict(),
                "versions": self.header.get("versions", {})}

    def entry(self, space, arch: str) -> ArchEntry:
        """The benchmark's record of ``arch`` (any spelling of it); refused in one line when absent."""
        try:
            key = space.key(space.canonical(arch))
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CosearchError(f"{arch!r} is not an architecture of space {space.name!r}: {e}") from None
        a = self.archs.get(key)
        if a is None or not a.planned:
            raise CosearchError(f"architecture {arch!r} is not in the benchmark {str(self.path)!r} "
                                f"({len(self.measured())} architectures measured); replay covers only those")
        return a


def open_bench(path: str | os.PathLike) -> Bench:
    return Bench(path)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
