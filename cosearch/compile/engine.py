"""The compiler as a search loop sees it: one namespace of the calls a search makes.

The joint search calls these hundreds of times per run; none of them writes an artifact
(``write_model_artifact`` does, on request)::

    plan = engine.plan(imported, target)          # tasks with workload key, op kind, shapes, FLOPs, weight
    st = engine.status(plan, db)                  # per workload: in database? best µs, trials spent so far
    pred = engine.predict_latency(plan, db)       # weighted kernel sum from the database, no compilation
    out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=64)
    exe = engine.compile_plan(plan, db)           # tvm executable, database applied

Nothing is defined here: each name lives in the package that owns its concept
(``plan``, ``frontend.models``, ``tuning.*``, ``pipeline``); this module only gathers
them, so a search (or a benchmark script) imports one thing.
"""

from __future__ import annotations

from cosearch.compile.frontend.models import import_arch, load_model, model_kind
from cosearch.compile.pipeline import compile_plan, task_reports, write_model_artifact
from cosearch.compile.plan import (
    LatencyPrediction,
    ModelPlan,
    PlannedTask,
    TaskStatus,
    expected_us,
    kernel_us,
    plan,
    predict_latency,
    status,
    target_key,
    trials_spent,
    workload_key,
)
from cosearch.compile.tuning.allocate import CLOCK_TRIALS_MARGIN, allocate, trials_to_allocate
from cosearch.compile.tuning.confirm import confirm, time_kernels
from cosearch.compile.tuning.logs import quiet_native_logs
from cosearch.compile.tuning.session import TaskOutcome, TuneOutcome, scheduler_raced, tune_tasks
from cosearch.paths import default_schedules_dir

__all__ = [
    "CLOCK_TRIALS_MARGIN", "LatencyPrediction", "ModelPlan", "PlannedTask", "TaskOutcome", "TaskStatus",
    "TuneOutcome", "allocate", "compile_plan", "confirm", "default_schedules_dir", "expected_us", "import_arch",
    "kernel_us", "load_model", "model_kind", "plan", "predict_latency", "quiet_native_logs", "scheduler_raced",
    "status", "target_key", "task_reports", "time_kernels", "trials_spent", "trials_to_allocate", "tune_tasks",
    "workload_key", "write_model_artifact",
]
