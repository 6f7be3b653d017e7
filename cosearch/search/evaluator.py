"""What the search loop asks of the compiler (and of the accuracy estimator).

``Evaluator`` is the small interface the loop is written against:

- ``accuracy(arch)``           the full estimator's score (``cosearch.estimate``), one arch at a time;
- ``plan(arch)``               the arch's tunable tasks: workload, weight, op kind, FLOPs, shapes;
- ``task_states(plan)``        per workload: best µs in the schedule database (``None``: untuned) and trials spent;
- ``tune(tasks, budgets)``     spend trials on workloads (records reach the database batch by batch);
- ``measure(arch, final=)``    compile against the database and time end-to-end;
- ``export(arch, dir, ...)``   write a deployable artifact of the last measured compile;
- ``train(arch, threshold=)``  the training rung (``--estimator X+train``): short real training with the
                               learning-curve early stop against ``threshold`` (``cosearch.estimate.train``).

Implementations: ``EngineEvaluator`` (``cosearch.search.engine_evaluator``: real TVM
through ``cosearch.compile.engine``), ``ReplayEvaluator`` (``cosearch.cobench.replay``:
a recorded benchmark) and, for tests and the loop's own benchmarks only,
``FakeEvaluator`` (``cosearch.search.testing``: a seeded simulation of a compiler).

Evaluators that simulate work keep a clock of their own (``sim``, seconds a real
compiler would have spent) that the run adds to the wall clock (``extra_seconds``).
The simulated tuning state of the fake and the replay is a JSON-lines trial log
(``append_trials_log`` / ``read_trials_log``).
"""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cosearch import jsonl
from cosearch.errors import CosearchError


@dataclass(frozen=True)
class Task:
    """One tunable kernel of an architecture (weights summed over its uses)."""

    workload: str
    weight: int
    op_kind: str = "other"
    flops: float = 0.0
    shapes: tuple[tuple[int, ...], ...] = ()
    name: str = ""


@dataclass
class Plan:
    arch: str
    tasks: list[Task]
    seconds: float = 0.0
    handle: Any = field(default=None, repr=False)  # the engine's ModelPlan
    # what the database held for the tasks when the plan was made (set by a worker, which keeps
    # the handle: cosearch.distributed.screen); None: ask ``Evaluator.task_states``
    states: dict[str, "TaskState"] | None = None

    @property
    def flops(self) -> float:
        return float(sum(t.weight * t.flops for t in self.tasks))

    def workloads(self) -> list[str]:
        return [t.workload for t in self.tasks]


@dataclass(frozen=True)
class TaskState:
    best_us: float | None  # None: not in the database (runs TVM's default schedule)
    trials: int = 0


@dataclass(frozen=True)
class TuneResult:
    trials: int
    seconds: float
    best_us: dict[str, float | None]
    trials_per_task: dict[str, int]
    #: the call ended before its budgets for a reason of the tuner's, not the tasks'
    #: (``engine.scheduler_raced``): a task given no trial in it is not out of candidates
    ended_early: bool = False
    #: candidates built and the seconds the call waited for builds, and where they ran
    #: ("driver", or "pool": the search's workers), or None (not reported)
    builds: dict[str, Any] | None = None
    #: RPC measurements measured again after a failure (a hung or rebooted board) and still failed
    #: (``compile.tuning.retry``), or None (a local runner)
    measure: dict[str, Any] | None = None


@dataclass(frozen=True)
class Measured:
    ms: float | None
    error: str | None = None
    stage: str = "measure"  # where it failed: "export" | "compile" | "measure"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.ms is not None and self.error is None


@dataclass(frozen=True)
class Trained:
    """One run of the training rung."""

    accuracy: float  # validation accuracy after the last epoch run
    curve: list[float]
    epochs: int  # planned
    stopped: bool  # by the learning-curve rule
    predicted: float | None  # the rule's last predicted final accuracy
    decisions: list[dict[str, Any]]
    seconds: float
    fidelity: str

    @property
    def score(self) -> float:
        """The arch's accuracy estimate: the final accuracy, or the prediction of it when stopped."""
        return self.predicted if self.stopped and self.predicted is not None else self.accuracy


