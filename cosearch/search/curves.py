"""Tuning curves: a task's best µs after ``N`` trials, from its own history and from the
recorded curves of other tasks.

The search needs two kinds of prediction, and today's single feature model
(``predictors.TaskLatencyPredictor``: op kind, FLOPs, size, trials -> µs) serves both
badly (online log-RMSE 1.63 in the README main job). ``CurveModel`` splits them:

- **anchored** (the task has been tuned: history ``[(n_i, best_i)]``): the change
  ``d = log best(N) - log best(n)`` after ``N - n`` more trials, from the shape of the
  task's own curve so far (trials done, horizon, recent slope, trials since its last
  improvement) and its kind, learnt by XGBoost over pairs ``(n, N)`` cut from the other
  tasks' curves. Before it has enough curves, a prior fitted once on the NB201 benchmark
  of an AMD EPYC (``PRIOR_ANCHORED``, from ``bench/results/gain_predictor.json``). Past the
  trials its training curves reached (``horizon``: a run's own curves stop where the run
  stopped tuning) the prediction continues with that prior instead of extrapolating.
- **unanchored** (never tuned): ``log best(N) = log work + rate``, the rate (log µs per
  unit of work: FLOPs for compute ops, tensor elements for memory ops) taken from the
  nearest tuned tasks of the same op kind (in log work), each at ``N`` trials on its own
  curve: "similar tasks' recorded curves". With none of the same kind: the op class
  (compute / memory), then ``PRIOR_RATE``.

Every prediction comes with an **optimistic bound** (the low µs used to stop things):
the prediction lowered by the ``1 - coverage`` quantile of held-out residuals
(split-conformal, workloads held out in ``FOLDS`` groups, per kind of prediction), so
the bound is below the truth at least ``coverage`` of the time on tasks like the
training ones. Measured on held-out workloads of the benchmark by
``bench/gain_predictor.py``.

Curves are plain data (``TaskCurve``): the search builds them from its own tuning
calls and from earlier runs' samples (``task_latency.jsonl``); the benchmark from its
recorded curves. The model is refitted on demand (``fit``), with a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

COMPUTE_OPS = frozenset({"conv2d", "depthwise_conv2d", "dense"})
#: horizons (more trials) the anchored model is trained on, and the trial cap of a curve
HORIZONS = (8, 16, 32, 64, 128, 256)
#: tuned "to convergence": the benchmark's cap (docs/benchmark.md)
CONVERGED_TRIALS = 256
MAX_TRIALS = 512
FOLDS = 4
NEIGHBOURS = 3
#: the bound's coverage aimed at on the training curves; held-out workloads fall a little
#: short of it (bench/results/gain_predictor.json), so it aims above the 90 % the search needs
COVERAGE = 0.92
MIN_CURVES = 4  # curves with >= 2 points before the anchored model replaces the prior
#: prior of the anchored change d (log ratio) by trials done: (mean, low quantile at 90 %
#: coverage) for a doubling of the trials; scaled by log2(N/n). Fitted on the NB201 benchmark
#: of an AMD EPYC (bench/results/cobench-nb201-host--znver3-2c-3afece49, 18 searched tasks x
#: 2 seeds), see bench/results/gain_predictor.json.
PRIOR_ANCHORED = ((8, -0.135, -0.299), (16, -0.122, -0.285), (32, -0.075, -0.21), (64, -0.079, -0.221),
                  (128, -0.058, -0.135))
#: prior rate (log µs per unit of work) at convergence, per op class, same source
PRIOR_RATE = {"compute": -10.912, "memory": -8.542}


def op_class(op_kind: str) -> str:
    return "compute" if op_kind in COMPUTE_OPS else "memory"


@dataclass(frozen=True)
class TaskCurve:
    """One task's identity, size and tuning history: ``points`` = (cumulative trials, best µs
    after them), increasing in trials; ``converged``: the curve is flat at its end (its last
    best holds for more trials); ``exhausted``: no candidate is left (no gain possible)."""

    workload: str
    op_kind: str
    flops: float
    elements: float  # total tensor elements of the task's inputs and output
    points: tuple[tuple[int, float], ...] = ()
    converged: bool = False
    exhausted: bool = False

    @property
    def work(self) -> float:
        """FLOPs when the planner counted any (convolutions, pools, reductions), else tensor elements."""
        return max(self.flops if self.flops > 0 else self.elements, 1.0)

    @property
    def intensity(self) -> float:
        """Work per tensor element: separates a 1x1 from a 3x3 convolution, a 2x2 from a 3x3 pool."""
        return self.work / max(self.elements, 1.0)

    @property
    def trials(self) -> int:
        return self.points[-1][0] if self.points else 0

    def best_at(self, n: int) -> float | None:
        """Best µs after ``n`` trials (the last point at or below ``n``); None before the first."""
        best = None
        for t, us in self.points:
            if t > n:
                break
            best = us
        return best

    def known_at(self, n: int) -> bool:
        """Whether the curve says what its best is after ``n`` trials."""
        return bool(self.points) and (n <= self.trials or self.converged or self.exhausted)

    def upto(self, n: int) -> "TaskCurve":
        """The history as it was after ``n`` trials."""
        return TaskCurve(self.workload, self.op_kind, self.flops, self.elements,
                         tuple(p for p in self.points if p[0] <= n), False, self.exhausted and n >= self.trials)

    def with_point(self, trials: int, best_us: float, *, exhausted: bool = False) -> "TaskCurve":
        pts = [p for p in self.points if p[0] < trials]
        if pts and best_us > pts[-1][1]:
            best_us = pts[-1][1]  # best so far never gets worse
        return TaskCurve(self.workload, self.op_kind, self.flops, self.elements,
                         tuple(pts) + ((int(trials), float(best_us)),), False, exhausted)


def elements_of(shapes: Iterable[Sequence[int]]) -> float:
    return float(sum(float(np.prod(s)) if len(s) else 1.0 for s in shapes))


def curves_from_samples(rows: Iterable[dict]) -> dict[str, TaskCurve]:
    """Tuning curves from the search's persisted samples (``predictors.task_store`` lines with
    ``workload``, ``op``, ``flops``, ``elements``, ``trials``, ``us``; older lines lack the
    task's identity and are skipped): per workload its points by trials, best so far."""
    pts: dict[str, dict[int, float]] = {}
    meta: dict[str, tuple[str, float, float]] = {}
    for r in rows:
        try:
            w, op = str(r["workload"]), str(r["op"])
            n, us = int(r["trials"]), float(r["us"])
            fl, el = float(r["flops"]), float(r["elements"])
        except (KeyError, TypeError, ValueError):
            continue
        if n <= 0 or not (us > 0) or not math.isfinite(us):
            continue
        meta[w] = (op, fl, el)
        d = pts.setdefault(w, {})
        d[n] = min(us, d.get(n, math.inf))
    out = {}
    for w, d in pts.items():
        best, points = math.inf, []
        for n in sorted(d):
            best = min(best, d[n])
            points.append((n, best))
        op, fl, el = meta[w]
        out[w] = TaskCurve(w, op, fl, el, tuple(points))
    return out


