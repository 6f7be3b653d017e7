"""The compiler half as an engine for a search loop: plan, predict, tune, compile.

The joint search calls these hundreds of times per run; none of them writes an
artifact (``write_model_artifact`` does, on request)::

    plan = engine.plan(imported, target)          # tasks with workload key, op kind, shapes, FLOPs, weight
    st = engine.status(plan, db)                  # per workload: in database? best µs, trials spent so far
    pred = engine.predict_latency(plan, db)       # weighted kernel sum from the database, no compilation
    out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=64)
    exe = engine.compile_plan(plan, db)           # tvm executable, database applied

**Kill-safe, incremental tuning** (``tune_tasks``). Each measured batch's records
reach the shared database as the batch finishes (a ``PyMeasureCallback`` after
MetaSchedule's own callbacks appends them under the database lock, fsynced), and
the batch is logged to the per-task history ``<db>/tasks.jsonl``
(``cosearch.compile.history``): a kill -9 loses at most the batches in flight.
The default round-robin scheduler joins (and so persists) each batch as soon as
it is measured; MetaSchedule's gradient scheduler (``TuneConfig(task_scheduler=
"gradient")``) first sends one batch of *every* task and joins them together, so
with it a kill during that first round loses the whole round (NB201 net, 22
tasks: first batch persisted after 38 s vs 8 s with round-robin, same wall time;
bench/results/engine_cost_gradient.json has kills measured with the gradient scheduler).
Where trials go is decided here (``allocate`` budgets), not by the scheduler.
A workload already in the database can be tuned further: its best records seed the search's database, so MetaSchedule's evolutionary search starts
from them, and the trials it already had are counted from the history file.

**Where the trials go** (``allocate``): first one batch to every task the
database lacks (an untuned task runs a seeded, unmeasured fallback schedule at
best: ``cosearch.compile.fallback``); the rest in
proportion to ``weight x best µs / sqrt(1 + trials spent)`` (a task without a
measurement: µs expected from its FLOPs and bytes, ``expected_us``, so a 224x224 conv
outranks a small pool; ``TuneConfig.first_round`` < 1 leaves part of the budget to this
second stage), an estimate of the
time each task still costs the model per trial spent on it, capped per task
(``TuneConfig.trials_per_task``). The rule (``EarlyStopRule``) may skip a task
before its first batch and stop it after any batch.

**Logging.** MetaSchedule's per-task loggers are created here (never through
``create_loggers``, which crashes under pytest 9.2's logging plugin): everything
goes to ``<log_dir>/tune.log`` (or nowhere), and TVM's C++ warnings printed on
fd 2 during tuning are redirected into the same file (``quiet_native_logs``).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from cosearch.compile import history as hist
from cosearch.compile.early_stop import EarlyStopRule, TaskFeatures, TaskProgress, TaskStats
from cosearch.errors import CosearchError

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.frontend import ImportedModel
    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tune import TuneConfig

LOGGER_NAME = "cosearch.tvm"


# --------------------------------------------------------------------------- plan
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


_KEY_DB: Any = None


def workload_key(mod: "tvm.IRModule") -> str:
    """The database identity of a task's module (anchor-block structural hash, hex)."""
    global _KEY_DB
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.database import MODULE_EQUALITY

    if _KEY_DB is None:
        _KEY_DB = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
    shash = _KEY_DB.commit_workload(mod).as_json()[0]
    return "%016x" % (int(shash) & (2**64 - 1))


def _op_kind(name: str, mod: "tvm.IRModule", shapes: list[tuple[int, ...]]) -> str:
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
        name=str(extracted.task_name), workload=workload_key(mod), op_kind=_op_kind(str(extracted.task_name), mod, shapes),
        shapes=tuple(shapes), flops=flops, weight=int(extracted.weight), target=target_key,
    )


def _target_key(target: "TargetSpec") -> str:
    f = getattr(target, "machine_key", None)
    try:
        return str(f()) if callable(f) else target.name
    except Exception:  # noqa: BLE001
        return target.name


