"""The tune pipeline: plan -> tune -> compile -> artifact, composed from the concept packages.

``tune_and_compile(imported, target, database_dir=..., config=...)`` is ``plan.plan`` ->
``tuning.session.tune_tasks`` (kill-safe: records reach the shared database after every
batch; tasks already in the database are tuned further, warm-started, where trials help
most) -> ``compile_plan``. The ``tune`` verb calls it; the search calls the parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cosearch.compile.plan import ModelPlan, plan, status
from cosearch.errors import CosearchError, first_line

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.frontend import ImportedModel
    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.tuning.session import TuneOutcome
    from cosearch.compile.tuning.stop import EarlyStopRule


@dataclass(frozen=True)
class TaskReport:
    """One task of a compiled model, for artifacts and summaries (``task_reports``)."""

    name: str
    source: str  # "db" | "tuned" | "transfer" | "fallback" | "untuned"
    trials: int
    best_us: float | None
    error_count: int = 0
    weight: int = 1  # how many times the model calls this kernel
    serial: bool = False  # compiled without a parallel loop (``codegen.serial``: a small kernel)


@dataclass
class CompileResult:
    """What ``tune_and_compile`` returns: the executable and how each task was scheduled."""

    executable: "tvm.runtime.Executable"  # the tvm.compile result (Relax VM executable)
    tasks: list[TaskReport]
    seconds: dict[str, float] = field(default_factory=dict)  # extract, tune, merge, compile
    trials_run: int = 0
    records_written: int = 0
    trials_per_iter: int | None = None  # batch actually used (TuneConfig.batch_for); None: nothing tuned
    search: dict[str, Any] | None = None  # the search settings used (TuneConfig.for_tasks); None: nothing tuned


def compile_plan(plan_: ModelPlan, database_dir: Path | str, *, report: list | None = None,
                 serial_below_us: float | None = None):
    """``tvm.compile`` of the plan's model with the database applied. Records that do not
    replay on a kernel are skipped (warning); kernels without a usable record get the
    seeded fallback schedule on CPU (``cosearch.compile.codegen.fallback``). ``report``, when
    given, receives one ``KernelChoice`` per kernel (source db / fallback / default).
    ``serial_below_us``: ``codegen.serial``'s threshold (default ``SERIAL_BELOW_US``)."""
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.storage import database as dbmod

    db = dbmod.open_database(database_dir)
    try:
        kw = {} if serial_below_us is None else {"serial_below_us": serial_below_us}
        return compile_with_database(plan_.imported.mod, plan_.target, db, report=report, **kw)
    except CosearchError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM errors: one line
        raise CosearchError(f"compiling for target {plan_.target.name!r} failed: {first_line(e)}") from e


def task_reports(plan_: ModelPlan, database_dir: Path | str, outcome: "TuneOutcome | None" = None,
                 choices: Sequence[Any] | None = None):
    """``TaskReport`` per task for artifacts and summaries. ``source``: ``tuned`` (this run),
    ``db`` (a record from earlier runs), ``transfer`` (no usable record: the schedule of the
    nearest tuned kernel of the same structure, ``codegen.transfer``), ``fallback`` (no usable
    record: the seeded fallback schedule), ``untuned`` (TVM's default schedule). ``choices`` are the
    ``KernelChoice``s of the compile: a task whose records did not replay is not "db"."""
    st = status(plan_, database_dir)
    by_name = {c.name: c for c in (choices or [])}
    out = []
    for t in plan_.tasks:
        c = by_name.get(t.name)
        if not t.tunable:
            out.append(TaskReport(t.name, "untuned", 0, None, 0, t.weight))
            continue
        s = st[t.workload]
        o = outcome.tasks.get(t.workload) if outcome is not None else None
        ran = o is not None and o.trials > 0
        source = ("tuned" if ran else "db") if s.in_db else "untuned"
        if c is not None and c.source != "db":
            source = c.source if c.source in ("transfer", "fallback") else "untuned"
        out.append(TaskReport(t.name, source, o.trials if ran else 0, s.best_us, o.errors if ran else 0, t.weight,
                              bool(c is not None and c.serial)))
    return out


