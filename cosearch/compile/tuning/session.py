"""A tuning call: ``tune_tasks`` (kill-safe, incremental).

Each measured batch's records reach the shared database as the batch finishes (a
``PyMeasureCallback`` after MetaSchedule's own callbacks appends them under the database
lock, fsynced), and the batch is logged to the per-task history ``<db>/tasks.jsonl``
(``cosearch.compile.storage.history``): a kill -9 loses at most the batches in flight.
The default round-robin scheduler joins (and so persists) each batch as soon as it is
measured; MetaSchedule's gradient scheduler (``TuneConfig(task_scheduler="gradient")``)
first sends one batch of *every* task and joins them together, so with it a kill during
that first round loses the whole round (NB201 net, 22 tasks: first batch persisted after
38 s vs 8 s with round-robin; bench/results/engine_cost_gradient.json). Where trials go
is decided by ``tuning.allocate``, not by the scheduler. A workload already in the
database is tuned further: its best records seed the search's database, so MetaSchedule's
evolutionary search starts from them, and the trials it already had are counted from the
history file. The early-stop rule (``tuning.stop``) may skip a task before its first
batch and stop it after any batch.

The call runs in three steps on one ``TaskRun`` per task: ``_prepare`` (deduplicate,
read the database, allocate, skip by rule), ``_run`` (MetaSchedule's task scheduler with
the persisting monitor), ``_collect`` (confirm, read back the outcomes).
"""

from __future__ import annotations

import math
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cosearch.compile.plan import PlannedTask, TaskFeatures, TaskStatus, kernel_us, trials_spent, unique_tasks
from cosearch.compile.storage import history as hist
from cosearch.compile.tuning import runner as runners
from cosearch.compile.tuning.logs import quiet_native_logs, task_loggers
from cosearch.compile.tuning.stop import EarlyStopRule, TaskProgress, TaskStats
from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tuning.config import TuneConfig


@dataclass(frozen=True)
class TaskOutcome:
    name: str
    trials: int
    errors: int
    best_us: float | None  # best in the database after this run (this run's or earlier)
    stopped: bool  # by the early-stop rule
    skipped: bool = False  # stopped before its first batch


@dataclass
class TuneOutcome:
    trials_run: int
    seconds: float
    tasks: dict[str, TaskOutcome]
    batch: int | None = None
    records_written: int = 0
    run: str = ""
    persist_seconds: float = 0.0  # time spent appending records + history after batches
    confirm_seconds: float = 0.0  # re-timing the best records (TuneConfig.confirm)
    # the search this run used (TuneConfig.for_tasks: a clock too short per task narrows it)
    search: dict[str, Any] | None = None
    scheduler_race: bool = False  # the call ended early on MetaSchedule's join race (scheduler_raced)
    # new tasks started from a transferred schedule (``tuning.seed``): counts and seconds, or None
    transfer: dict[str, Any] | None = None
    # candidates built, where ("driver", or "pool": a work pool's workers), and the wall seconds the
    # tuning loop waited for builds (the rest of ``seconds`` is generation, measurement, persistence)
    builds: dict[str, Any] | None = None
    # RPC measurements measured again after a failure (a hung or rebooted board: ``tuning.retry``)
    # and still failed after that, with the first errors; None for a local runner
    measure: dict[str, Any] | None = None


def _record_from(cand, run_res, workload, target):
    from tvm.s_tir import meta_schedule as ms

    return ms.database.TuningRecord(cand.sch.trace, workload, run_res.run_secs, target, cand.args_info)


