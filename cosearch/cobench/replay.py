"""``ReplayEvaluator``: the search's ``Evaluator`` answered from a benchmark (``--evaluator replay:BENCH``).

The same strategy code that runs on the real engine, with every compiler step looked up
in the benchmark and charged to a *simulated clock* by its recorded cost:

- ``plan(arch)``: the recorded tasks and weights; costs the recorded plan seconds (import + plan,
  timed alone in the measure phase);
- ``accuracy(arch)``: the run's own estimator (a ``table:`` oracle, or any estimator,
  computed for real), charged the recorded seconds of the benchmark's estimator;
- ``tune(tasks, budgets)``: each workload follows one recorded tuning curve, picked per
  workload among the benchmark's tuning seeds (those whose curve of it is finished) by the
  run's seed; its best µs after n
  trials is the curve's (a step function), and the call costs the curve's recorded
  seconds between the trials spent before and after it, plus the recorded set-up of one
  tuning call (``Bench.call_overhead_s``); trials past the curve's end keep its last best
  and cost its mean seconds per trial, except on a curve whose design space was spent
  (``exhausted``: a one-schedule elementwise kernel), where, as in the engine, no more
  trials run or count;
- ``measure(arch)``: the recorded end-to-end latency at the converged database, scaled by
  the kernel sum of the run's current tuning state over the converged kernel sum (exact
  at convergence; a model elsewhere: docs/benchmark.md), with the recorded spread as
  seeded log-normal noise (sigma from p10/p90); it costs the recorded compile seconds plus
  the recorded measurement seconds in proportion to the timings the search takes (10
  search, 30 final, of the benchmark's thread counts x rounds x repeats);
- ``export``: a ``REPLAY.json`` note (no module: nothing was compiled).

State that a kill must not lose (trials spent per workload) is appended to
``<schedules>/replay_db.jsonl`` (``{"v": 1, "workload": W, "trials": n}``, fsynced), so
``--resume`` continues where the run stopped. The clock counts recorded costs only, not
the search's own decision time, so a seed gives the same run every time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cosearch.cobench.store import ArchEntry, Bench, Curve, open_bench
from cosearch.errors import CosearchError
from cosearch.search.evaluator import (Evaluator, Measured, Plan, Task, TaskState, TuneResult, append_trials_log,
                                       read_trials_log)

SEARCH_TIMINGS = 10  # timings of a search measurement (SEARCH_MEASURE.repeat)
FINAL_TIMINGS = 30  # timings of a final measurement (MeasureConfig().repeat)


def _unit(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def followed_curve(bench: Bench, workload: str, seed: int) -> Curve | None:
    """The recorded curve a replay of ``seed`` follows for ``workload``: one of the tuning seeds
    whose curve of it is finished (a build in progress: finished curves only), picked by the seed."""
    cs = bench.curves.get(workload, {})
    seeds = [s for s in bench.seeds if s in cs and cs[s].converged]
    if not seeds:
        return None
    return cs[seeds[_unit("replay-seed", int(seed), workload) % len(seeds)]]


def run_converged_ms(bench: Bench, a: ArchEntry, seed: int) -> float:
    """The architecture's end-to-end latency on a replay of ``seed`` with every task at the end
    of the curve that replay follows: what tuning to convergence gives *that* run. It differs
    from the benchmark's converged latency (the primary tuning seed's) where the tuning seeds
    converged apart (on the NB201 benchmark one task ends at 54 µs on seed 0, 89 µs on seed 1)."""
    conv = bench.kernel_sum_ms(a)
    if not conv:
        return float(a.ms)
    tot = 0.0
    for w, wt in a.tasks:
        c = followed_curve(bench, w, seed)
        us = c.final_us if c is not None and c.final_us is not None else bench.converged_us(w)
        tot += wt * (us or 0.0)
    return float(a.ms) * (tot / 1000.0) / conv


def parse_replay(kind: str) -> str | None:
    """The BENCH path of ``replay:BENCH``, else ``None``."""
    name, sep, path = str(kind).partition(":")
    return path if name == "replay" and sep else None


class ReplayEvaluator(Evaluator):
    kind = "replay"
    wall_clock = False

    def __init__(self, space, estimator, bench: Bench | str | os.PathLike, *, schedules_dir: str | os.PathLike,
                 seed: int = 0) -> None:
        super().__init__(space, estimator)
        self.bench = bench if isinstance(bench, Bench) else open_bench(bench)
        if space.config() != self.bench.space_config:
            raise CosearchError(f"the benchmark {str(self.bench.path)!r} is of space {self.bench.space_config}; "
                                f"this search asks for {space.config()}")
        self.seed = int(seed)
        self.sim = 0.0
        self.dir = Path(schedules_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.dir / "replay_db.jsonl"
        self.trials: dict[str, int] = read_trials_log(self.db_path)
        self._measures: dict[str, int] = {}
        h = self.bench.header.get("measure", {})
        per = len(h.get("threads", [1, 2])) * int(h.get("rounds", 3)) * int(h.get("config", {}).get("repeat", 10))
        self._timings = max(1, per)
        self._overhead = self.bench.call_overhead_s()

    # -- bookkeeping --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "bench": str(self.bench.path.resolve()), "machine_key": self.bench.machine_key,
                "cpu": self.bench.header.get("cpu"), "seed": self.seed}

    def pool(self) -> list[str]:
        """The architectures a search may propose: the benchmark's measured ones."""
        return [a.arch for a in self.bench.measured()]

    def entry(self, arch: str) -> ArchEntry:
        a = self.bench.entry(self.space, arch)
        if a.measured is None:
            raise CosearchError(f"architecture {arch!r} is in the benchmark {str(self.bench.path)!r} but was not "
                                "measured (its build failed or has not reached it)")
        return a

    def curve(self, workload: str) -> Curve | None:
        return followed_curve(self.bench, workload, self.seed)

    def best_us(self, workload: str, trials: int) -> float | None:
        c = self.curve(workload)
        return None if c is None else c.best_at(trials)

    # -- the Evaluator interface ----------------------------------------------------
    def accuracy(self, arch: str) -> tuple[float, float, str]:
        a = self.entry(arch)
        score, _sec, fid = super().accuracy(arch)
        sec = a.cost_s("estimate")
        self.sim += sec
        return score, sec, fid

    def plan(self, arch: str) -> Plan:
        a = self.entry(arch)
        tasks = []
        for w, wt in a.tasks:
            info = self.bench.task_info.get(w, {})
            tasks.append(Task(w, int(wt), str(info.get("op", "other")), float(info.get("flops", 0.0) or 0.0),
                              tuple(tuple(int(v) for v in s) for s in info.get("shapes", [])), str(info.get("name", ""))))
        sec = a.cost_s("plan")
        self.sim += sec
        return Plan(a.arch, tasks, sec)

    def task_states(self, plan: Plan) -> dict[str, TaskState]:
        out = {}
        for t in plan.tasks:
            n = self.trials.get(t.workload, 0)
            out[t.workload] = TaskState(self.best_us(t.workload, n), n)
        return out

    def tune(self, tasks: Sequence[Task], budgets: dict[str, int]) -> TuneResult:
        known = {t.workload for t in tasks}
        run = {}
        for w, n in budgets.items():
            c = self.curve(w)
            if n <= 0 or w not in known or c is None:
                continue
            if c.converged in ("exhausted", "no_valid_candidate"):
                # MetaSchedule had no further candidate: the engine measures nothing more (and counts nothing)
                n = min(int(n), c.trials - self.trials.get(w, 0))
            if n > 0:
                run[w] = int(n)
        if not run:
            return TuneResult(0, 0.0, {}, {})
        sec = self._overhead
        for w, n in run.items():
            c, n0 = self.curve(w), self.trials.get(w, 0)
            sec += c.seconds_at(n0 + n) - c.seconds_at(n0)
        append_trials_log(self.db_path, run)
        for w, n in run.items():
            self.trials[w] = self.trials.get(w, 0) + n
        self.sim += sec
        return TuneResult(sum(run.values()), sec, {w: self.best_us(w, self.trials[w]) for w in run}, run)

    def latency_now_ms(self, a: ArchEntry) -> float:
        """The end-to-end latency at the run's current tuning state, without noise."""
        conv = self.bench.kernel_sum_ms(a)
        if not conv:
            return float(a.ms)
        now = 0.0
        for w, wt in a.tasks:
            us = self.best_us(w, self.trials.get(w, 0))
            if us is None:
                us = self.bench.untuned.get(w, self.bench.converged_us(w) or 0.0)
            now += wt * us
        return float(a.ms) * (now / 1000.0) / conv

    def measure(self, arch: str, *, final: bool = False) -> Measured:
        try:
            a = self.entry(arch)
        except CosearchError as e:
            return Measured(None, str(e), "compile", 0.0)
        m = a.measured
        sec = a.cost_s("compile") + a.cost_s("measure") * (FINAL_TIMINGS if final else SEARCH_TIMINGS) / self._timings
        self.sim += sec
        n = self._measures.get(a.key, 0)
        self._measures[a.key] = n + 1
        p10, p90 = float(m.get("p10_ms") or a.ms), float(m.get("p90_ms") or a.ms)
        sigma = math.log(max(p90, 1e-12) / max(p10, 1e-12)) / (2 * 1.2816) if p90 > p10 > 0 else 0.0
        z = float(np.random.default_rng([self.seed, _unit("measure", a.key, n, bool(final)) % 2**32]).standard_normal())
        return Measured(self.latency_now_ms(a) * math.exp(sigma * z), None, "measure", sec)

    def export(self, arch: str, out_dir: Path, *, config: dict[str, Any]) -> None:
        a = self.entry(arch)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "REPLAY.json").write_text(json.dumps({
            "arch": a.arch, "key": a.key, "bench": str(self.bench.path.resolve()),
            "note": "replayed from a benchmark: no module was compiled; cosearch tune SPACE:ARCH --schedules "
                    "BENCH/schedules compiles it on the benchmark's CPU",
            "latency_now_ms": self.latency_now_ms(a), "latency_converged_ms": a.ms, "config": config},
            indent=1, default=str) + "\n")
