"""The task plan of a model: its MetaSchedule tasks, their status in a database, the prior.

``plan(imported, target)`` extracts the tasks (workload key, op kind, shapes, FLOPs,
weight: ``TaskFeatures``); ``status(plan, db)`` says per workload whether the database
holds it, its best µs and the trials spent so far; ``predict_latency(plan, db)`` is the
weighted kernel sum without compiling; ``expected_us`` is the one prior of an untuned
kernel's latency (FLOPs and bytes at fixed rates), used wherever a task has no record.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cosearch.compile.storage import history as hist

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.frontend import ImportedModel
    from cosearch.compile.target import TargetSpec

#: the op kinds the planner gives tasks (``op_kind``), plus "other" for anything unknown;
#: the one list every feature encoding uses (the early-stop model, the search's task predictor)
OP_KINDS = ("conv2d", "depthwise_conv2d", "dense", "pool", "reduce", "elementwise", "layout", "other")


@dataclass(frozen=True)
class TaskFeatures:
    """What is known of a task before tuning it (no TVM objects)."""

    name: str  # MetaSchedule task name, e.g. "fused_conv2d_add_relu"
    workload: str = ""  # database key of the workload (hex), shared across models
    op_kind: str = "other"  # one of OP_KINDS
    shapes: tuple[tuple[int, ...], ...] = ()  # shapes of the kernel's buffers (inputs..., output)
    flops: float = 0.0  # floating-point ops of one call
    weight: int = 1  # calls per inference of the model(s) being tuned
    target: str = ""  # resolved target key (TargetSpec identity)


@dataclass(frozen=True)
class PlannedTask:
    features: TaskFeatures
    tunable: bool  # False: already scheduled by the frontend
    extracted: Any = field(repr=False, compare=False, default=None)  # ms.ExtractedTask

    @property
    def workload(self) -> str:
        return self.features.workload

    @property
    def name(self) -> str:
        return self.features.name

    @property
    def weight(self) -> int:
        return self.features.weight

    @property
    def mod(self):
        return self.extracted.dispatched[0]


@dataclass
class ModelPlan:
    imported: "ImportedModel"
    target: "TargetSpec"
    tasks: list[PlannedTask]
    seconds: float = 0.0

    def workloads(self) -> list[str]:
        return [t.workload for t in self.tasks if t.tunable]

    def to_dict(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "workload": t.workload, "op": t.features.op_kind, "flops": t.features.flops,
             "weight": t.weight, "shapes": [list(s) for s in t.features.shapes], "tunable": t.tunable}
            for t in self.tasks
        ]



def unique_tasks(tasks: Sequence[PlannedTask]) -> tuple[dict[str, PlannedTask], dict[str, int]]:
    """Tunable tasks by workload (the first of each), and each workload's weight summed
    over the tasks that share it (one kernel serving several calls or models)."""
    uniq: dict[str, PlannedTask] = {}
    weights: dict[str, int] = {}
    for t in tasks:
        if t.tunable:
            uniq.setdefault(t.workload, t)
            weights[t.workload] = weights.get(t.workload, 0) + t.weight
    return uniq, weights


_KEY_DB: Any = None


def workload_key(mod: "tvm.IRModule") -> str:
    """The database identity of a task's module (anchor-block structural hash, hex)."""
    global _KEY_DB
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.storage.database import MODULE_EQUALITY

    if _KEY_DB is None:
        _KEY_DB = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
    shash = _KEY_DB.commit_workload(mod).as_json()[0]
    return "%016x" % (int(shash) & (2**64 - 1))

def op_kind(name: str, mod: "tvm.IRModule", shapes: list[tuple[int, ...]]) -> str:
    n = name.lower()
    if "conv" in n:
        # depthwise: weight (C, 1, kh, kw) with C == output channels
        for s in shapes[1:2]:
            if len(s) == 4 and s[1] == 1 and len(shapes[-1]) == 4 and s[0] == shapes[-1][1] and s[0] > 1:
                return "depthwise_conv2d"
        return "conv2d"
    if "matmul" in n or "dense" in n:
        return "dense"
    if "pool" in n:
        return "pool"
    if any(k in n for k in ("mean", "sum", "max", "min", "softmax")):
        return "reduce"
    if any(k in n for k in ("reshape", "transpose", "concat", "split", "layout")):
        return "layout"
    return "elementwise"