def plan(imported: "ImportedModel", target: "TargetSpec") -> ModelPlan:
    """The model's MetaSchedule tasks with their features (no database access)."""
    from cosearch.compile.frontend import extract_tasks

    t0 = time.perf_counter()
    key = _target_key(target)
    tasks = []
    for t in extract_tasks(imported, target):
        fixed = bool(t.mod.attrs and t.mod.attrs.get("tirx.is_scheduled", False))
        tasks.append(PlannedTask(task_features(t, key), not fixed, t))
    return ModelPlan(imported, target, tasks, time.perf_counter() - t0)


def import_arch(space, arch: str, *, seed: int | None = 0, layout: str | None = None) -> "ImportedModel":
    """Build ``arch`` of ``space`` (seeded weights) and import it (conv ``layout``: see
    ``cosearch.compile.layout``; None: the default)."""
    import torch

    from cosearch.compile.frontend import from_torch

    if seed is not None:
        torch.manual_seed(seed)
    module = space.build(arch, seed=seed).eval()
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    example = torch.randn(tuple(space.input_shape(arch)), generator=gen)
    return from_torch(module, (example,), layout=layout)


def model_kind(text: str) -> str:
    """'onnx' or 'space' for a MODEL argument; a missing .onnx file is an error here (before any work)."""
    p = Path(text)
    if text.lower().endswith(".onnx") or p.exists():
        if not p.exists():
            raise CosearchError(f"model file {text!r} does not exist; MODEL is an .onnx file or SPACE:ARCH")
        if not p.is_file():
            raise CosearchError(f"model {text!r} is a directory; MODEL is an .onnx file or SPACE:ARCH")
        try:
            with open(p, "rb") as f:
                f.read(1)
        except OSError as e:
            raise CosearchError(f"model file {text!r} cannot be read: {e.strerror or e}") from None
        return "onnx"
    if ":" in text:
        return "space"
    raise CosearchError(f"MODEL {text!r} is neither an existing .onnx file nor SPACE:ARCH")


def load_model(text: str, *, seed: int | None = 0, layout: str | None = None) -> tuple["ImportedModel", dict[str, Any]]:
    """MODEL (an .onnx path or SPACE:ARCH) -> (ImportedModel, description for the run config).
    ``layout``: the conv data layout at import (``cosearch.compile.layout``; None: the default)."""
    from cosearch.compile.frontend import from_onnx

    if model_kind(text) == "onnx":
        imported = from_onnx(text, layout=layout)
        # layout: the conv data layout in effect ("auto" resolved), part of every workload key
        return imported, {"kind": "onnx", "path": str(Path(text).resolve()), "layout": imported.layout}
    from cosearch.space import parse_model_spec

    space, arch = parse_model_spec(text)
    shape = tuple(space.input_shape(arch))
    imported = import_arch(space, arch, seed=seed, layout=layout)
    return imported, {"kind": "space", "spec": text, "space": space.config(), "arch": arch,
                      "input_shape": list(shape), "layout": imported.layout}


# --------------------------------------------------------------------------- status / predict
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
    from cosearch.compile import database as dbmod

    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    out = {}
    for t in plan_.tasks:
        if not t.tunable or t.workload in out:
            continue
        has = db.has_workload(t.mod)
        best = dbmod.best_us(db, t.mod) if has else None
        wh = h.get(t.workload)
        conf = wh.confirmed.get(hist._num(best)) if wh is not None and best is not None else None
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


# --------------------------------------------------------------------------- logging
def _task_loggers(names: Sequence[str], log_file: Path | None) -> list[logging.Logger]:
    """One logger per task under ``cosearch.tvm`` (file handler or silent), and
    MetaSchedule's own module loggers routed the same way."""
    root = logging.getLogger(LOGGER_NAME)
    root.propagate = False
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(fh)
    else:
        root.addHandler(logging.NullHandler())
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_logger.propagate = False
    for h in list(ms_logger.handlers):
        ms_logger.removeHandler(h)
    for h in root.handlers:
        ms_logger.addHandler(h)
    ms_logger.setLevel(logging.INFO if log_file is not None else logging.WARNING)
    out = []
    for i, n in enumerate(names):
        lg = logging.getLogger(f"{LOGGER_NAME}.task_{i:03d}_{n[:80]}")
        lg.setLevel(logging.INFO)
        out.append(lg)
    return out