def merge_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Deduplicate by workload, summing weights (order of first appearance)."""
    out: dict[str, Task] = {}
    for t in tasks:
        if t.workload in out:
            o = out[t.workload]
            out[t.workload] = Task(o.workload, o.weight + t.weight, o.op_kind, o.flops, o.shapes, o.name)
        else:
            out[t.workload] = t
    return list(out.values())


class Evaluator(abc.ABC):
    """See the module docstring. ``space`` and ``estimator`` are public attributes."""

    kind: str = "abstract"
    #: whether the run's clock includes wall time (False: the evaluator's simulated seconds alone)
    wall_clock: bool = True
    #: (set-up seconds of one tuning call, seconds per trial) the search assumes before it has
    #: timed calls of its own (``value.CallCost``)
    call_cost_prior: tuple[float, float] = (5.0, 0.4)
    #: seconds of simulated work so far (an evaluator that simulates a compiler adds to it)
    sim: float = 0.0

    #: the local CPU's measurement lease when the search has workers (``distributed.lease``), else None
    lease: Any = None
    #: the search's work pool when it has workers, else None, and what a worker needs to rebuild
    #: this evaluator (``distributed.screen.worker_spec``): an evaluator whose target is measured
    #: on RPC boards builds its tuning candidates there and splits its tuning calls over boards
    work: Any = None
    work_spec: dict[str, Any] | None = None

    def __init__(self, space, estimator, trainer=None) -> None:
        self.space = space
        self.estimator = estimator
        self.trainer = trainer  # a cosearch.estimate.train.TrainEstimator (the training rung) or None

    def measuring(self, what: str):
        """Context of a measurement (tuning, timing): the lease held exclusive when there is one."""
        import contextlib

        return self.lease.measuring(what) if self.lease is not None else contextlib.nullcontext()

    def working(self, what: str):
        """Context of work beside which others may run (compiling): the lease held shared."""
        import contextlib

        return self.lease.work(what) if self.lease is not None else contextlib.nullcontext()

    def adopt(self, plan: Plan) -> None:
        """A plan made by a worker (``plan.handle`` None) of an arch the driver may tune or measure."""

    def accuracy(self, arch: str) -> tuple[float, float, str]:
        """-> (score, seconds, fidelity) of the full estimator (comparable across the run)."""
        t0 = time.perf_counter()
        est = self.estimator.estimate(self.space, arch)
        return float(est.score), max(float(est.seconds), time.perf_counter() - t0), str(est.fidelity)

    @abc.abstractmethod
    def plan(self, arch: str) -> Plan: ...

    @abc.abstractmethod
    def task_states(self, plan: Plan) -> dict[str, TaskState]: ...

    @abc.abstractmethod
    def tune(self, tasks: Sequence[Task], budgets: dict[str, int]) -> TuneResult: ...

    @abc.abstractmethod
    def measure(self, arch: str, *, final: bool = False) -> Measured: ...

    def measure_many(self, archs: Sequence[str]) -> list[tuple[Measured, str | None]]:
        """Measure several archs (the joint strategy's ``--overlap``): per arch, in the order
        given, (its ``Measured``, the worker that measured it or None for this process). Here
        one after the other; an evaluator whose target has RPC boards measures them side by side."""
        return [(self.measure(a), None) for a in archs]

    @abc.abstractmethod
    def export(self, arch: str, out_dir: Path, *, config: dict[str, Any]) -> None:
        """Artifact of the last ``measure(arch, final=True)``."""

    def train(self, arch: str, *, threshold: float | None, signals: dict[str, float] | None = None) -> Trained:
        """Train ``arch`` (the training rung); stops early once its optimistic final accuracy
        cannot beat ``threshold`` (``None``: train every epoch)."""
        if self.trainer is None:
            raise CosearchError("this search has no training rung; accepted: --estimator ESTIMATOR+train")
        est = self.trainer.estimate(self.space, arch, stop_threshold=threshold, signals=signals)
        r = self.trainer.last_result
        return Trained(float(r.accuracy_val), [float(v) for v in r.curve], int(r.epochs), bool(r.stopped_early),
                       r.predicted_final, list(r.decisions), float(est.seconds), str(est.fidelity))

    def train_config(self, cfg=None) -> dict[str, Any]:
        """What the training rung does (keys the accuracy predictor's store)."""
        return self.trainer.config() if self.trainer is not None else {}

    def extra_seconds(self) -> float:
        """Simulated seconds to add to the wall clock: ``sim`` (0 for a real compiler)."""
        return self.sim

    def restart_clock(self) -> None:
        """Start the simulated clock again from zero (work done before a run, like the
        objectives' calibration, is not the run's)."""
        self.sim = 0.0

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}


def read_trials_log(path: str | os.PathLike) -> dict[str, int]:
    """Trials spent per workload from a simulated database (``{"v": 1, "workload", "trials"}``
    lines, read by ``cosearch.jsonl``: a damaged line is skipped, as is a malformed record)."""
    out: dict[str, int] = {}
    for ev in jsonl.read(path):
        try:
            out[ev["workload"]] = out.get(ev["workload"], 0) + int(ev["trials"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def append_trials_log(path: str | os.PathLike, trials: dict[str, int]) -> None:
    """Append one line per workload tuned, fsynced (``cosearch.jsonl``: what a kill must not lose)."""
    jsonl.append(path, [{"v": 1, "workload": w, "trials": n} for w, n in trials.items()])


def check_evaluator_kind(kind: str) -> str:
    """``engine``, ``fake`` or ``replay:BENCH`` (a benchmark folder, checked to be one now)."""
    name, sep, path = str(kind).partition(":")
    if name == "replay" and sep and path:
        from cosearch.cobench.store import open_bench

        open_bench(path)  # not a benchmark: one line now, before any work
        return kind
    if kind not in ("engine", "fake"):
        raise CosearchError(f"unknown evaluator {kind!r}; valid: engine, replay:BENCH (a benchmark of "
                            "cosearch bench build), fake (a simulated compiler, for tests only)")
    return kind
