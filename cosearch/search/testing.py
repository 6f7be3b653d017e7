"""A fake compiler for testing the search: ``FakeEvaluator``, a seeded simulation.

Not a product path: it serves the search-logic tests and ``--evaluator fake`` (the
loop's own benchmarks, ``bench/search_efficiency.py --evaluator fake``), whose
numbers measure the loop, never a compiler. Everything here is deterministic given
the seed:

- **Tasks** are laid out per space by ``TASK_LAYOUTS`` so that architectures share
  them the way the engine's plan shares real workloads: a task per kernel shape, ops
  the compiled network drops (dead code) left out, equal pools counted once
  (``tests/test_fake_evaluator.py`` compares the two on real TVM plans). A space
  without a layout gets one task per entry of its encoding.
- **Latency**: each workload has a synthetic untuned µs and an exponential tuning
  curve; end-to-end ms is a calibrated kernel sum plus noise.
- **Time**: a simulated clock (``Evaluator.sim``: seconds a real compiler would have
  spent), so budgets and time-to-hypervolume curves are exercised in seconds.
- **Accuracy and training**: a synthetic score from the encoding and FLOPs, and
  seeded learning curves judged by the real learning-curve rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cosearch.search.evaluator import (Evaluator, Measured, Plan, Task, TaskState, Trained, TuneResult,
                                       append_trials_log, merge_tasks, read_trials_log)


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0**64


# ------------------------------------------------------------------ task layouts
def nb201_cell_kernels(ops: Sequence[str], edges: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Per op, the kernels one NB201 cell runs, as the compiled network runs them:
    ``skip_connect`` and ``none`` run none, nor does any edge into a node that never reaches
    the cell's output (dead code is dropped), and pools of the same tensor are computed once
    (common subexpressions are merged; a node fed by one ``skip_connect`` is its source's
    tensor)."""
    out_node = max(j for _, j in edges)
    live = {out_node}
    for j in range(out_node - 1, 0, -1):
        if any(op != "none" and i == j and k in live for op, (i, k) in zip(ops, edges)):
            live.add(j)
    tensor = list(range(out_node + 1))  # node -> the node whose tensor it is
    for j in range(1, out_node + 1):
        into = [(op, i) for op, (i, k) in zip(ops, edges) if k == j and op != "none"]
        if len(into) == 1 and into[0][0] == "skip_connect":
            tensor[j] = tensor[into[0][1]]
    kernels: dict[str, int] = {}
    pooled: set[int] = set()
    for op, (i, j) in zip(ops, edges):
        if op in ("none", "skip_connect") or j not in live:
            continue
        if op == "avg_pool_3x3":
            pooled.add(tensor[i])
        else:
            kernels[op] = kernels.get(op, 0) + 1
    kernels["avg_pool_3x3"] = len(pooled)
    return kernels