def write_model_artifact(out_dir: Path | str, plan_: ModelPlan, executable, database_dir: Path | str, *,
                         latency=None, latency_note: str | None = None, config: dict[str, Any],
                         tuning: dict[str, Any] | None = None, outcome: "TuneOutcome | None" = None,
                         choices: Sequence[Any] | None = None, extra_meta: dict[str, Any] | None = None) -> Path:
    from cosearch.compile.deploy.artifact import write_artifact

    return write_artifact(out_dir, executable=executable, target=plan_.target, imported=plan_.imported,
                          tasks=task_reports(plan_, database_dir, outcome, choices), latency=latency,
                          latency_note=latency_note, config=config, tuning=tuning, extra_meta=extra_meta)


def tune_and_compile(
    imported: "ImportedModel",
    target: "TargetSpec",
    *,
    database_dir: Path,
    config: "TuneConfig",
    early_stop: "EarlyStopRule | None" = None,
    progress=None,
    log_dir: Path | None = None,
) -> CompileResult:
    """Plan, tune ``config.trials`` trials where they help most (new tasks first, then
    tasks whose kernels still cost the most per trial spent), compile with the database.
    Records are kill-safe per batch."""
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.tuning.session import tune_tasks

    if not isinstance(config, TuneConfig):
        raise CosearchError(f"config must be a TuneConfig, got {type(config).__name__}")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    plan_ = plan(imported, target)
    seconds["extract"] = time.perf_counter() - t0
    outcome = None
    if target.measure != "none":
        t1 = time.perf_counter()
        outcome = tune_tasks(plan_.tasks, target, database_dir=database_dir, trials=config.trials, config=config,
                             early_stop=early_stop, progress=progress, log_dir=log_dir)
        if outcome.trials_run:
            seconds["tune"] = time.perf_counter() - t1
        if outcome.confirm_seconds:
            seconds["confirm"] = outcome.confirm_seconds  # part of "tune"
    t3 = time.perf_counter()
    choices: list = []
    executable = compile_plan(plan_, database_dir, report=choices)
    seconds["compile"] = time.perf_counter() - t3
    return CompileResult(
        executable=executable,
        tasks=task_reports(plan_, database_dir, outcome, choices),
        seconds=seconds,
        trials_run=outcome.trials_run if outcome else 0,
        records_written=outcome.records_written if outcome else 0,
        trials_per_iter=outcome.batch if outcome and outcome.trials_run else None,
        search=outcome.search if outcome and outcome.trials_run else None,
    )


# --------------------------------------------------------------------------- the tune job (``cosearch tune``)
def check_schedules_dir(p: Path) -> Path:
    """A schedule database folder that is (or can be made) a writable directory."""
    from cosearch.fsio import creatable

    if p.exists() and not p.is_dir():
        raise CosearchError(f"--schedules {str(p)!r} is a file; expected a directory (created if missing)")
    ok, probe = creatable(p)
    if not ok:
        raise CosearchError(f"--schedules {str(p)!r}: {str(probe)!r} is not writable")
    return p


@dataclass
class TuneJob:
    """A validated tuning job: every input checked and loaded, nothing written yet."""

    target: "TargetSpec"
    imported: "ImportedModel"
    model: dict[str, Any]  # how the model was named and imported (for the run config)
    out: Path
    schedules: Path
    tune: "TuneConfig"
    rule: "EarlyStopRule | None"
    measure: Any  # MeasureConfig
    seed: int

    def config(self) -> dict[str, Any]:
        """The resolved config written into the artifact."""
        import dataclasses

        patience = self.tune.patience
        return {
            "command": "tune", "model": self.model, "target": self.target.to_dict(), "out": str(self.out.absolute()),
            "schedules": str(self.schedules.absolute()), "seed": self.seed,
            "early_stop": (self.rule.config() if self.rule is not None
                           else {"kind": "stall", "patience": patience} if patience is not None else {"kind": "never"}),
            "tune": dataclasses.asdict(self.tune), "measure": dataclasses.asdict(self.measure),
        }