@contextlib.contextmanager
def quiet_native_logs(log_file: Path | None) -> Iterator[Any]:
    """Send what TVM's C++ side prints on fd 2 to ``log_file`` (or /dev/null) for the
    duration; yields a text stream on the original stderr for progress output."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured stderr without a file descriptor
        yield sys.stderr
        return
    import warnings

    sys.stderr.flush()
    saved = os.dup(fd)
    target = os.open(str(log_file) if log_file is not None else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    old_showwarning = warnings.showwarning
    try:
        os.dup2(target, fd)
        logging.captureWarnings(False)
        yield console
    finally:
        warnings.showwarning = old_showwarning
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(target)
        console.close()


# --------------------------------------------------------------------------- allocation
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


#: under a clock (``TuneConfig.max_seconds``) trials are allocated up to this many times what the
#: clock is expected to allow (``tune.TRIALS_PER_S``), not up to ``trials`` (10**6 with
#: ``TuneConfig.long``): allocating 10**6 trials one batch at a time took 34 s (SqueezeNet, batches
#: of 4) and 60 s (ShuffleNet, batches of 3) of 2-minute clocks (bench/results/allocate_clock.json;
#: found: 2 trials ran in 40 s on the NB201 net), and 1.0 trial/s was measured on 2 cores
CLOCK_TRIALS_MARGIN = 20


def kernel_us(task: PlannedTask, st: TaskStatus) -> float:
    """A task's kernel µs per call: its best record, or ``expected_us`` while it has none."""
    return st.best_us if st.best_us is not None else expected_us(task.features.flops, task.features.shapes)


def trials_to_allocate(config: "TuneConfig", trials: int, n_tasks: int, batch: int) -> int:
    """``trials``, or under a clock at most ``CLOCK_TRIALS_MARGIN`` x what it is expected to allow
    (never less than one batch per task)."""
    if config.max_seconds is None:
        return trials
    from cosearch.compile.tune import TRIALS_PER_S

    return min(trials, max(batch * n_tasks, int(config.max_seconds * TRIALS_PER_S * CLOCK_TRIALS_MARGIN)))


def allocate(tasks: Sequence[PlannedTask], st: dict[str, TaskStatus], trials: int, batch: int,
             per_task_cap: int | None = None) -> dict[str, int]:
    """Per-workload trial budgets summing to at most ``trials`` (see module docstring)."""
    budgets: dict[str, int] = {}
    uniq: dict[str, PlannedTask] = {}
    weight: dict[str, int] = {}
    for t in tasks:
        if t.tunable:
            uniq.setdefault(t.workload, t)
            weight[t.workload] = weight.get(t.workload, 0) + t.weight
    if not uniq or trials <= 0:
        return {}
    cap = per_task_cap if per_task_cap is not None else trials
    left = trials
    new = [w for w in uniq if not st[w].in_db]
    for w in sorted(new, key=lambda w: -weight[w] * uniq[w].features.flops):
        give = min(batch, cap, left)
        if give <= 0:
            break
        budgets[w] = give
        left -= give

    def score(w: str) -> float:
        spent = st[w].trials_spent + budgets.get(w, 0)
        return weight[w] * kernel_us(uniq[w], st[w]) / math.sqrt(1 + spent)

    # greedy, one batch at a time to the highest score (ties: the larger workload key); a heap, as a
    # clock-bounded tuning allocates up to ``trials`` = 10**6 (a linear scan per batch took 40 s there)
    rank = {w: i for i, w in enumerate(sorted(uniq))}
    heap = [(-score(w), -rank[w], w) for w in uniq if budgets.get(w, 0) < cap]
    heapq.heapify(heap)
    while left > 0 and heap:
        _, _, w = heapq.heappop(heap)
        give = min(batch, cap - budgets.get(w, 0), left)
        budgets[w] = budgets.get(w, 0) + give
        left -= give
        if budgets[w] < cap:
            heapq.heappush(heap, (-score(w), -rank[w], w))
    return budgets