class _Persist:
    """Called after each measured batch: append improving records + a history line."""

    def __init__(self, database_dir: Path, tasks: list[PlannedTask], keep: int | None, run: str,
                 prior: list[TaskProgress], progress: Callable[[dict], None] | None, total: int) -> None:
        self.dir = database_dir
        self.tasks = tasks
        self.keep = keep
        self.run = run
        self.prior = prior
        self.progress = progress
        self.total = total
        self.kept: list[list[float]] = [[] for _ in tasks]  # mean secs of records written per task (this run)
        self.records_written = 0
        self.pending: list[tuple[int, Any, Any]] = []  # (task id, candidate, runner result) of the current batch
        self.trials_run = 0
        self.done: set[int] = set()
        self.target = None
        self.workloads: list[Any] = []
        self.seconds = 0.0

    def on_batch(self, i: int, results, progress: TaskProgress) -> None:
        t0 = time.perf_counter()
        try:
            self._on_batch(i, results, progress)
        finally:
            self.seconds += time.perf_counter() - t0

    def _on_batch(self, i: int, results, progress: TaskProgress) -> None:
        from cosearch.compile.storage import database as dbmod

        records, batch_best = [], math.inf
        valid = []
        for _, cand, rr in self.pending:
            secs = dbmod.valid_secs(rr.run_secs) if rr.error_msg is None else None
            if secs is not None:
                valid.append((sum(secs) / len(secs), cand, rr))
        valid.sort(key=lambda x: x[0])  # fastest first: at most `keep` new records per task and batch
        for mean, cand, rr in valid:
            batch_best = min(batch_best, mean * 1e6)
            kept = self.kept[i]
            if self.keep is not None and len(kept) >= self.keep and mean >= sorted(kept)[self.keep - 1]:
                continue
            kept.append(mean)
            records.append(_record_from(cand, rr, self.workloads[i], self.target))
        self.pending = []
        written = dbmod.merge_records(self.dir, records) if records else 0
        self.records_written += written
        t = self.tasks[i]
        best = progress.best_us
        n_batch = len(results)
        self.trials_run += n_batch
        hist.append(self.dir, [hist.event(
            "batch", t.workload, run=self.run, name=t.name, trials=n_batch,
            errors=sum(1 for e, s in results if e is not None or not s),
            batch_best_us=hist.num(batch_best), best_us=hist.num(best),
            prior_trials=progress.prior_trials + progress.trials - n_batch,
        )])
        if self.progress is not None:
            self.progress({"workload": t.workload, "name": t.name, "trials_run": self.trials_run,
                           "trials_total": self.total, "best_us": None if not math.isfinite(best) else best,
                           "tasks_done": len(self.done), "tasks_total": len(self.tasks)})