def nb201_tasks(space, arch: str) -> list[Task]:
    """NB201's ``TinyNetwork``: the stem; per stage the kernels of its ``N`` cells
    (``nb201_cell_kernels``) and, between stages, the reduction block: its stride-2 conv and
    shortcut (``reduce``) and its stride-1 3x3 conv, the shape of the cells' ``nor_conv_3x3``
    (one workload with it); then the classifier."""
    C, N, R = space.C, space.N, space.resolution
    kernels = nb201_cell_kernels(space.ops(arch), space.EDGES)
    tasks = [Task(f"stem:{C}@{R}", 1, "conv2d", 2 * 27 * C * R * R, ((1, 3, R, R),), "stem")]
    for s in range(3):
        ch, res = C * 2 ** s, R // 2 ** s
        conv3 = 2 * 9 * ch * ch * res * res
        for op, flops, kind in (("nor_conv_3x3", conv3, "conv2d"),
                                ("nor_conv_1x1", 2 * ch * ch * res * res, "conv2d"),
                                ("avg_pool_3x3", 9 * ch * res * res, "pool")):
            n = kernels.get(op, 0)
            if n:
                tasks.append(Task(f"{op}:{ch}@{res}", n * N, kind, flops, ((1, ch, res, res),), op))
        if s:
            tasks.append(Task(f"reduce:{ch}@{res}", 1, "conv2d", conv3 / 2 + 2 * (ch // 2) * ch * res * res,
                              ((1, ch // 2, res * 2, res * 2),), "reduce"))
            tasks.append(Task(f"nor_conv_3x3:{ch}@{res}", 1, "conv2d", conv3, ((1, ch, res, res),), "nor_conv_3x3"))
    tasks.append(Task(f"head:{4 * C}", 1, "dense", 2 * 4 * C * space.num_classes, (), "head"))
    return tasks


def mbv2_tasks(space, arch: str) -> list[Task]:
    """MBV2: the stem, per block its expansion (when ``e != 1``), depthwise and projection
    convolutions, the last 1x1 convolution (named as an expansion: a last stage's second
    block of expansion 4 has its shape) and the classifier."""
    b = space.blocks(arch)
    res = space.resolution // 2
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
    c_in = b["blocks"][-1][1]
    tasks.append(Task(f"pw:{c_in}x{b['last']}@{res}", 1, "conv2d", 2 * c_in * b["last"] * res * res, (), "last"))
    tasks.append(Task(f"head:{b['last']}", 1, "dense", 2 * b["last"] * space.num_classes, (), "head"))
    return tasks


def encoding_tasks(space, arch: str) -> list[Task]:
    """Any space: one task per entry of ``space.encode(arch)``, keyed by its value."""
    code = np.asarray(space.encode(arch), dtype=float)
    return [Task(f"g{i}:{v:g}", 1, "conv2d", 1e5 * (1 + v), (), f"g{i}") for i, v in enumerate(code)]


#: the simulated task layout of each space the simulator knows, by registered name
#: (``encoding_tasks`` for the others)
TASK_LAYOUTS: dict[str, Callable[[Any, str], list[Task]]] = {"nb201": nb201_tasks, "mbv2": mbv2_tasks}


# ------------------------------------------------------------------ the fake compiler
class FakeEvaluator(Evaluator):
    """A simulated compiler for search-logic tests (see the module docstring).

    Persistent state (so a killed and resumed run sees its tuning):
    ``<schedules_dir>/fake_db.jsonl``, one line ``{"v": 1, "workload", "trials"}``
    per workload of each tuning call (``evaluator.append_trials_log``). ``sleep`` (or env
    ``COSEARCH_FAKE_SLEEP``) makes it really sleep that fraction of each simulated cost
    (for kill tests). ``fail_rate`` (or env ``COSEARCH_FAKE_FAIL``): that fraction of
    architectures fails to compile (deterministically by arch).
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
        self._layout = TASK_LAYOUTS.get(getattr(space, "name", ""), encoding_tasks)

    # -- clock --------------------------------------------------------------------
    def _spend(self, seconds: float) -> float:
        self.sim += seconds
        if self.sleep > 0:
            time.sleep(seconds * self.sleep)
        return seconds

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "fail_rate": self.fail_rate}

    # -- accuracy -----------------------------------------------------------------
    def accuracy(self, arch: str) -> tuple[float, float, str]:
        if self.estimator is not None:
            score, sec, fid = super().accuracy(arch)
            return score, sec, fid
        return self._synthetic_score(arch), self._spend(self.COST["accuracy"]), "synthetic"

    def _flops(self, arch: str) -> float:
        return Plan(arch, merge_tasks(self._layout(self.space, arch))).flops  # no simulated cost

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
        noise = 2 * _unit("tacc", self.seed, self.space.key(arch)) - 1
        z = (self._synthetic_score(arch, spend=False) - 62.0) / 5.0 + 1.2 * noise
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
    def plan(self, arch: str) -> Plan:
        self._maybe_die(arch)
        return Plan(arch, merge_tasks(self._layout(self.space, arch)), self._spend(self.COST["plan"]))

    def _maybe_die(self, arch: str) -> None:
        """Fault injection for the distributed tests: in a Ray worker (``COSEARCH_WORKER``), with
        env ``COSEARCH_FAKE_KILL_WORKER=DIR`` and a file ``DIR/arm``, the first plan of each arch
        kills its process (SIGKILL), leaving ``DIR/<arch hash>`` behind; the retry plans it."""
        d = os.environ.get("COSEARCH_FAKE_KILL_WORKER")
        if not d or not os.environ.get("COSEARCH_WORKER") or not (Path(d) / "arm").exists():
            return
        marker = Path(d) / hashlib.sha256(self.space.key(arch).encode()).hexdigest()[:16]
        if marker.exists():
            return
        marker.write_text(str(os.getpid()))
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

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
        with self.measuring("tune"):
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
        with self.measuring("measure"):
            sec = self._spend(self.COST["final" if final else "measure"])
        if self.fail_rate > 0 and _unit("fail", self.seed, key) < self.fail_rate:
            return Measured(None, "fake compile failure (simulated)", "compile", sec)
        n = self._measures.get(key, 0)
        self._measures[key] = n + 1
        a, b = self.CALIBRATION
        noise = (0.01 if final else 0.03) * (2 * _unit("noise", self.seed, key, n, final) - 1)
        plan = Plan(arch, merge_tasks(self._layout(self.space, arch)))
        return Measured((a * self.kernel_sum_ms(plan) + b) * (1 + noise), None, "measure", sec)

    def export(self, arch: str, out_dir: Path, *, config: dict[str, Any]) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "FAKE.json").write_text(json.dumps({"arch": arch, "note": "FakeEvaluator: no real artifact",
                                                       "config": config}, indent=1, default=str) + "\n")
