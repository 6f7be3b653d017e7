"""Online predictors that early-stop both searches (XGBoost), and the latency calibration.

- ``TaskLatencyPredictor``: tuned µs of a task after ``n`` trials, from cheap task
  features (op kind, log FLOPs, log output size, log trials). Trained on every tuning
  outcome of the run (and of earlier runs on the same schedule database).
- ``AccuracyPredictor``: the full estimator's score from cheap signals (the space's
  encoding and the plan's FLOPs), trained on every full score of the run (and earlier).
- ``Calibration``: end-to-end ms = a * (weighted kernel sum ms) + b, least squares over
  the run's own measurements (TVM-NOTES: the sum is ~0.5x end-to-end on NB201 and
  2x off on SqueezeNet; ranking is good, absolute values are not).

Each predictor logs its *online* error: a prediction is made before the truth is
added, so the error is out-of-sample. Optimistic bounds (used to stop) widen with
that error; before a predictor is trained its optimistic bound never stops anything.

Persistence (warm start of the next search): training samples, not models, are
kept as append-only JSON lines under ``<schedules dir>/search-predictors/``
(version 1, one sample per line, torn lines skipped):
``task_latency.jsonl`` (``{"v":1,"x":[...],"trials":n,"us":best,"workload":W,"op":K,"flops":F,"elements":E}``:
one point of W's tuning curve; ``curves.curves_from_samples`` rebuilds the curves) - the schedule
database is per target, and so are kernel latencies; ``accuracy-<space>-<hash>.jsonl``
(``{"v":1,"arch","x":[...],"score"}``), hash of the space and estimator configs.
Samples rather than pickled models: inspectable, mergeable across concurrent runs
(one ``O_APPEND`` write per call, ``cosearch.jsonl``), and XGBoost refits on a few thousand rows in
milliseconds. Models are refitted every few new samples, with a fixed seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cosearch import jsonl
from cosearch.compile.plan import OP_KINDS, expected_us
from cosearch.search.curves import elements_of
from cosearch.search.evaluator import Task

MIN_SAMPLES = 10
PRED_DIR = "search-predictors"


def _append_lines(path: Path | None, rows: Sequence[dict[str, Any]]) -> None:
    if path is None or not rows:
        return
    # ``json.dumps`` as version 1 wrote them (NaN kept: a missing screen score in ``x``)
    jsonl.append_lines(path, [json.dumps(r) for r in rows])


def _read_lines(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    return [r for r in jsonl.read(path) if r.get("v") == 1]


class _Booster:
    """XGBoost's native API (no scikit-learn dependency): fit / predict on arrays."""

    def __init__(self, seed: int) -> None:
        self.params = {"max_depth": 4, "eta": 0.15, "seed": int(seed), "nthread": 1, "verbosity": 0,
                       "objective": "reg:squarederror"}
        self.booster = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> "_Booster":
        import xgboost as xgb

        self.booster = xgb.train(self.params, xgb.DMatrix(X, label=y), num_boost_round=80)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(X))  # no DMatrix: ~100x faster per call


def _xgb(seed: int) -> _Booster:
    return _Booster(seed)


class _Online:
    """Shared fit/refit/online-error logic."""

    refit_every = 5

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.X: list[list[float]] = []
        self.y: list[float] = []
        self.model = None
        self._fitted_n = 0
        self.errors: list[float] = []  # online residuals (prediction made before the truth was known)
        self._memo: dict[tuple, float] = {}

    @property
    def trained(self) -> bool:
        return self.model is not None

    def _maybe_fit(self) -> None:
        n = len(self.y)
        if n >= MIN_SAMPLES and (self.model is None or n - self._fitted_n >= self.refit_every):
            m = _xgb(self.seed)
            m.fit(np.asarray(self.X, dtype=float), np.asarray(self.y, dtype=float))
            self.model, self._fitted_n = m, n
            self._memo.clear()

    def _raw(self, x: Sequence[float]) -> float | None:
        if self.model is None:
            return None
        k = tuple(x)
        if k not in self._memo:
            self._memo[k] = float(self.model.predict(np.asarray([x], dtype=float))[0])
        return self._memo[k]

    def err_std(self) -> float | None:
        e = self.errors[-50:]
        if len(e) < 3:
            return None
        return float(math.sqrt(sum(v * v for v in e) / len(e)))


