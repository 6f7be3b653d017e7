"""Tune what is new, then compile with every schedule the target's database knows.

``tune_and_compile(imported, target, database_dir=..., config=...)``:

1. extract MetaSchedule tasks (anchor-block equality);
2. load the shared database (``database.open_database``); tasks it already holds are
   ``source="db"`` and cost no trial;
3. tune the others with ``ms.tune_tasks`` into a private in-memory scratch database,
   with settings suited to µs kernels on few cores: the in-process builder
   (``builder.InProcessBuilder``), evaluator ``number``x``repeat`` with
   ``min_repeat_ms=0``, a small evolutionary population with one genetic
   iteration. A ``TuningMonitor`` callback appended after the default callbacks
   counts trials / failed candidates per task and applies the early-stop rule;
4. merge the scratch records into the shared files (lock + append + fsync);
5. ``tvm.compile`` the lowered module with the database applied
   (``MetaScheduleApplyDatabase``); tasks neither tuned nor in the database keep
   TVM's default schedules (``source="untuned"``; GPU targets get DLight defaults).

Targets with ``measure == "none"`` are never tuned (compile-only); ``"rpc"`` targets
are measured through MetaSchedule's ``RPCRunner`` with the target's tracker.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError
from cosearch.compile.codegen import KERNEL_CACHE, KernelCache, compile_with_database  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.early_stop import EarlyStopRule
    from cosearch.compile.frontend import ImportedModel
    from cosearch.compile.target import TargetSpec

COST_MODELS = ("xgb", "random")
TASK_SCHEDULERS = ("gradient", "round-robin")


def _pos_int(name: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        extra = " or None" if allow_none else ""
        raise CosearchError(f"TuneConfig.{name} must be a positive integer{extra}, got {v!r}")


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 64  # global budget
    trials_per_task: int | None = None  # cap per task
    trials_per_iter: int = 16  # candidates per measured batch (upper bound, see fit_batch)
    fit_batch: bool = True  # shrink the batch so every new task gets one within `trials`
    seed: int | None = 0
    patience: int | None = 4  # stall rule; None disables early stopping
    min_gain: float = 0.03
    # measurement (µs kernels: few runs, no minimum repeat time)
    number: int = 5
    repeat: int = 2
    runner_timeout_s: float = 10.0
    # search strategy (small population, one genetic iteration)
    population: int = 64
    genetic_iters: int = 1
    init_min_unmeasured: int = 16
    keep_records: int | None = 8  # best records kept per task in the shared database (None: all)
    cost_model: str = "random"  # "xgb" | "random" (xgb ranks at random below ~100 samples anyway)
    task_scheduler: str = "gradient"  # "gradient" | "round-robin"
    build_workers: int | None = None  # threads compiling candidates; None: this machine's cores (at most 4)

    def __post_init__(self) -> None:
        _pos_int("trials", self.trials)
        _pos_int("trials_per_task", self.trials_per_task, allow_none=True)
        _pos_int("trials_per_iter", self.trials_per_iter)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise CosearchError(f"TuneConfig.seed must be a non-negative integer or None, got {self.seed!r}")
        _pos_int("patience", self.patience, allow_none=True)
        _pos_int("keep_records", self.keep_records, allow_none=True)
        _pos_int("build_workers", self.build_workers, allow_none=True)
        if isinstance(self.min_gain, bool) or not isinstance(self.min_gain, (int, float)) or not 0 <= self.min_gain < 1:
            raise CosearchError(f"TuneConfig.min_gain must be a number in [0, 1), got {self.min_gain!r}")
        for n in ("number", "repeat", "population", "genetic_iters", "init_min_unmeasured"):
            _pos_int(n, getattr(self, n))
        if not isinstance(self.runner_timeout_s, (int, float)) or self.runner_timeout_s <= 0:
            raise CosearchError(f"TuneConfig.runner_timeout_s must be a positive number, got {self.runner_timeout_s!r}")
        if self.cost_model not in COST_MODELS:
            raise CosearchError(f"TuneConfig.cost_model must be one of {', '.join(COST_MODELS)}, got {self.cost_model!r}")
        if self.task_scheduler not in TASK_SCHEDULERS:
            raise CosearchError(
                f"TuneConfig.task_scheduler must be one of {', '.join(TASK_SCHEDULERS)}, got {self.task_scheduler!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_build_workers(self) -> int:
        """Candidates compile in threads (LLVM releases the GIL): 2 threads cut the
        build stage of a 64-trial NB201 tuning from 17.7 s to 11.3 s on 2 cores."""
        if self.build_workers is not None:
            return self.build_workers
        import os

        return max(1, min(4, os.cpu_count() or 1))

    def batch_for(self, n_tasks: int) -> int:
        """Candidates per measured batch when ``n_tasks`` new tasks share ``trials``.

        MetaSchedule's schedulers give every task one batch before any gets a second,
        but only while the global budget lasts: 16 new tasks, 64 trials and batches
        of 8 leave half the tasks with TVM's default CPU schedule, which is serial
        and unvectorised (tens of times slower than any tuned candidate). With
        ``fit_batch`` the batch shrinks to ``trials // n_tasks`` (at least 1), so
        every task gets measured candidates; it never exceeds ``trials_per_iter``
        nor ``trials_per_task``."""
        per = self.trials_per_iter
        if self.trials_per_task is not None:
            per = min(per, self.trials_per_task)
        if self.fit_batch and n_tasks > 0 and n_tasks * per > self.trials:
            per = max(1, self.trials // n_tasks)
        return per


@dataclass(frozen=True)
class TaskReport:
    name: str
    source: str  # "db" | "tuned" | "untuned"
    trials: int
    best_us: float | None
    error_count: int = 0
    weight: int = 1  # how many times the model calls this kernel


@dataclass
class TuneResult:
    executable: "tvm.runtime.Executable"  # the tvm.compile result (Relax VM executable)
    tasks: list[TaskReport]
    seconds: dict[str, float] = field(default_factory=dict)  # extract, tune, merge, compile
    trials_run: int = 0
    records_written: int = 0
    trials_per_iter: int | None = None  # batch actually used (TuneConfig.batch_for); None: nothing tuned


def _set_threads(n: int) -> None:  # runs in the runner's worker process
    import os

    os.environ["TVM_NUM_THREADS"] = str(n)


def _make_runner(target: "TargetSpec", config: TuneConfig):
    import functools

    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(
        number=config.number, repeat=config.repeat, min_repeat_ms=0, enable_cpu_cache_flush=False
    )
    if target.measure == "rpc":
        assert target.rpc is not None  # guaranteed by the target loader
        rpc = ms.runner.RPCConfig(
            tracker_host=target.rpc.tracker_host,
            tracker_port=target.rpc.tracker_port,
            tracker_key=target.rpc.key,
            session_timeout_sec=int(math.ceil(target.rpc.session_timeout_s)),
        )
        return ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=evaluator, max_workers=1)
    threads = target.threads or target.num_cores
    return ms.runner.LocalRunner(
        timeout_sec=config.runner_timeout_s,
        evaluator_config=evaluator,
        initializer=functools.partial(_set_threads, threads),
    )


def _check_rpc_reachable(target: "TargetSpec") -> None:
    """Bounded tracker connect + key check (``cosearch.compile.rpc``), before any tuning."""
    from cosearch.compile.rpc import check_key

    assert target.rpc is not None  # guaranteed by the target loader
    try:
        check_key(target.rpc)
    except CosearchError as e:
        raise CosearchError(f"target {target.name!r}: {e}; start the tracker/server or edit rpc in {target.path}") from e


def _tune(tasks, target: "TargetSpec", config: TuneConfig, rule, scratch: str, batch: int):
    """Run MetaSchedule on ``tasks`` in batches of ``batch``; returns (scratch database, ``TaskStats``)."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.builder import InProcessBuilder
    from cosearch.compile.early_stop import TaskStats, tuning_monitor
    from cosearch.compile.intrin import ensure_tensor_intrinsics
    from cosearch.compile.frontend import MODULE_EQUALITY

    # TuneContext imports every backend's tensor intrinsics (~23 s); import only this target's
    ensure_tensor_intrinsics(target.tvm_target())
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=config.population,
        genetic_num_iters=config.genetic_iters,
        init_min_unmeasured=min(config.init_min_unmeasured, config.population),
    )
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=scratch, strategy=strategy, num_threads=target.num_cores, seed=config.seed
    )
    stats = TaskStats([t.task_name for t in tasks], rule)
    callbacks = list(ms.measure_callback.MeasureCallback.create("default")) + [tuning_monitor(stats)]
    if config.cost_model == "xgb":
        cost_model = ms.cost_model.XGBModel(num_tuning_cores=target.num_cores)
    else:
        cost_model = ms.cost_model.RandomModel(seed=config.seed)
    if config.task_scheduler == "gradient":
        scheduler = ms.task_scheduler.GradientBased(seed=-1 if config.seed is None else config.seed)
    else:
        scheduler = ms.task_scheduler.RoundRobin()
    scratch_db = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
    runner = _make_runner(target, config)
    builder = InProcessBuilder(tmp_root=scratch, workers=config.resolved_build_workers())
    try:
        ms.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=scratch,
            max_trials_global=config.trials,
            max_trials_per_task=config.trials_per_task,
            num_trials_per_iter=batch,
            builder=builder,
            runner=runner,
            database=scratch_db,
            cost_model=cost_model,
            measure_callbacks=callbacks,
            task_scheduler=scheduler,
            module_equality=MODULE_EQUALITY,
        )
    finally:
        pool = getattr(runner, "pool", None)
        if pool is not None:
            pool.shutdown()
    return scratch_db, stats