def task_features(extracted, target_key: str) -> TaskFeatures:
    import tvm.s_tir.analysis as tir_analysis
    from tvm.s_tir import meta_schedule as ms

    mod = extracted.dispatched[0]
    try:
        shapes = [tuple(int(x) for x in a.shape) for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]
    except Exception:  # noqa: BLE001 - features are best effort, never fatal
        shapes = []
    try:
        flops = float(tir_analysis.estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001
        flops = 0.0
    return TaskFeatures(
        name=str(extracted.task_name), workload=workload_key(mod), op_kind=op_kind(str(extracted.task_name), mod, shapes),
        shapes=tuple(shapes), flops=flops, weight=int(extracted.weight), target=target_key,
    )

def target_key(target: "TargetSpec") -> str:
    """The key tasks are recorded under: the target's machine key, or its name where the
    identity cannot be resolved here."""
    try:
        return str(target.machine_key())
    except Exception:  # noqa: BLE001 - an identity TVM cannot describe on this machine
        return target.name


def plan(imported: "ImportedModel", target: "TargetSpec") -> ModelPlan:
    """The model's MetaSchedule tasks with their features (no database access)."""
    from cosearch.compile.frontend import extract_tasks

    t0 = time.perf_counter()
    key = target_key(target)
    tasks = []
    for t in extract_tasks(imported, target):
        fixed = bool(t.mod.attrs and t.mod.attrs.get("tirx.is_scheduled", False))
        tasks.append(PlannedTask(task_features(t, key), not fixed, t))
    return ModelPlan(imported, target, tasks, time.perf_counter() - t0)


@dataclass(frozen=True)
class TaskStatus:
    in_db: bool
    best_us: float | None  # the best record's tuning-time mean (what the search compares)
    trials_spent: int
    confirmed_us: float | None = None  # that record timed again on its own (``confirm``), if it was

    @property
    def latency_us(self) -> float | None:
        """The kernel's latency for predictions: confirmed when available, else the tuning-time best."""
        return self.confirmed_us if self.confirmed_us is not None else self.best_us


_HISTORY_CACHE: dict[str, tuple[int, dict[str, hist.WorkloadHistory]]] = {}


def trials_spent(database_dir: Path | str) -> dict[str, hist.WorkloadHistory]:
    """Per-workload history of a database (cached until the file grows)."""
    p = Path(database_dir) / hist.HISTORY_FILE
    size = p.stat().st_size if p.exists() else 0
    key = str(Path(database_dir).resolve())
    hit = _HISTORY_CACHE.get(key)
    if hit is None or hit[0] != size:
        hit = (size, hist.summarize(database_dir))
        _HISTORY_CACHE[key] = hit
    return hit[1]


def status(plan_: ModelPlan, database_dir: Path | str) -> dict[str, TaskStatus]:
    from cosearch.compile.storage import database as dbmod

    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    out = {}
    for t in plan_.tasks:
        if not t.tunable or t.workload in out:
            continue
        has = db.has_workload(t.mod)
        best = dbmod.best_us(db, t.mod) if has else None
        wh = h.get(t.workload)
        conf = wh.confirmed.get(hist.num(best)) if wh is not None and best is not None else None
        out[t.workload] = TaskStatus(has, best, wh.trials if wh is not None else 0, conf)
    return out


@dataclass(frozen=True)
class LatencyPrediction:
    ms: float  # weighted kernel sum, missing tasks estimated when an estimator was given
    known_ms: float  # the part from tasks the database holds
    per_task_us: dict[str, float | None]  # per call
    missing: list[str]  # workloads without a database record


def predict_latency(plan_: ModelPlan, database_dir: Path | str, *,
                    untuned_us: Callable[[TaskFeatures], float] | None = None) -> LatencyPrediction:
    """Weighted sum of the tasks' best kernel latencies in the database (no compile)."""
    st = status(plan_, database_dir)
    known = total = 0.0
    per: dict[str, float | None] = {}
    missing: list[str] = []
    for t in plan_.tasks:
        if not t.tunable:
            continue
        s = st[t.workload]
        us = s.latency_us
        if us is not None:
            known += t.weight * us
            total += t.weight * us
        else:
            if t.workload not in missing:
                missing.append(t.workload)
            if untuned_us is not None:
                us = float(untuned_us(t.features))
                total += t.weight * us
        per[t.workload] = us
    return LatencyPrediction(total / 1000.0, known / 1000.0, per, missing)


#: what a kernel without a measurement is assumed to reach, for sharing trials: 10 GFLOP/s
#: and 2 GB/s (after a first batch of 4, 224x224 convs ran at 1-10 GFLOP/s and SqueezeNet's
#: pools / layout transforms, FLOP-free, at 7-13 ms per call under load: bench/results/gap*.json)
EXPECTED_GFLOPS = 10.0
EXPECTED_GBPS = 2.0


def expected_us(flops: float, shapes: Sequence[Sequence[int]] = (), itemsize: int = 4) -> float:
    """A new kernel's expected µs: its FLOPs or its bytes moved (every buffer once), whichever
    takes longer at the rates above; at least 1 µs."""
    nbytes = float(sum(math.prod(int(d) for d in s) for s in shapes)) * itemsize
    return max(1.0, float(flops) / (EXPECTED_GFLOPS * 1e3), nbytes / (EXPECTED_GBPS * 1e3))



def kernel_us(task: PlannedTask, st: TaskStatus) -> float:
    """A task's kernel µs per call: its best record, or ``expected_us`` while it has none."""
    return st.best_us if st.best_us is not None else expected_us(task.features.flops, task.features.shapes)