class TaskLatencyPredictor(_Online):
    """log(tuned µs) of a task from (op kind, log FLOPs, log size, log1p trials)."""

    def __init__(self, seed: int = 0, store: Path | None = None) -> None:
        super().__init__(seed)
        self.store = store
        width = len(self.features(Task("", 1), 0))
        self.samples = _read_lines(store)  # raw rows: the curve model rebuilds tuning curves from them
        for r in self.samples:
            try:
                x = [float(v) for v in r["x"]]
                y = math.log(float(r["us"]))
            except (KeyError, TypeError, ValueError):
                continue
            if len(x) == width:  # samples of an older feature encoding are skipped
                self.X.append(x)
                self.y.append(y)
        self.warm = len(self.y)
        self._maybe_fit()

    @staticmethod
    def features(t: Task, trials: int) -> list[float]:
        onehot = [1.0 if t.op_kind == k else 0.0 for k in OP_KINDS]
        size = float(np.prod(t.shapes[-1])) if t.shapes else 0.0
        return onehot + [math.log1p(max(t.flops, 0.0)), math.log1p(size), math.log1p(max(trials, 0))]

    @staticmethod
    def heuristic_us(t: Task, trials: int) -> float:
        """Before training: the untuned kernel's µs from the one prior (``compile.plan.expected_us``
        of its FLOPs: its shapes are not journaled, and a resumed run must predict as the first
        did), ~4x faster when tuned (TVM-NOTES orders of magnitude)."""
        base = expected_us(t.flops)
        return base if trials <= 0 else base * (0.25 + 0.75 * math.exp(-trials / 32))

    def predict(self, t: Task, trials: int) -> float:
        raw = self._raw(self.features(t, trials))
        return math.exp(raw) if raw is not None else self.heuristic_us(t, trials)

    def gain_ratio(self, t: Task, trials: int, more: int) -> float:
        """Predicted best µs after ``more`` trials / best µs now (<= 1). Trees do not
        extrapolate: beyond the largest trial count in the training data (or with fewer than
        3 distinct counts) the model is flat, so there the prior curve (``heuristic_us``) is
        used; inside the trained range the model's ratio."""
        prior = self.heuristic_us(t, trials + more) / self.heuristic_us(t, max(trials, 1))
        levels = {round(math.expm1(x[-1])) for x in self.X}
        if self.model is None or len(levels) < 3 or trials + more > max(levels):
            return min(1.0, prior)
        model = self.predict(t, trials + more) / max(self.predict(t, max(trials, 1)), 1e-12)
        return min(1.0, model)

    def optimistic(self, t: Task, trials: int) -> float:
        """A low bound of the tuned µs; 0 while untrained (never stops anything)."""
        s = self.err_std()
        if not self.trained or s is None:
            return 0.0
        return self.predict(t, trials) * math.exp(-2.0 * s - 0.05)

    def add(self, t: Task, trials: int, best_us: float | None) -> float | None:
        """Record a tuning outcome; returns the online relative error (or None)."""
        if best_us is None or not (best_us > 0) or not math.isfinite(best_us):
            return None
        x = self.features(t, trials)
        raw = self._raw(x)
        err = None
        if raw is not None:
            self.errors.append(math.log(best_us) - raw)
            err = math.exp(raw) / best_us - 1
        self.X.append(x)
        self.y.append(math.log(best_us))
        _append_lines(self.store, [{"v": 1, "x": x, "trials": int(trials), "us": best_us, "workload": t.workload,
                                    "op": t.op_kind, "flops": float(t.flops), "elements": elements_of(t.shapes)}])
        self._maybe_fit()
        return err


