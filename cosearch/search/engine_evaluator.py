"""``EngineEvaluator``: the ``Evaluator`` on real TVM through ``cosearch.compile.engine``.

Plans (imported model + MetaSchedule tasks) are kept in a small LRU cache keyed
by arch: the loop plans an arch once, tunes its new tasks, measures it, and
touches it again only when it is on the front (re-measure, final measure,
export). Every TVM failure becomes a ``Measured``/exception with one line that
the loop journals as a ``fail`` event (failures are data).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from cosearch.errors import first_line
from cosearch.search.evaluator import Evaluator, Measured, Plan, Task, TaskState, TuneResult, merge_tasks


class EngineEvaluator(Evaluator):
    kind = "engine"
    #: the engine keeps its measuring worker between calls (``tuning.runner.acquire_runner``): NB201 bench-net
    #: tasks, 8 trials in 1.76 s, 32 in 5.71 s (bench/results/call_overhead.json, znver4)
    call_cost_prior = (0.5, 0.2)

    def __init__(self, space, estimator, target, *, schedules_dir: Path, seed: int = 0, log_dir: Path | None = None,
                 cache: int = 48, tune_overrides: dict[str, Any] | None = None) -> None:
        super().__init__(space, estimator)
        self.target = target
        self.db = Path(schedules_dir)
        self.db.mkdir(parents=True, exist_ok=True)
        self.seed = int(seed)
        self.log_dir = log_dir
        self._plans: OrderedDict[str, Any] = OrderedDict()
        self._cache = int(cache)
        self._ptasks: dict[str, Any] = {}  # workload -> PlannedTask (for tune_tasks)
        self._arch_of: dict[str, str] = {}  # workload -> an arch using it, of plans made by workers (``adopt``)
        self._exe: dict[str, tuple[Any, Any]] = {}  # arch -> (executable, latency) of the last final measure
        self.tune_overrides = dict(tune_overrides or {})

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "target": self.target.name, "tune": self.tune_overrides}

    def _engine_plan(self, arch: str):
        from cosearch.compile import engine

        p = self._plans.get(arch)
        if p is None:
            imported = engine.import_arch(self.space, arch, seed=self.seed)
            with self._quiet():
                p = engine.plan(imported, self.target)
            self._plans[arch] = p
            while len(self._plans) > self._cache:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(arch)
        for t in p.tasks:
            if t.tunable:
                self._ptasks.setdefault(t.workload, t)
        return p

    def adopt(self, plan: Plan) -> None:
        for t in plan.tasks:
            if t.workload not in self._ptasks:
                self._arch_of.setdefault(t.workload, plan.arch)

    def _planned_task(self, workload: str):
        """The engine's task of ``workload``; a worker's plan is made again here when tuned."""
        if workload not in self._ptasks and workload in self._arch_of:
            with self.working("plan"):
                self._engine_plan(self._arch_of[workload])
        return self._ptasks.get(workload)

    def plan(self, arch: str) -> Plan:
        t0 = time.perf_counter()
        p = self._engine_plan(arch)
        tasks = [Task(t.workload, int(t.weight), t.features.op_kind, float(t.features.flops),
                      tuple(tuple(int(v) for v in s) for s in t.features.shapes), t.name)
                 for t in p.tasks if t.tunable]
        return Plan(arch, merge_tasks(tasks), time.perf_counter() - t0, handle=p)

    def task_states(self, plan: Plan) -> dict[str, TaskState]:
        from cosearch.compile import engine

        p = plan.handle if plan.handle is not None else self._engine_plan(plan.arch)
        return {w: TaskState(s.best_us, int(s.trials_spent)) for w, s in engine.status(p, self.db).items()}

    def tune(self, tasks: Sequence[Task], budgets: dict[str, int]) -> TuneResult:
        from cosearch.compile import engine
        from cosearch.compile.tuning.config import TuneConfig

        pts = [p for p in (self._planned_task(t.workload) for t in tasks) if p is not None]
        total = int(sum(budgets.get(t.workload, 0) for t in tasks))
        if not pts or total <= 0:
            return TuneResult(0, 0.0, {}, {})
        cfg = TuneConfig(**{"trials": total, "seed": self.seed, "patience": None, **self.tune_overrides})
        parts = self._parts(len(pts))
        if parts > 1:
            return self._tune_split(pts, budgets, cfg, parts)
        # a target measured elsewhere (RPC boards) has its candidates built on the search's workers; on
        # the local CPU builds stay here: the lease would keep them from running beside measurements anyway
        builders = self.work if self.target.measure == "rpc" else None
        with self.measuring("tune"):  # its runner times candidates: nothing else of the search runs meanwhile
            out = engine.tune_tasks(pts, self.target, database_dir=self.db, trials=total, config=cfg,
                                    budgets={w: int(n) for w, n in budgets.items()}, log_dir=self.log_dir,
                                    builders=builders)
        return TuneResult(int(out.trials_run), float(out.seconds),
                          {w: o.best_us for w, o in out.tasks.items()},
                          {w: int(o.trials) for w, o in out.tasks.items()}, ended_early=out.scheduler_race,
                          builds=out.builds, measure=out.measure)

    def _parts(self, n_tasks: int) -> int:
        """How many pieces of ``n_tasks`` (a call's tasks, a group's archs) run at once: one per board
        of an RPC target, when the search has workers to run them (``distributed.tune``,
        ``distributed.measure``); else 1."""
        if (self.target.measure != "rpc" or self.work is None or not self.work.workers or self.work_spec is None
                or n_tasks < 2):
            return 1
        from cosearch.compile.deploy.rpc import boards

        return max(1, min(int(self.work.workers), boards(self.target.rpc), n_tasks))

    def _tune_split(self, pts: Sequence[Any], budgets: dict[str, int], cfg, k: int) -> TuneResult:
        """The call's tasks in ``k`` parts, each a tuning call in a worker (``distributed.tune``)."""
        from cosearch.distributed.tune import absorb, merge, snapshot, split_budgets, task_payload, tune_part

        by_w = {t.workload: t for t in pts}
        parts = split_budgets({w: int(budgets.get(w, 0)) for w in by_w if budgets.get(w, 0) > 0}, k)
        t0 = time.perf_counter()
        pending = [self.work.submit(tune_part, self.work_spec, [task_payload(by_w[w]) for w in part], part,
                                    cfg.to_dict(), snapshot(self.db, [by_w[w] for w in part], cfg.keep_records))
                   for part in parts]
        done, errors = [], []
        for p in pending:
            try:
                done.append(p.result())
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - a part lost for good: its tasks get no trial this call
                done.append(None)
                errors.append(first_line(e))
        absorb(self.db, done)  # the parts' records reach the database here, from this process only
        m = merge(done, errors, time.perf_counter() - t0)
        return TuneResult(m["trials"], m["seconds"], m["best_us"], m["trials_per_task"], ended_early=m["ended_early"],
                          builds=m["builds"], measure=m["measure"])

    def measure(self, arch: str, *, final: bool = False) -> Measured:
        from cosearch.compile import engine
        from cosearch.compile.deploy.measure import SEARCH_MEASURE, MeasureConfig, measure

        t0 = time.perf_counter()
        try:
            with self.working("plan"):
                p = self._engine_plan(arch)
        except Exception as e:  # noqa: BLE001
            return Measured(None, first_line(e), "export", time.perf_counter() - t0)
        try:
            with self._quiet(), self.working("compile"):
                exe = engine.compile_plan(p, self.db)
        except Exception as e:  # noqa: BLE001
            return Measured(None, first_line(e), "compile", time.perf_counter() - t0)
        if self.target.measure == "none":
            return Measured(None, f"target {self.target.name!r} is compile-only", "measure", time.perf_counter() - t0)
        cfg = MeasureConfig(seed=self.seed) if final else SEARCH_MEASURE
        try:
            with self.measuring("measure"):
                res = measure(exe, self.target, p.imported.inputs, config=cfg)
        except Exception as e:  # noqa: BLE001
            return Measured(None, first_line(e), "measure", time.perf_counter() - t0)
        if not res.ok:
            return Measured(None, str(res.error)[:300], "measure", time.perf_counter() - t0)
        if final:
            self._exe[arch] = (exe, res.latency)
        return Measured(float(res.latency.median_ms), None, "measure", time.perf_counter() - t0)

    def measure_many(self, archs: Sequence[str]) -> list[tuple[Measured, str | None]]:
        """Side by side on the target's RPC boards when the search has workers: each arch compiled
        and measured in a worker (``distributed.measure``), on the board the tracker hands it; an
        arch whose worker is lost for good is measured here. Else one after the other."""
        if self._parts(len(archs)) < 2:
            return super().measure_many(archs)
        from cosearch.distributed.measure import measure_arch

        pending = [self.work.submit(measure_arch, self.work_spec, a) for a in archs]
        out: list[tuple[Measured, str | None]] = []
        for a, p in zip(archs, pending):
            try:
                m, where = p.result()
            except Exception:  # noqa: BLE001 - lost work is done again here
                m, where = self.measure(a), None
            out.append((m, where))
        return out

    def measuring(self, what: str):
        """The local CPU's lease only where the target is measured on it (an RPC board is leased
        through the tracker)."""
        import contextlib

        return super().measuring(what) if self.target.measure == "local" else contextlib.nullcontext()

    def _quiet(self):
        """TVM's C++ warnings (printed on fd 2 while compiling) go to ``<run dir>/compile.log``."""
        from cosearch.compile import engine

        return engine.quiet_native_logs(Path(self.log_dir) / "compile.log" if self.log_dir else None)

    def export(self, arch: str, out_dir: Path, *, config: dict[str, Any]) -> None:
        from cosearch.compile import engine

        p = self._engine_plan(arch)
        exe, lat = self._exe.get(arch, (None, None))
        with self._quiet():
            if exe is None:
                exe = engine.compile_plan(p, self.db)
            engine.write_model_artifact(out_dir, p, exe, self.db, latency=lat, config=config)