def _monitor(stats: TaskStats, persist: _Persist, budgets: list[int], per_task_cap: int,
             deadline: float | None = None):
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class EngineMonitor(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            i = int(task_id)
            if len(measure_candidates) == 0:  # the task's search space is exhausted: nothing ran
                if not task_scheduler.tasks_[i].is_terminated and stats.progress[i].trials < per_task_cap:
                    persist.done.add(i)
                    task_scheduler.terminate_task(i)
                return
            results = []
            persist.pending = []
            for c, b, r in zip(measure_candidates, builder_results, runner_results):
                err = b.error_msg if b.error_msg is not None else r.error_msg
                results.append((None if err is None else str(err), None if r.run_secs is None else list(r.run_secs)))
                persist.pending.append((i, c, r))
            stop = stats.observe(i, results)
            if stop or stats.progress[i].trials >= budgets[i]:
                if stop:
                    t = persist.tasks[i]
                    hist.append(persist.dir, [hist.event(
                        "stop", t.workload, run=persist.run, rule=stats.rule.config() if stats.rule else None,
                        before_first_batch=False, trials=stats.progress[i].trials,
                        best_us=hist.num(stats.progress[i].best_us))])
                persist.done.add(i)
                # MetaSchedule terminates a task itself once it reaches max_trials_per_task
                # (and fails if it was terminated already)
                if stats.progress[i].trials < per_task_cap and not task_scheduler.tasks_[i].is_terminated:
                    task_scheduler.terminate_task(i)
            if deadline is not None and time.perf_counter() >= deadline:
                left = [j for j in range(len(persist.tasks))
                        if j not in persist.done and not task_scheduler.tasks_[j].is_terminated]
                if left:
                    hist.append(persist.dir, [hist.event(
                        "stop", persist.tasks[j].workload, run=persist.run, rule={"kind": "deadline"},
                        before_first_batch=stats.progress[j].trials == 0, trials=stats.progress[j].trials,
                        best_us=hist.num(stats.progress[j].best_us)) for j in left])
                for j in left:
                    persist.done.add(j)
                    if stats.progress[j].trials < per_task_cap:
                        task_scheduler.terminate_task(j)

    return EngineMonitor()


def scheduler_raced(e: BaseException) -> bool:
    """MetaSchedule's round-robin ``NextTaskId`` joins the task it picks when that task's
    measurements were still running at its poll, and returns it without looking again: when the
    monitor terminated the task in that join (its budget reached, or stopped early),
    ``Tune`` fails ``ICHECK(!task->is_terminated)``. A race between the runner's subprocess and
    the poll, seen in calls of a few tasks with unequal budgets (the search's finishing calls);
    the batches measured before it are persisted, so it ends the call, not the work."""
    return "is_terminated" in str(e)


def _record_race_stops(persist: _Persist, stats: TaskStats) -> None:
    """Every measured batch is persisted already; the call ends short of its budgets: a
    ``stop`` event (rule ``scheduler_race``) for each task it had not finished."""
    hist.append(persist.dir, [hist.event(
        "stop", t.workload, run=persist.run, rule={"kind": "scheduler_race"},
        before_first_batch=stats.progress[j].trials == 0, trials=stats.progress[j].trials,
        best_us=hist.num(stats.progress[j].best_us)) for j, t in enumerate(persist.tasks) if j not in persist.done])


@dataclass
class TaskRun:
    """One workload of a tuning call: the task, its summed weight, its status before the call,
    its trial budget, and what the early-stop rule sees of it (features, prior progress)."""

    task: PlannedTask
    weight: int
    status: TaskStatus
    budget: int
    features: TaskFeatures
    prior: TaskProgress

    @property
    def workload(self) -> str:
        return self.task.workload


@dataclass
class _Call:
    """A prepared tuning call: the tasks it will tune, in order, and what it reports."""

    database_dir: Path
    config: "TuneConfig"
    rule: EarlyStopRule | None
    outcome: TuneOutcome
    t_start: float
    db: Any = None
    runs: list[TaskRun] = field(default_factory=list)
    batch: int = 0
    seeds: Any = None  # tuning.seed.Seeds of this call


def tune_tasks(
    tasks: Sequence[PlannedTask],
    target: "TargetSpec",
    *,
    database_dir: Path | str,
    trials: int,
    config: "TuneConfig | None" = None,
    budgets: dict[str, int] | None = None,
    early_stop: EarlyStopRule | None = None,
    progress: Callable[[dict], None] | None = None,
    log_dir: Path | str | None = None,
    builders: Any = None,
) -> TuneOutcome:
    """Tune ``tasks`` (deduplicated by workload) with at most ``trials`` trials.

    ``budgets`` caps trials per workload (default: ``tuning.allocate``). Records and
    history reach ``database_dir`` after every batch. ``builders``: a work pool
    (``cosearch.distributed``) with workers to build the candidates on (``PoolBuilder``);
    default: this process. Returns per-workload outcomes."""
    from cosearch.compile.tuning.config import TuneConfig

    config = config or TuneConfig(trials=max(1, trials))
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise CosearchError(f"trials must be a non-negative integer, got {trials!r}")
    call = _prepare(tasks, target, Path(database_dir), trials, config, budgets, early_stop)
    if call.runs and config.transfer:
        _seed(call, target)
    if call.runs:
        stats, persist = _run(call, target, progress, None if log_dir is None else Path(log_dir) / "tune.log",
                              builders)
        _collect(call, target, stats, persist)
    call.outcome.seconds = time.perf_counter() - call.t_start
    return call.outcome


def _seed(call: _Call, target: "TargetSpec") -> None:
    """New tasks start from a transferred schedule timed as their first trial (``tuning.seed``):
    its record joins the database, the trial is paid from the task's budget, and a task whose
    budget it used up leaves the call."""
    from cosearch.compile.tuning.seed import seed_new_tasks

    new = [r.task for r in call.runs if not r.status.in_db]
    if not new:
        return
    seeds = call.seeds = seed_new_tasks(new, call.db, target, database_dir=call.database_dir, config=call.config,
                                        run=call.outcome.run)
    call.outcome.transfer = {"new_tasks": len(new), "seeded": len(seeds.records), "failed": seeds.failed,
                             "no_donor": len(seeds.not_transferred), "seconds": round(seeds.seconds, 3)}
    call.outcome.trials_run = len(seeds.records)  # _collect adds the call's batches
    call.outcome.records_written = seeds.written
    runs = []
    for r in call.runs:
        us = seeds.us.get(r.workload)
        if us is not None:
            r.status = TaskStatus(True, us, r.status.trials_spent + 1)
            r.prior = TaskProgress(prior_trials=r.prior.prior_trials + 1, prior_best_us=us,
                                   batch_size=r.prior.batch_size)
            r.budget -= 1
            if r.budget <= 0:
                call.outcome.tasks[r.workload] = TaskOutcome(r.task.name, 1, 0, us, False)
                continue
        runs.append(r)
    call.runs = runs


def _check_measurable(target: "TargetSpec") -> None:
    if target.measure == "local":
        ok, why = target.runs_here()
        if not ok:
            raise CosearchError(f"target {target.name!r} is measured locally but cannot run here: {why}; "
                                f"use a target with measure 'rpc' or 'none'")
    else:
        runners.check_rpc_reachable(target)


def _prepare(tasks: Sequence[PlannedTask], target: "TargetSpec", database_dir: Path, trials: int,
             config: "TuneConfig", budgets: dict[str, int] | None, early_stop: EarlyStopRule | None) -> _Call:
    """Deduplicate, read the database, allocate the trials, skip what the rule skips."""
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.tuning.allocate import allocate, trials_to_allocate
    from cosearch.compile.tuning.stop import Stall

    t_start = time.perf_counter()
    rule = early_stop
    if rule is None and config.patience is not None:
        rule = Stall(patience=config.patience, min_gain=config.min_gain)
    uniq, weights = unique_tasks(tasks)
    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    st = {}
    for w, t in uniq.items():
        has = db.has_workload(t.mod)
        st[w] = TaskStatus(has, dbmod.best_us(db, t.mod) if has else None, h[w].trials if w in h else 0)
    call = _Call(database_dir, config, rule, TuneOutcome(0, 0.0, {}, None, 0, secrets.token_hex(6)), t_start, db)
    if not uniq or trials == 0 or target.measure == "none":
        for w, t in uniq.items():
            call.outcome.tasks[w] = TaskOutcome(t.name, 0, 0, st[w].best_us, False)
        return call
    _check_measurable(target)
    new_count = sum(1 for w in uniq if not st[w].in_db)
    batch = config.batch_for(max(1, new_count)) if new_count else min(config.trials_per_iter, config.trials_per_task or 10**9)
    call.batch = batch = max(1, min(batch, trials))
    if budgets is None:
        budgets = allocate(list(uniq.values()), st, trials_to_allocate(config, trials, len(uniq), batch), batch,
                           config.trials_per_task)
    runs = [TaskRun(uniq[w], weights[w], st[w], budgets[w],
                    TaskFeatures(**{**uniq[w].features.__dict__, "weight": weights[w]}),
                    TaskProgress(prior_trials=st[w].trials_spent, prior_best_us=st[w].best_us, batch_size=batch))
            for w in uniq if budgets.get(w, 0) > 0]
    call.runs = _skip_by_rule(call, runs, known=set(h))
    chosen = {r.workload for r in runs}
    for w in uniq:
        if w not in chosen:
            call.outcome.tasks[w] = TaskOutcome(uniq[w].name, 0, 0, st[w].best_us, False)
    return call


def _skip_by_rule(call: _Call, runs: list[TaskRun], known: set[str]) -> list[TaskRun]:
    """Ask the rule before each task's first batch; log the skipped ones (``stop`` events)
    and the first sight of a workload (``task`` events). Returns the tasks to tune."""
    stats = TaskStats([r.features for r in runs], call.rule, priors=[r.prior for r in runs])
    selected, events = [], []
    rule_config = call.rule.config() if call.rule else None
    for i, r in enumerate(runs):
        if stats.should_skip(i):
            call.outcome.tasks[r.workload] = TaskOutcome(r.task.name, 0, 0, r.status.best_us, True, True)
            events.append(hist.event("stop", r.workload, run=call.outcome.run, rule=rule_config,
                                     before_first_batch=True, trials=0, best_us=hist.num(r.status.best_us)))
        else:
            selected.append(r)
    hist.append(call.database_dir, events + [
        hist.event("task", r.workload, name=r.task.name, op=r.task.features.op_kind,
                   shapes=[list(s) for s in r.task.features.shapes], flops=r.task.features.flops,
                   weight=r.weight, target=r.task.features.target)
        for r in selected if r.workload not in known])
    return selected


def _search_strategies(config: "TuneConfig", runs: list[TaskRun]) -> list[Any]:
    """Per task an evolutionary search sized by what its kernel costs the model
    (``TuneConfig.search_for``); tasks with the same size share one object."""
    from tvm.s_tir import meta_schedule as ms

    searches: dict[tuple[int, int], Any] = {}
    out = []
    for r in runs:
        pop, gi = config.search_for(r.weight * kernel_us(r.task, r.status))
        if (pop, gi) not in searches:
            searches[(pop, gi)] = ms.search_strategy.EvolutionarySearch(
                population_size=pop, genetic_num_iters=gi, init_min_unmeasured=min(config.init_min_unmeasured, pop))
        out.append(searches[(pop, gi)])
    return out


def _tune_contexts(runs: list[TaskRun], target: "TargetSpec", config: "TuneConfig", log_file: Path | None) -> list[Any]:
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import fork_seed

    tasks = [r.task for r in runs]
    loggers = task_loggers([t.name for t in tasks], log_file)
    return [
        ms.TuneContext(mod=t.mod, target=t.extracted.target, space_generator="post-order-apply",
                       search_strategy=strat, task_name=t.name, logger=lg, rand_state=rs,
                       num_threads=target.num_cores).clone()
        for t, strat, lg, rs in zip(tasks, _search_strategies(config, runs), loggers,
                                    fork_seed(config.seed, n=len(tasks)))
    ]


def _scratch_database(call: _Call) -> Any:
    """The search's own database: this call's records plus the shared best ones (warm start)."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage.database import MODULE_EQUALITY

    scratch_db = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
    db = call.db
    for r in call.runs:
        if db.has_workload(r.task.mod):
            dbmod.add_records(scratch_db, db.get_top_k(db.commit_workload(r.task.mod), call.config.keep_records or 8))
    if call.seeds is not None:  # the transferred first records of new tasks (tuning.seed)
        dbmod.add_records(scratch_db, [call.seeds.records[r.workload] for r in call.runs
                                       if r.workload in call.seeds.records])
    return scratch_db


def _cost_model_and_scheduler(config: "TuneConfig", target: "TargetSpec") -> tuple[Any, Any]:
    from tvm.s_tir import meta_schedule as ms

    if config.cost_model == "xgb":
        cost_model = ms.cost_model.XGBModel(num_tuning_cores=target.num_cores)
    else:
        cost_model = ms.cost_model.RandomModel(seed=config.seed)
    if config.task_scheduler == "gradient":
        scheduler = ms.task_scheduler.GradientBased(seed=-1 if config.seed is None else config.seed)
    else:
        scheduler = ms.task_scheduler.RoundRobin()
    return cost_model, scheduler


def _run(call: _Call, target: "TargetSpec", progress: Callable[[dict], None] | None,
         log_file: Path | None, builders: Any = None) -> tuple[TaskStats, _Persist]:
    """MetaSchedule's task scheduler over the prepared tasks, each batch persisted by the monitor."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics
    from cosearch.compile.tuning.builder import InProcessBuilder, PoolBuilder

    config = call.config = call.config.for_tasks(len(call.runs))  # a clock too short per task: the cheap search
    call.outcome.search = {"population": config.population, "genetic_iters": config.genetic_iters,
                           "cost_model": config.cost_model, "wide_min_us": config.wide_min_us}
    budgets = [r.budget for r in call.runs]
    ensure_tensor_intrinsics(target.tvm_target())
    scratch = tempfile.mkdtemp(prefix="cosearch-tune-")
    persist = _Persist(call.database_dir, [r.task for r in call.runs], config.keep_records, call.outcome.run,
                       [r.prior for r in call.runs], progress, sum(budgets))
    if call.seeds is not None:  # a seeded record takes one of the task's `keep_records` places in this call
        for i, r in enumerate(call.runs):
            if r.workload in call.seeds.us:
                persist.kept[i].append(call.seeds.us[r.workload] * 1e-6)
    stats = TaskStats([r.features for r in call.runs], call.rule, priors=[r.prior for r in call.runs],
                      on_batch=persist.on_batch)
    try:
        contexts = _tune_contexts(call.runs, target, config, log_file)
        scratch_db = _scratch_database(call)
        # each record with its own kernel: the scratch database's anchor-equal workload may be another
        # variant (e.g. an epilogue the bias add is inlined into) on which this trace does not replay
        persist.workloads = [ms.database.Workload(r.task.mod) for r in call.runs]
        persist.target = target.tvm_target()
        callbacks = list(ms.measure_callback.MeasureCallback.create("default")) + [_monitor(
            stats, persist, budgets, max(budgets),
            None if config.max_seconds is None else call.t_start + config.max_seconds)]
        cost_model, scheduler = _cost_model_and_scheduler(config, target)
        runner = runners.acquire_runner(target, config)
        remote = builders is not None and getattr(builders, "workers", 0) > 0
        builder = (PoolBuilder(builders, tmp_root=scratch) if remote
                   else InProcessBuilder(tmp_root=scratch, workers=config.resolved_build_workers()))
        try:
            with quiet_native_logs(log_file):
                scheduler.tune(tasks=contexts, task_weights=[float(r.features.weight) for r in call.runs],
                               max_trials_global=sum(budgets), max_trials_per_task=max(budgets),
                               num_trials_per_iter=call.batch, builder=builder, runner=runner,
                               measure_callbacks=callbacks, database=scratch_db, cost_model=cost_model)
        except Exception as e:  # noqa: BLE001 - see scheduler_raced
            if not scheduler_raced(e):
                raise
            _record_race_stops(persist, stats)
            call.outcome.scheduler_race = True
        finally:
            runners.release_runner(runner)
            call.outcome.measure = runner.counts() if hasattr(runner, "counts") else None
            call.outcome.builds = {"where": "pool" if remote else "driver", "built": builder.built,
                                   "seconds": round(builder.seconds, 3),
                                   **({"processes": sorted(builder.pids)} if remote else {})}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return stats, persist


def _collect(call: _Call, target: "TargetSpec", stats: TaskStats, persist: _Persist) -> None:
    """Confirm the new bests (``TuneConfig.confirm``) and read each task's outcome back."""
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.tuning.confirm import confirm

    outcome = call.outcome
    tasks = [r.task for r in call.runs]
    if call.config.confirm and persist.trials_run:
        t_conf = time.perf_counter()
        confirm(tasks, target, database_dir=call.database_dir, config=call.config)
        outcome.confirm_seconds = time.perf_counter() - t_conf
    db = dbmod.open_database(call.database_dir)
    for i, t in enumerate(tasks):
        p = stats.progress[i]
        has = db.has_workload(t.mod)
        best = dbmod.best_us(db, t.mod) if has else (p.best_us if math.isfinite(p.best_us) else None)
        seeded = 1 if call.seeds is not None and t.workload in call.seeds.records else 0
        outcome.tasks[t.workload] = TaskOutcome(t.name, p.trials + seeded, p.errors, best, stats.stopped[i])
    outcome.trials_run += persist.trials_run  # after the seeded trials (_seed)
    outcome.records_written += persist.records_written
    outcome.persist_seconds = persist.seconds
    outcome.batch = call.batch