class AccuracyPredictor(_Online):
    """The full estimator's score from (space encoding, log FLOPs)."""

    def __init__(self, seed: int = 0, store: Path | None = None) -> None:
        super().__init__(seed)
        self.store = store
        self.pairs: list[tuple[float, float]] = []  # (online prediction, truth)
        for r in _read_lines(store):
            try:
                self.X.append([float(v) for v in r["x"]])
                self.y.append(float(r["score"]))
            except (KeyError, TypeError, ValueError):
                continue
        self.warm = len(self.y)
        self._maybe_fit()

    def predict(self, x: Sequence[float]) -> float | None:
        return self._raw(x)

    def optimistic(self, x: Sequence[float]) -> float:
        """A high bound of the score; +inf while untrained."""
        p, s = self._raw(x), self.err_std()
        if p is None or s is None:
            return math.inf
        return p + 2.5 * s

    def add(self, arch: str, x: Sequence[float], score: float) -> float | None:
        p = self._raw(x)
        if p is not None:
            self.errors.append(score - p)
            self.pairs.append((p, score))
        self.X.append([float(v) for v in x])
        self.y.append(float(score))
        _append_lines(self.store, [{"v": 1, "arch": arch, "x": [float(v) for v in x], "score": float(score)}])
        self._maybe_fit()
        return p

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": len(self.y), "warm_samples": self.warm, "online_n": len(self.pairs)}
        if len(self.pairs) >= 3:
            from scipy.stats import kendalltau, spearmanr

            p, t = zip(*self.pairs)
            out["rmse"] = float(math.sqrt(sum((a - b) ** 2 for a, b in self.pairs) / len(self.pairs)))
            out["kendall_tau"] = float(kendalltau(p, t).statistic)
            out["spearman"] = float(spearmanr(p, t).statistic)
        return out


def accuracy_store(schedules_dir: Path, space_cfg: dict, estimator_cfg: dict) -> Path:
    h = hashlib.sha256(json.dumps([space_cfg, estimator_cfg], sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(schedules_dir) / PRED_DIR / f"accuracy-{space_cfg.get('space', 'space')}-{h}.jsonl"


def task_store(schedules_dir: Path) -> Path:
    return Path(schedules_dir) / PRED_DIR / "task_latency.jsonl"


class Calibration:
    """end-to-end ms = a * kernel-sum ms + b, fitted on the run's measurements."""

    def __init__(self) -> None:
        self.pairs: list[tuple[float, float]] = []  # (kernel sum ms, measured ms)
        self.online: list[float] = []  # relative errors of predictions made before the measurement
        self.a, self.b = 1.0, 0.0

    def apply(self, sum_ms: float) -> float:
        return max(self.a * sum_ms + self.b, 1e-6)

    def add(self, sum_ms: float, measured_ms: float) -> None:
        if not (sum_ms > 0 and measured_ms > 0):
            return
        if self.pairs:
            self.online.append(self.apply(sum_ms) / measured_ms - 1)
        self.pairs.append((sum_ms, measured_ms))
        s = np.asarray([p[0] for p in self.pairs])
        m = np.asarray([p[1] for p in self.pairs])
        a = float(np.median(m / s))
        b = 0.0
        if len(self.pairs) >= 4 and np.ptp(s) > 0:
            a1, b1 = np.polyfit(s, m, 1)
            if a1 > 0:
                a, b = float(a1), float(b1)
        self.a, self.b = a, b

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": "ms = a * kernel_sum_ms + b", "a": self.a, "b": self.b, "n": len(self.pairs)}
        if self.pairs:
            errs = [abs(self.apply(s) / m - 1) for s, m in self.pairs]
            out["mape_fit"] = float(np.mean(errs))
        if self.online:
            out["mape_online"] = float(np.mean(np.abs(self.online)))
        return out
