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

Two implementations: ``EngineEvaluator`` (``cosearch.search.engine_evaluator``:
real TVM through ``cosearch.compile.engine``) and ``FakeEvaluator`` (here) — a
deterministic, seeded *simulation* of a compiler, **for search-logic tests and
benchmarks of the loop only**: tasks are shared across architectures exactly as
in the real spaces (same op at the same stage / same block shape = same
workload), each workload has a synthetic untuned latency and an exponential
tuning curve, and end-to-end latency is a calibrated kernel sum plus noise. It
keeps a *simulated clock* (seconds a real compiler would have spent), so budget
semantics and time-to-hypervolume curves can be exercised in seconds.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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

    def __init__(self, space, estimator, trainer=None) -> None:
        self.space = space
        self.estimator = estimator
        self.trainer = trainer  # a cosearch.estimate.train.TrainEstimator (the training rung) or None

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
        """Simulated seconds to add to the wall clock (``FakeEvaluator`` only)."""
        return 0.0

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}


def read_trials_log(path: Path) -> dict[str, int]:
    """Trials spent per workload from a simulated database (``{"v": 1, "workload", "trials"}``
    lines; a torn last line is skipped)."""
    out: dict[str, int] = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                ev = json.loads(line)
                out[ev["workload"]] = out.get(ev["workload"], 0) + int(ev["trials"])
            except (ValueError, KeyError, TypeError):
                continue
    return out