def prepare_tune(model: str, target_name: str, out: str, *, tune: "TuneConfig", repeat: int, seed: int,
                 early_stop: str | None = None, schedules: str | None = None, accept_foreign: bool = False,
                 layout: str | None = None) -> TuneJob:
    """Validate and load everything a tuning job needs, cheapest checks first (one-line
    ``CosearchError`` for bad input, nothing written): rule kind, model, target, output
    folder, schedule database (bound to the target's identity), RPC tracker, the import."""
    from cosearch.compile.deploy.artifact import check_out_dir
    from cosearch.compile.deploy.measure import MeasureConfig
    from cosearch.compile.frontend.models import load_model, model_kind
    from cosearch.compile.target import load_target
    from cosearch.compile.target.binding import bind_database
    from cosearch.compile.tuning import stop
    from cosearch.paths import default_schedules_dir

    if early_stop is not None:
        stop.RULES.get(early_stop)  # unknown kind -> one line naming the valid ones
    model_kind(model)
    target = load_target(target_name)
    out_dir = check_out_dir(out)
    db = check_schedules_dir(Path(schedules) if schedules else default_schedules_dir(target))
    if target.measure == "rpc":
        from cosearch.compile.deploy.rpc import check_key

        check_key(target.rpc)  # bounded: unreachable tracker / unknown key -> CosearchError
    imported, model_desc = load_model(model, seed=seed, layout=layout)  # malformed ONNX -> CosearchError
    bind_database(db, target, accept_foreign=accept_foreign)  # foreign CPU -> refused
    rule = stop.load_rule(early_stop, db, patience=tune.patience) if early_stop is not None else None
    return TuneJob(target, imported, model_desc, out_dir, db, tune, rule, MeasureConfig(repeat=repeat, seed=seed), seed)


@dataclass
class TuneJobResult:
    result: CompileResult
    latency: Any  # deploy.measure.Latency, or None
    note: str | None  # why there is no latency
    measure_error: str | None
    tune_seconds: float


def run_tune(job: TuneJob, *, progress=None, log_dir: Path | None = None) -> TuneJobResult:
    """Tune and compile, measure end to end (if the target measures), write the artifact;
    with the ``xgb`` rule, refit its model on every history so far for the next run."""
    from cosearch.compile.deploy.artifact import write_artifact
    from cosearch.compile.deploy.measure import measure

    t0 = time.perf_counter()
    result = tune_and_compile(job.imported, job.target, database_dir=job.schedules, config=job.tune,
                              early_stop=job.rule, progress=progress, log_dir=log_dir)
    t_tune = time.perf_counter() - t0
    latency, note, measure_error = None, None, None
    t0 = time.perf_counter()
    if job.target.measure == "none":
        note = f"target {job.target.name!r} is compile-only (measure: none)"
    else:
        res = measure(result.executable, job.target, job.imported.inputs, config=job.measure)
        if res.ok:
            latency = res.latency
        else:
            measure_error = res.error
            note = f"measurement failed ({res.where}): {res.error}"
    t_measure = time.perf_counter() - t0
    seconds = {**{f"tune.{k}": round(v, 3) for k, v in (result.seconds or {}).items()},
               "tune_and_compile": round(t_tune, 3), "measure": round(t_measure, 3)}
    write_artifact(job.out, executable=result.executable, target=job.target, imported=job.imported,
                   tasks=result.tasks, latency=latency, latency_note=note, config=job.config(),
                   tuning={"trials_run": result.trials_run, "trials_per_iter": result.trials_per_iter,
                           "search": result.search, "seconds": seconds})
    if job.rule is not None and job.rule.kind == "xgb":  # the next run starts from a model of every history so far
        from cosearch.compile.tuning.stop.xgb import refit_and_save

        refit_and_save(job.schedules)
    return TuneJobResult(result, latency, note, measure_error, t_tune)