# --------------------------------------------------------------------------- tuning
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
        from cosearch.compile import database as dbmod

        records, batch_best = [], math.inf
        valid = []
        for _, cand, rr in self.pending:
            secs = dbmod._valid_secs(rr.run_secs) if rr.error_msg is None else None
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
            batch_best_us=hist._num(batch_best), best_us=hist._num(best),
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
                        best_us=hist._num(stats.progress[i].best_us))])
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
                        best_us=hist._num(stats.progress[j].best_us)) for j in left])
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
        best_us=hist._num(stats.progress[j].best_us)) for j, t in enumerate(persist.tasks) if j not in persist.done])


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
) -> TuneOutcome:
    """Tune ``tasks`` (deduplicated by workload) with at most ``trials`` trials.

    ``budgets`` caps trials per workload (default: ``allocate``). Records and
    history reach ``database_dir`` after every batch. Returns per-workload outcomes."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile import database as dbmod
    from cosearch.compile.builder import InProcessBuilder
    from cosearch.compile.database import MODULE_EQUALITY
    from cosearch.compile.early_stop import Stall
    from cosearch.compile.intrin import ensure_tensor_intrinsics
    from cosearch.compile.tune import TuneConfig, _check_rpc_reachable, acquire_runner, release_runner

    config = config or TuneConfig(trials=max(1, trials))
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
        raise CosearchError(f"trials must be a non-negative integer, got {trials!r}")
    database_dir = Path(database_dir)
    t_start = time.perf_counter()
    run = secrets.token_hex(6)
    rule = early_stop
    if rule is None and config.patience is not None:
        rule = Stall(patience=config.patience, min_gain=config.min_gain)

    uniq: dict[str, PlannedTask] = {}
    weights: dict[str, int] = {}
    for t in tasks:
        if t.tunable:
            if t.workload not in uniq:
                uniq[t.workload] = t
            weights[t.workload] = weights.get(t.workload, 0) + t.weight
    st = {}
    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    for w, t in uniq.items():
        has = db.has_workload(t.mod)
        st[w] = TaskStatus(has, dbmod.best_us(db, t.mod) if has else None, h[w].trials if w in h else 0)
    outcome = TuneOutcome(0, 0.0, {}, None, 0, run)
    if not uniq or trials == 0 or target.measure == "none":
        for w, t in uniq.items():
            outcome.tasks[w] = TaskOutcome(t.name, 0, 0, st[w].best_us, False)
        return outcome
    if target.measure == "local":
        ok, why = target.runs_here()
        if not ok:
            raise CosearchError(f"target {target.name!r} is measured locally but cannot run here: {why}; "
                                f"use a target with measure 'rpc' or 'none'")
    else:
        _check_rpc_reachable(target)

    new_count = sum(1 for w in uniq if not st[w].in_db)
    batch = config.batch_for(max(1, new_count)) if new_count else min(config.trials_per_iter, config.trials_per_task or 10**9)
    batch = max(1, min(batch, trials))
    if budgets is None:
        budgets = allocate(list(uniq.values()), st, trials_to_allocate(config, trials, len(uniq), batch), batch,
                           config.trials_per_task)
    chosen = [w for w in uniq if budgets.get(w, 0) > 0]

    feats = [TaskFeatures(**{**uniq[w].features.__dict__, "weight": weights[w]}) for w in chosen]
    priors = [TaskProgress(prior_trials=st[w].trials_spent, prior_best_us=st[w].best_us, batch_size=batch) for w in chosen]
    stats = TaskStats(feats, rule, priors=priors)
    selected = []
    skipped_events = []
    for i, w in enumerate(chosen):
        if stats.should_skip(i):
            outcome.tasks[w] = TaskOutcome(uniq[w].name, 0, 0, st[w].best_us, True, True)
            skipped_events.append(hist.event("stop", w, run=run, rule=rule.config() if rule else None,
                                             before_first_batch=True, trials=0, best_us=hist._num(st[w].best_us)))
        else:
            selected.append(w)
    hist.append(database_dir, skipped_events + [
        hist.event("task", w, name=uniq[w].name, op=uniq[w].features.op_kind,
                   shapes=[list(s) for s in uniq[w].features.shapes], flops=uniq[w].features.flops,
                   weight=weights[w], target=uniq[w].features.target)
        for w in selected if w not in h])
    for w in uniq:
        if w not in chosen:
            outcome.tasks[w] = TaskOutcome(uniq[w].name, 0, 0, st[w].best_us, False)
    if not selected:
        outcome.seconds = time.perf_counter() - t_start
        return outcome

    config = config.for_tasks(len(selected))  # a clock too short per task: the cheap search
    outcome.search = {"population": config.population, "genetic_iters": config.genetic_iters,
                      "cost_model": config.cost_model, "wide_min_us": config.wide_min_us}
    sel_tasks = [uniq[w] for w in selected]
    sel_feats = [feats[chosen.index(w)] for w in selected]
    sel_priors = [priors[chosen.index(w)] for w in selected]
    sel_budgets = [budgets[w] for w in selected]
    total = sum(sel_budgets)
    log_file = Path(log_dir) / "tune.log" if log_dir is not None else None
    ensure_tensor_intrinsics(target.tvm_target())
    scratch = tempfile.mkdtemp(prefix="cosearch-tune-")
    persist = _Persist(database_dir, sel_tasks, config.keep_records, run, sel_priors, progress, total)
    stats = TaskStats(sel_feats, rule, priors=sel_priors, on_batch=persist.on_batch)
    try:
        # per task (population, genetic iterations) by what its kernel costs the model: TuneConfig.search_for
        searches: dict[tuple[int, int], Any] = {}
        strategies = []
        for w in selected:
            pop, gi = config.search_for(weights[w] * kernel_us(uniq[w], st[w]))
            if (pop, gi) not in searches:
                searches[(pop, gi)] = ms.search_strategy.EvolutionarySearch(
                    population_size=pop, genetic_num_iters=gi, init_min_unmeasured=min(config.init_min_unmeasured, pop))
            strategies.append(searches[(pop, gi)])
        loggers = _task_loggers([t.name for t in sel_tasks], log_file)
        from tvm.s_tir.meta_schedule.utils import fork_seed

        tgt = target.tvm_target()
        contexts = [
            ms.TuneContext(mod=t.mod, target=t.extracted.target, space_generator="post-order-apply",
                           search_strategy=strat, task_name=t.name, logger=lg, rand_state=rs,
                           num_threads=target.num_cores).clone()
            for t, strat, lg, rs in zip(sel_tasks, strategies, loggers, fork_seed(config.seed, n=len(sel_tasks)))
        ]
        # the search's own database: this run's records + the shared best ones (warm start)
        scratch_db = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
        for t in sel_tasks:
            if db.has_workload(t.mod):
                dbmod.add_records(scratch_db, db.get_top_k(db.commit_workload(t.mod), config.keep_records or 8))
        # each record with its own kernel: the scratch database's anchor-equal workload may be another
        # variant (e.g. an epilogue the bias add is inlined into) on which this trace does not replay
        persist.workloads = [ms.database.Workload(t.mod) for t in sel_tasks]
        persist.target = tgt
        callbacks = list(ms.measure_callback.MeasureCallback.create("default")) + [_monitor(
            stats, persist, sel_budgets, max(sel_budgets),
            None if config.max_seconds is None else t_start + config.max_seconds)]
        if config.cost_model == "xgb":
            cost_model = ms.cost_model.XGBModel(num_tuning_cores=target.num_cores)
        else:
            cost_model = ms.cost_model.RandomModel(seed=config.seed)
        if config.task_scheduler == "gradient":
            scheduler = ms.task_scheduler.GradientBased(seed=-1 if config.seed is None else config.seed)
        else:
            scheduler = ms.task_scheduler.RoundRobin()
        runner = acquire_runner(target, config)
        builder = InProcessBuilder(tmp_root=scratch, workers=config.resolved_build_workers())
        try:
            with quiet_native_logs(log_file):
                scheduler.tune(
                    tasks=contexts,
                    task_weights=[float(f.weight) for f in sel_feats],
                    max_trials_global=total,
                    max_trials_per_task=max(sel_budgets),
                    num_trials_per_iter=batch,
                    builder=builder,
                    runner=runner,
                    measure_callbacks=callbacks,
                    database=scratch_db,
                    cost_model=cost_model,
                )
        except Exception as e:  # noqa: BLE001 - see scheduler_raced
            if not scheduler_raced(e):
                raise
            _record_race_stops(persist, stats)
            outcome.scheduler_race = True
        finally:
            release_runner(runner)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if config.confirm and persist.trials_run:
        t_conf = time.perf_counter()
        confirm(sel_tasks, target, database_dir=database_dir, config=config)
        outcome.confirm_seconds = time.perf_counter() - t_conf
    db = dbmod.open_database(database_dir)
    for i, (w, t) in enumerate(zip(selected, sel_tasks)):
        p = stats.progress[i]
        has = db.has_workload(t.mod)
        best = dbmod.best_us(db, t.mod) if has else (p.best_us if math.isfinite(p.best_us) else None)
        outcome.tasks[w] = TaskOutcome(t.name, p.trials, p.errors, best, stats.stopped[i])
    outcome.trials_run = persist.trials_run
    outcome.records_written = persist.records_written
    outcome.persist_seconds = persist.seconds
    outcome.batch = batch
    outcome.seconds = time.perf_counter() - t_start
    return outcome


def confirm(tasks: Sequence[PlannedTask], target: "TargetSpec", *, database_dir: Path | str,
            config: "TuneConfig | None" = None, repeat: int = 10) -> dict[str, float]:
    """Time each task's best record again on its own and append a ``confirm`` event to the
    history (``repeat`` measurements of ``config.number`` runs; their median). A tuning-time
    best is the minimum over many noisy measurements, biased low the more candidates a task
    saw; predictions (``predict_latency``, ``latency_model``) use the confirmed value while
    that record stays the best. Records confirmed already are skipped; a record that fails
    to build or run is skipped (failures are data: nothing is written for it).
    Returns workload -> confirmed µs of this call."""
    import tvm

    from cosearch.compile import database as dbmod
    from cosearch.compile.fallback import replay_record
    from cosearch.compile.tune import TuneConfig

    config = config or TuneConfig()
    if target.measure == "none":
        return {}
    database_dir = Path(database_dir)
    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    tgt = target.tvm_target()
    todo = []  # (workload, record µs, record, scheduled module)
    seen: set[str] = set()
    for t in tasks:
        if not t.tunable or t.workload in seen or not db.has_workload(t.mod):
            continue
        seen.add(t.workload)
        top = db.get_top_k(db.commit_workload(t.mod), 1)
        rec_us = dbmod.best_us(db, t.mod)
        if not top or rec_us is None or (t.workload in h and hist._num(rec_us) in h[t.workload].confirmed):
            continue
        func, _err = replay_record(t.mod, top[0], tgt)
        if func is not None:
            todo.append((t.workload, rec_us, top[0], tvm.IRModule({"main": func})))
    if not todo:
        return {}
    run = secrets.token_hex(6)
    timed = time_kernels([m for *_, m in todo], target, config=config, repeat=repeat,
                         args_info=[rec.args_info for _w, _us, rec, _m in todo])
    out, events = {}, []
    for (w, rec_us, _rec, _m), samples in zip(todo, timed):
        if samples is None:
            continue
        us = sorted(samples)[len(samples) // 2]
        out[w] = us
        events.append(hist.event("confirm", w, run=run, record_us=hist._num(rec_us), us=hist._num(us),
                                 samples=[hist._num(x) for x in samples]))
    hist.append(database_dir, events)
    return out


def time_kernels(mods: Sequence["tvm.IRModule"], target: "TargetSpec", *, config: "TuneConfig | None" = None,
                 repeat: int = 10, args_info: Sequence[Any] | None = None) -> list[list[float] | None]:
    """Build each scheduled one-kernel module (``main``) and time it with the target's tuning
    runner (``repeat`` measurements of ``config.number`` runs): per module its samples in µs,
    or ``None`` where the build or the run failed (failures are data)."""
    import dataclasses

    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile import database as dbmod
    from cosearch.compile.builder import InProcessBuilder
    from cosearch.compile.tune import TuneConfig, acquire_runner, release_runner

    config = config or TuneConfig()
    if not mods:
        return []
    if args_info is None:
        args_info = [ms.arg_info.ArgInfo.from_prim_func(m["main"]) for m in mods]
    tgt = target.tvm_target()
    scratch = tempfile.mkdtemp(prefix="cosearch-time-")
    runner = acquire_runner(target, dataclasses.replace(config, repeat=repeat))
    try:
        builder = InProcessBuilder(tmp_root=scratch, workers=config.resolved_build_workers())
        built = builder.build([ms.builder.BuilderInput(m, tgt) for m in mods])
        device = {"llvm": "cpu"}.get(tgt.kind.name, tgt.kind.name)
        ok = [i for i, b in enumerate(built) if b.error_msg is None]
        futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, device, args_info[i]) for i in ok])
        out: list[list[float] | None] = [None] * len(mods)
        for i, f in zip(ok, futures):
            r = f.result()
            secs = dbmod._valid_secs(r.run_secs) if r.error_msg is None else None
            if secs is not None:
                out[i] = [1e6 * x for x in secs]
        return out
    finally:
        release_runner(runner)
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- compile / export
def compile_plan(plan_: ModelPlan, database_dir: Path | str, *, report: list | None = None):
    """``tvm.compile`` of the plan's model with the database applied. Records that do not
    replay on a kernel are skipped (warning); kernels without a usable record get the
    seeded fallback schedule on CPU (``cosearch.compile.fallback``). ``report``, when
    given, receives one ``KernelChoice`` per kernel (source db / fallback / default)."""
    from cosearch.compile import database as dbmod
    from cosearch.compile.codegen import compile_with_database

    db = dbmod.open_database(database_dir)
    try:
        return compile_with_database(plan_.imported.mod, plan_.target, db, report=report)
    except CosearchError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM errors: one line
        raise CosearchError(f"compiling for target {plan_.target.name!r} failed: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:300]


def task_reports(plan_: ModelPlan, database_dir: Path | str, outcome: TuneOutcome | None = None,
                 choices: Sequence[Any] | None = None):
    """``TaskReport`` per task for artifacts and summaries. ``source``: ``tuned`` (this run),
    ``db`` (a record from earlier runs), ``fallback`` (no usable record: the seeded
    fallback schedule), ``untuned`` (TVM's default schedule). ``choices`` are the
    ``KernelChoice``s of the compile: a task whose records did not replay is not "db"."""
    from cosearch.compile.tune import TaskReport

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
            source = "fallback" if c.source == "fallback" else "untuned"
        out.append(TaskReport(t.name, source, o.trials if ran else 0, s.best_us, o.errors if ran else 0, t.weight))
    return out


def write_model_artifact(out_dir: Path | str, plan_: ModelPlan, executable, database_dir: Path | str, *,
                         latency=None, latency_note: str | None = None, config: dict[str, Any],
                         tuning: dict[str, Any] | None = None, outcome: TuneOutcome | None = None,
                         choices: Sequence[Any] | None = None, extra_meta: dict[str, Any] | None = None) -> Path:
    from cosearch.compile.artifact import write_artifact

    return write_artifact(out_dir, executable=executable, target=plan_.target, imported=plan_.imported,
                          tasks=task_reports(plan_, database_dir, outcome, choices), latency=latency,
                          latency_note=latency_note, config=config, tuning=tuning, extra_meta=extra_meta)


def default_schedules_dir(target: "TargetSpec") -> Path:
    """The default schedule database of ``target`` (``cosearch.paths``: one per resolved machine key)."""
    from cosearch.paths import default_schedules_dir as f

    return f(target)