def append_trials_log(path: Path, trials: dict[str, int]) -> None:
    """Append one line per workload tuned, fsynced (what a kill must not lose)."""
    with open(path, "a") as fh:
        for w, n in trials.items():
            fh.write(json.dumps({"v": 1, "workload": w, "trials": n}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# =========================================================================== the fake
def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0**64


class FakeEvaluator(Evaluator):
    """A simulated compiler for search-logic tests (see the module docstring).

    Persistent state (so a killed and resumed run sees its tuning):
    ``<schedules_dir>/fake_db.jsonl``, one line ``{"v": 1, "workload", "trials"}``
    per tuning call, appended and fsynced. ``sleep`` (or env ``COSEARCH_FAKE_SLEEP``)
    makes it really sleep that fraction of each simulated cost (for kill tests).
    ``fail_rate`` (or env ``COSEARCH_FAKE_FAIL``): that fraction of architectures
    fails to compile (deterministically by arch).
    """

    kind = "fake"
    COST = {"plan": 0.3, "trial": 0.25, "measure": 1.0, "final": 3.0, "accuracy": 1.5, "epoch": 6.0}
    CALIBRATION = (1.7, 0.02)  # end-to-end ms = a * kernel sum ms + b

    def __init__(self, space, estimator=None, *, schedules_dir: str | os.PathLike, seed: int = 0,
                 sleep: float | None = None, fail_rate: float | None = None, train_epochs: int = 5) -> None:
        super().__init__(space, estimator)
        self.train_epochs = int(train_epochs)
        self._lc = None
        self.seed = int(seed)
        self.dir = Path(schedules_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.dir / "fake_db.jsonl"
        self.sleep = float(os.environ.get("COSEARCH_FAKE_SLEEP", 0.0)) if sleep is None else float(sleep)
        self.fail_rate = float(os.environ.get("COSEARCH_FAKE_FAIL", 0.0)) if fail_rate is None else float(fail_rate)
        self.sim = 0.0
        self._measures: dict[str, int] = {}
        self.trials: dict[str, int] = read_trials_log(self.db_path)

    # -- clock --------------------------------------------------------------------
    def _spend(self, seconds: float) -> float:
        self.sim += seconds
        if self.sleep > 0:
            time.sleep(seconds * self.sleep)
        return seconds

    def extra_seconds(self) -> float:
        return self.sim

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "fail_rate": self.fail_rate}

    # -- accuracy -----------------------------------------------------------------
    def accuracy(self, arch: str) -> tuple[float, float, str]:
        if self.estimator is not None:
            score, sec, fid = super().accuracy(arch)
            return score, sec, fid
        return self._synthetic_score(arch), self._spend(self.COST["accuracy"]), "synthetic"

    def _flops(self, arch: str) -> float:
        return Plan(arch, merge_tasks(self._raw_tasks(arch))).flops  # no simulated cost

    def _synthetic_score(self, arch: str, *, spend: bool = True) -> float:
        code = np.asarray(self.space.encode(arch), dtype=float)
        w = np.array([_unit("accw", self.seed, i) for i in range(code.size)]) * 2 - 0.5
        flops = self.plan(arch).flops if spend else self._flops(arch)
        return 50 + 20 * float(code @ w) / max(1.0, code.sum()) + 4 * math.log1p(flops / 1e6) \
            + 2 * _unit("accn", self.seed, self.space.key(arch))

    # -- training (simulated curves, the real learning-curve rule) ------------------
    def true_accuracy(self, arch: str) -> float:
        """The simulated final validation accuracy: monotone in the synthetic score, plus
        per-arch noise (so the cheap score ranks imperfectly, as zero-cost proxies do)."""
        z = (self._synthetic_score(arch, spend=False) - 62.0) / 5.0 + 1.2 * (2 * _unit("tacc", self.seed, self.space.key(arch)) - 1)
        return 0.1 + 0.85 / (1 + math.exp(-z))

    def fake_curve(self, arch: str) -> list[float]:
        key = self.space.key(arch)
        final, e = self.true_accuracy(arch), self.train_epochs
        rate = 0.3 + 1.2 * _unit("lcr", self.seed, key)
        out = []
        for k in range(1, e + 1):
            v = 0.1 + (final - 0.1) * (1 - math.exp(-rate * k)) / (1 - math.exp(-rate * e))
            out.append(min(1.0, max(0.0, v + (0.0 if k == e else 0.01 * (2 * _unit("lcn", self.seed, key, k) - 1)))))
        return out

    def train(self, arch: str, *, threshold: float | None, signals: dict[str, float] | None = None) -> Trained:
        """Simulated training: a seeded curve rising to ``true_accuracy``; the decisions are
        the real ``LearningCurvePredictor`` rule (its samples in ``<schedules>/fake_lc.jsonl``)."""
        from cosearch.train.predictor import LearningCurvePredictor

        if self._lc is None:
            self._lc = LearningCurvePredictor(self.dir / "fake_lc.jsonl", space_config=self.space.config(),
                                              min_samples=6, seed=self.seed)
        full, e = self.fake_curve(arch), self.train_epochs
        curve, decisions, predicted, stopped, sec = [], [], None, False, 0.0
        flops = self._flops(arch)
        for k in range(1, e + 1):
            sec += self._spend(self.COST["epoch"] * (0.5 + math.log1p(flops / 1e6) / 5))
            curve.append(full[k - 1])
            if k < e:
                d = self._lc.decide(curve, e, threshold, signals=signals)
                decisions.append({"epoch": k, **d.to_dict()})
                predicted = d.predicted if d.predicted is not None else predicted
                if d.stop:
                    stopped = True
                    break
        if not stopped:
            self._lc.observe(arch, curve, e, signals=signals)
        return Trained(curve[-1], curve, e, stopped, predicted, decisions, sec, f"fake-train:{e}")

    def train_config(self, cfg=None) -> dict[str, Any]:
        return {"fake": True, "epochs": self.train_epochs}

    # -- tasks --------------------------------------------------------------------
    def _raw_tasks(self, arch: str) -> list[Task]:
        name = getattr(self.space, "name", "")
        if name == "nb201":
            return self._nb201_tasks(arch)
        if name == "mbv2":
            return self._mbv2_tasks(arch)
        code = np.asarray(self.space.encode(arch), dtype=float)
        return [Task(f"g{i}:{v:g}", 1, "conv2d", 1e5 * (1 + v), (), f"g{i}") for i, v in enumerate(code)]

    def _nb201_tasks(self, arch: str) -> list[Task]:
        C, N, R = self.space.C, self.space.N, self.space.resolution
        ops = self.space.ops(arch)
        tasks = [Task(f"stem:{C}@{R}", 1, "conv2d", 2 * 27 * C * R * R, ((1, 3, R, R),), "stem")]
        for s in range(3):
            ch, res = C * 2 ** s, R // 2 ** s
            for op, flops, kind in (("nor_conv_3x3", 2 * 9 * ch * ch * res * res, "conv2d"),
                                    ("nor_conv_1x1", 2 * ch * ch * res * res, "conv2d"),
                                    ("avg_pool_3x3", 9 * ch * res * res, "pool")):
                n = sum(1 for o in ops if o == op)
                if n:
                    tasks.append(Task(f"{op}:{ch}@{res}", n * N, kind, flops, ((1, ch, res, res),), op))
            if s:
                tasks.append(Task(f"reduce:{ch}@{res}", 1, "conv2d", 4 * 9 * ch * ch * res * res / 2,
                                  ((1, ch // 2, res * 2, res * 2),), "reduce"))
        tasks.append(Task(f"head:{4 * C}", 1, "dense", 2 * 4 * C * self.space.num_classes, (), "head"))
        return tasks

    def _mbv2_tasks(self, arch: str) -> list[Task]:
        b = self.space.blocks(arch)
        res = self.space.resolution // 2
        tasks = [Task(f"stem:{b['stem']}@{res * 2}", 1, "conv2d", 2 * 27 * b["stem"] * res * res, (), "stem")]
        for c_in, c_out, k, e, stride in b["blocks"]:
            mid = c_in * e
            if e != 1:
                tasks.append(Task(f"pw:{c_in}x{mid}@{res}", 1, "conv2d", 2 * c_in * mid * res * res, (), "pw"))
            out_res = res // stride
            tasks.append(Task(f"dw:{mid}k{k}s{stride}@{res}", 1, "depthwise_conv2d", 2 * k * k * mid * out_res ** 2,
                              (), "dw"))
            tasks.append(Task(f"pwl:{mid}x{c_out}@{out_res}", 1, "conv2d", 2 * mid * c_out * out_res ** 2, (), "pwl"))
            res = out_res
        tasks.append(Task(f"last:{b['last']}@{res}", 1, "conv2d", 2 * b["blocks"][-1][1] * b["last"] * res * res, (),
                          "last"))
        return tasks

    def plan(self, arch: str) -> Plan:
        return Plan(arch, merge_tasks(self._raw_tasks(arch)), self._spend(self.COST["plan"]))

    # -- the synthetic latency model ----------------------------------------------
    def untuned_us(self, t: Task) -> float:
        gflops = 0.5 + 1.5 * _unit("ut", self.seed, t.workload)
        return t.flops / (gflops * 1e3) + 1.0

    def tuned_us(self, t: Task, trials: int) -> float | None:
        if trials <= 0:
            return None
        u = self.untuned_us(t)
        floor = u * (0.1 + 0.25 * _unit("floor", self.seed, t.workload))
        tau = 10 + 50 * _unit("tau", self.seed, t.workload)
        return floor + (u - floor) * math.exp(-trials / tau)

    def task_states(self, plan: Plan) -> dict[str, TaskState]:
        return {t.workload: TaskState(self.tuned_us(t, self.trials.get(t.workload, 0)), self.trials.get(t.workload, 0))
                for t in plan.tasks}

    def tune(self, tasks: Sequence[Task], budgets: dict[str, int]) -> TuneResult:
        by = {t.workload: t for t in tasks}
        run = {w: int(n) for w, n in budgets.items() if n > 0 and w in by}
        if run:
            append_trials_log(self.db_path, run)
        for w, n in run.items():
            self.trials[w] = self.trials.get(w, 0) + n
        total = sum(run.values())
        sec = self._spend(total * self.COST["trial"])
        return TuneResult(total, sec, {w: self.tuned_us(by[w], self.trials[w]) for w in run}, run)

    def kernel_sum_ms(self, plan: Plan) -> float:
        tot = 0.0
        for t in plan.tasks:
            us = self.tuned_us(t, self.trials.get(t.workload, 0))
            tot += t.weight * (us if us is not None else self.untuned_us(t))
        return tot / 1000.0

    def measure(self, arch: str, *, final: bool = False) -> Measured:
        key = self.space.key(arch)
        sec = self._spend(self.COST["final" if final else "measure"])
        if self.fail_rate > 0 and _unit("fail", self.seed, key) < self.fail_rate:
            return Measured(None, "fake compile failure (simulated)", "compile", sec)
        n = self._measures.get(key, 0)
        self._measures[key] = n + 1
        a, b = self.CALIBRATION
        noise = (0.01 if final else 0.03) * (2 * _unit("noise", self.seed, key, n, final) - 1)
        plan = Plan(arch, merge_tasks(self._raw_tasks(arch)))
        return Measured((a * self.kernel_sum_ms(plan) + b) * (1 + noise), None, "measure", sec)

    def export(self, arch: str, out_dir: Path, *, config: dict[str, Any]) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "FAKE.json").write_text(json.dumps({"arch": arch, "note": "FakeEvaluator: no real artifact",
                                                       "config": config}, indent=1, default=str) + "\n")


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