@dataclass(frozen=True)
class CurvePrediction:
    us: float
    low_us: float  # optimistic bound (the truth is above it ~coverage of the time)
    source: str  # "anchored" | "anchored-prior" | "neighbours" | "prior" | "exhausted"


def anchored_features(c: TaskCurve, n: int, total: int) -> list[float]:
    """Features of the question "best after ``total`` trials" for a curve known up to ``n``."""
    pts = [p for p in c.points if p[0] <= n]
    t_n, b_n = pts[-1]
    t_0, b_0 = pts[0]
    slope = 0.0
    if t_n > t_0:
        slope = math.log(b_n / b_0) / math.log(t_n / t_0)  # log gain per doubling so far (<= 0)
    half = [p for p in pts if p[0] <= max(t_0, t_n // 2)]
    recent = math.log(b_n / half[-1][1]) if half else 0.0
    last_improve = t_0
    for (ta, ba), (tb, bb) in zip(pts, pts[1:]):
        if bb < ba * 0.995:
            last_improve = tb
    stale = (t_n - last_improve) / max(t_n, 1)
    cls = op_class(c.op_kind)
    return [math.log(t_n), math.log(max(total, t_n + 1) / t_n), slope, recent, stale,
            1.0 if cls == "compute" else 0.0, math.log(c.work), float(len(pts))]


def spread(X: np.ndarray) -> np.ndarray:
    """The prior's spread (minus its low bound) at anchored feature rows (columns 0, 1: log n,
    log(N / n)): the scale conformal residuals are normalised by."""
    n = np.exp(X[:, 0])
    total = n * np.exp(X[:, 1])
    return np.array([max(0.02, -prior_anchored(int(round(a)), int(round(b)))[1]) for a, b in zip(n, total)])


def prior_anchored(n: int, total: int) -> tuple[float, float]:
    """(mean, low) of d from ``PRIOR_ANCHORED`` (by the nearest trials-done level)."""
    doublings = math.log2(max(total, n + 1) / max(n, 1))
    lvl = min(PRIOR_ANCHORED, key=lambda r: abs(math.log(max(n, 1) / r[0])))
    return lvl[1] * doublings, lvl[2] * doublings


class CurveModel:
    """Predicts best µs after ``N`` trials; see the module doc. ``fit`` on curves, then
    ``predict(curve, N)`` where ``curve`` is the task's history so far (possibly empty)."""

    def __init__(self, *, seed: int = 0, coverage: float = COVERAGE, neighbours: int = NEIGHBOURS) -> None:
        if not 0.5 <= coverage < 1.0:
            raise ValueError(f"coverage must be in [0.5, 1), got {coverage!r}")
        self.seed = int(seed)
        self.coverage = float(coverage)
        self.k = int(neighbours)
        self.curves: list[TaskCurve] = []
        self.model = None
        self.q_anchored: float | None = None  # conformal low quantile of anchored residuals
        self.q_neigh: float | None = None  # ... of neighbour-rate residuals
        self.n_pairs = 0
        self.horizon = 0  # the most trials any training pair looked ahead to (the model's reach)
        self._memo: dict[tuple, CurvePrediction] = {}

    # -------------------------------------------------------------- training
    def fit(self, curves: Iterable[TaskCurve]) -> "CurveModel":
        self.curves = [c for c in curves if c.points]
        self._memo.clear()
        rich = [c for c in self.curves if len(c.points) >= 2 and not c.exhausted]
        self.model, self.q_anchored, self.n_pairs = None, None, 0
        if len({c.workload for c in rich}) >= MIN_CURVES:
            X, y, g = self._pairs(rich)
            self.n_pairs = len(y)
            self.horizon = int(round(float(np.max(np.exp(X[:, 0] + X[:, 1]))))) if len(y) else 0
            if len(y) >= 20:
                self.model = self._train(X, y)
                self.q_anchored = self._conformal_anchored(X, y, g)
        self.q_neigh = self._conformal_neighbours()
        return self

    @staticmethod
    def _pairs(curves: Sequence[TaskCurve]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, g = [], [], []
        wl = {w: i for i, w in enumerate(sorted({c.workload for c in curves}))}
        for c in curves:
            for n, b in c.points:
                for h in HORIZONS:
                    total = n + h
                    if total > MAX_TRIALS or not c.known_at(total):
                        continue
                    X.append(anchored_features(c, n, total))
                    y.append(math.log(c.best_at(total) / b))
                    g.append(wl[c.workload])
        return np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(g)

    def _train(self, X: np.ndarray, y: np.ndarray):
        import xgboost as xgb

        params = {"max_depth": 3, "eta": 0.1, "seed": self.seed, "nthread": 1, "verbosity": 0,
                  "objective": "reg:squarederror", "min_child_weight": 5, "subsample": 1.0}
        return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=60)

    def _conformal_anchored(self, X: np.ndarray, y: np.ndarray, g: np.ndarray) -> float | None:
        """Normalised split-conformal: the low quantile of held-out residuals divided by the
        prior's spread at their (trials done, horizon), so the bound widens where curves still
        move (few trials done, long horizons) and tightens where they are flat."""
        groups = np.unique(g)
        if len(groups) < FOLDS:
            return None
        rng = np.random.default_rng(self.seed)
        fold_of = dict(zip(rng.permutation(groups), np.arange(len(groups)) % FOLDS))
        fold = np.array([fold_of[v] for v in g])
        res = np.empty_like(y)
        for f in range(FOLDS):
            tr, te = fold != f, fold == f
            if tr.sum() < 10 or te.sum() == 0:
                return None
            res[te] = y[te] - np.minimum(0.0, self._train(X[tr], y[tr]).inplace_predict(X[te]))
        return float(np.quantile(res / spread(X), 1.0 - self.coverage))

    def _conformal_neighbours(self) -> float | None:
        """Low quantile of log(truth / neighbour prediction), each workload held out in turn."""
        res = []
        for c in self.curves:
            others = [o for o in self.curves if o.workload != c.workload]
            for h in HORIZONS:
                if not c.known_at(h):
                    continue
                pred = self._neighbour_log_us(c, h, others)
                if pred is not None:
                    res.append(math.log(c.best_at(max(h, c.points[0][0]))) - pred)
        if len(res) < 10:
            return None
        return float(np.quantile(np.asarray(res), 1.0 - self.coverage))

    # -------------------------------------------------------------- prediction
    def _neighbour_log_us(self, c: TaskCurve, total: int, pool: Sequence[TaskCurve]) -> float | None:
        lw = math.log(c.work)
        lel = math.log(max(c.elements, 1.0))
        lin = math.log(c.intensity)
        for same in (lambda o: o.op_kind == c.op_kind, lambda o: op_class(o.op_kind) == op_class(c.op_kind)):
            cand = [o for o in pool if same(o) and o.known_at(total)]
            if cand:
                break
        else:
            return None
        by_wl: dict[str, list[float]] = {}
        dist: dict[str, float] = {}
        for o in cand:
            b = o.best_at(max(total, o.points[0][0]))
            by_wl.setdefault(o.workload, []).append(math.log(b) - math.log(o.work))
            dist[o.workload] = (abs(math.log(o.work) - lw) + 0.5 * abs(math.log(max(o.elements, 1.0)) - lel)
                                + abs(math.log(o.intensity) - lin))
        near = sorted(by_wl, key=lambda w: (dist[w], w))[: self.k]
        wts = np.array([1.0 / (dist[w] + 0.1) for w in near])
        rates = np.array([float(np.mean(by_wl[w])) for w in near])
        return lw + float(np.sum(wts * rates) / np.sum(wts))

    def predict(self, c: TaskCurve, total: int) -> CurvePrediction:
        """Best µs of the task after ``total`` trials in all, from its history ``c.points``."""
        key = (c.workload, c.points, c.exhausted, int(total))
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._predict(c, int(total))
        return got

    def _predict(self, c: TaskCurve, total: int) -> CurvePrediction:
        if c.points:
            n, b = c.points[-1]
            if c.exhausted or total <= n:
                return CurvePrediction(b, b, "exhausted" if c.exhausted else "anchored")
            mean_p, low_p = prior_anchored(n, total)
            if self.model is not None:
                # the model answers up to the trials its training curves reached; the prior beyond
                # (a run's own curves are short: extrapolating them underestimates late gains)
                reach = min(total, max(n, self.horizon))
                d = low = 0.0
                if reach > n:
                    x = np.asarray([anchored_features(c, n, reach)])
                    d = min(0.0, float(self.model.inplace_predict(x)[0]))
                    sp = float(spread(x)[0])
                    low = d + self.q_anchored * sp if self.q_anchored is not None else min(d, prior_anchored(n, reach)[1])
                if total > reach:
                    pm, pl = prior_anchored(reach, total)
                    d, low = d + pm, low + pl
                return CurvePrediction(b * math.exp(d), b * math.exp(min(0.0, low)), "anchored")
            return CurvePrediction(b * math.exp(mean_p), b * math.exp(low_p), "anchored-prior")
        pool = [o for o in self.curves if o.workload != c.workload]
        lu = self._neighbour_log_us(c, max(total, 1), pool)
        if lu is not None:
            q = self.q_neigh if self.q_neigh is not None else -1.0
            return CurvePrediction(math.exp(lu), math.exp(lu + min(0.0, q)), "neighbours")
        lu = math.log(c.work) + PRIOR_RATE[op_class(c.op_kind)]
        return CurvePrediction(math.exp(lu), math.exp(lu - 2.0), "prior")


@dataclass
class CurveBook:
    """The curves the search knows, by workload, and the model fitted on them (refitted when
    ``refit_every`` new points arrived)."""

    seed: int = 0
    refit_every: int = 4
    curves: dict[str, TaskCurve] = field(default_factory=dict)
    model: CurveModel = field(init=False)
    _new: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.model = CurveModel(seed=self.seed).fit([])
        self.warm = 0  # curves it started with (earlier runs)

    def observe(self, c: TaskCurve) -> None:
        self.curves[c.workload] = c
        self._new += 1
        if self._new >= self.refit_every:
            self.refit()

    def refit(self) -> None:
        self._new = 0
        self.model = CurveModel(seed=self.seed).fit(self.curves.values())