def tune_and_compile(
    imported: "ImportedModel",
    target: "TargetSpec",
    *,
    database_dir: Path,
    config: TuneConfig,
    early_stop: "EarlyStopRule | None" = None,
) -> TuneResult:
    from cosearch.compile import database as dbmod
    from cosearch.compile.early_stop import Stall
    from cosearch.compile.frontend import extract_tasks

    if not isinstance(config, TuneConfig):
        raise CosearchError(f"config must be a TuneConfig, got {type(config).__name__}")
    rule = early_stop
    if rule is None and config.patience is not None:
        rule = Stall(patience=config.patience, min_gain=config.min_gain)

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks = extract_tasks(imported, target)
    db = dbmod.open_database(database_dir)
    seconds["extract"] = time.perf_counter() - t0

    in_db, new, fixed = [], [], []
    for t in tasks:
        if t.mod.attrs and t.mod.attrs.get("tirx.is_scheduled", False):
            fixed.append(t)  # already scheduled by the frontend: nothing to tune
        elif db.has_workload(t.dispatched[0]):
            in_db.append(t)
        else:
            new.append(t)

    reports: dict[str, TaskReport] = {}
    for t in in_db:
        reports[t.task_name] = TaskReport(t.task_name, "db", 0, dbmod.best_us(db, t.dispatched[0]), 0, int(t.weight))

    for t in fixed:
        reports[t.task_name] = TaskReport(t.task_name, "untuned", 0, None, 0, int(t.weight))
    trials_run = written = 0
    batch = None
    if new and target.measure != "none":
        if target.measure == "local":
            ok, why = target.runs_here()
            if not ok:
                raise CosearchError(
                    f"target {target.name!r} is measured locally but cannot run here: {why}; "
                    f"use a target with measure 'rpc' or 'none'"
                )
        else:
            _check_rpc_reachable(target)
        scratch = tempfile.mkdtemp(prefix="cosearch-tune-")
        try:
            t1 = time.perf_counter()
            batch = config.batch_for(len(new))
            scratch_db, stats = _tune(new, target, config, rule, scratch, batch)
            seconds["tune"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            records = dbmod.best_records(scratch_db, config.keep_records)
            written = dbmod.merge_records(database_dir, records)
            db = dbmod.open_database(database_dir)  # incremental: reads the lines just merged
            seconds["merge"] = time.perf_counter() - t2
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for i, t in enumerate(new):
            best = stats.best_us[i]
            has = db.has_workload(t.dispatched[0])
            reports[t.task_name] = TaskReport(
                t.task_name,
                "tuned" if has else "untuned",
                stats.trials[i],
                dbmod.best_us(db, t.dispatched[0]) if has else (best if math.isfinite(best) else None),
                stats.errors[i],
                int(t.weight),
            )
        trials_run = sum(stats.trials)
    else:
        for t in new:
            reports[t.task_name] = TaskReport(t.task_name, "untuned", 0, None, 0, int(t.weight))

    t3 = time.perf_counter()
    try:
        executable = compile_with_database(imported.mod, target, db)
    except Exception as e:
        if isinstance(e, CosearchError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CosearchError(f"compiling for target {target.name!r} failed: {first[:300]}") from e
    seconds["compile"] = time.perf_counter() - t3
    return TuneResult(
        executable=executable,
        tasks=[reports[t.task_name] for t in tasks],
        seconds=seconds,
        trials_run=trials_run,
        records_written=written,
        trials_per_iter=batch,
    )
