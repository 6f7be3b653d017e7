"""Learning-curve predictor: final validation accuracy from a partial curve, and the
early-stop rule built on it.

**Model.** From a partial curve ``c_1..c_k`` of a run of ``E`` epochs, features are
``k/E``, ``k``, ``E``, the last value, the best so far, the first value, the last
step ``c_k - c_{k-1}``, the mean step ``(c_k - c_1)/(k-1)`` and any cheap signals
given (zero-cost scores, FLOPs; missing ones are NaN, which XGBoost handles).
An XGBoost regressor (``xgboost.XGBRegressor``, seeded, 60 trees of depth 3)
predicts ``final - last``. Every completed curve of ``E`` epochs gives ``E - 1``
rows (one per prefix). The uncertainty margin at fraction ``k/E`` is the 90th
percentile of the absolute out-of-fold residuals (3 folds grouped by
architecture) of rows in the same third of training, at least ``min_margin``.

**Rule** (``should_stop(curve, threshold)`` / ``decide``): never without a threshold
or on the last epoch. With at least ``min_samples`` completed curves (default 8):
stop when ``prediction + margin < threshold``. Before that (the warm-up rule):
stop when the curve is *flat* -- at least 3 epochs, the last 3 values within
``flat_tol`` (default 0.01) -- and ``best + flat_margin < threshold``
(``flat_margin`` 0.02): a curve that has stopped moving cannot be expected to climb
to the front. A rising curve always continues under the warm-up rule.

**Persistence.** Samples are kept per (space settings, dataset + split) in an
append-only JSON-lines file, ``<root>/lc-<space>-<key>.jsonl`` where ``<root>`` is
``$COSEARCH_TRAIN_DIR`` or ``<user data dir>/train`` (``~/.local/share/cosearch/train``)
and ``<key>`` hashes the space config and the dataset fingerprint. Line 1 is a
header ``{"schema": "cosearch.lc/1", "space": {...}, "dataset": {...}}``; each
further line is ``{"v": 1, "arch": ..., "epochs": E, "curve": [...], "signals": {...},
"config": {...}}``. The model is refit from the samples when they change (cheap:
a few hundred rows); a torn last line is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cosearch import jsonl
from cosearch.errors import CosearchError

SCHEMA = "cosearch.lc/1"
TRAIN_DIR_ENV = "COSEARCH_TRAIN_DIR"
BASE_FEATURES = ("frac", "k", "E", "last", "best", "first", "step_last", "step_mean")


@dataclass(frozen=True)
class Decision:
    stop: bool
    rule: str  # "none" (no threshold / last epoch), "flat" (warm-up rule), "model"
    predicted: float | None = None
    margin: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def default_root() -> Path:
    env = os.environ.get(TRAIN_DIR_ENV)
    if env:
        return Path(env)
    from cosearch.paths import user_data_dir

    return user_data_dir() / "train"


def store_path(space_config: dict[str, Any], data_fingerprint: str, root: Path | str | None = None) -> Path:
    key = hashlib.sha256(json.dumps([space_config, data_fingerprint], sort_keys=True).encode()).hexdigest()[:12]
    name = str(space_config.get("space", "space"))
    return Path(root if root is not None else default_root()) / f"lc-{name}-{key}.jsonl"


def curve_features(curve: Sequence[float], epochs: int, signals: dict[str, float] | None,
                   signal_names: Sequence[str]) -> list[float]:
    c = [float(v) for v in curve]
    k = len(c)
    last, first = c[-1], c[0]
    step_last = c[-1] - c[-2] if k > 1 else 0.0
    step_mean = (c[-1] - c[0]) / (k - 1) if k > 1 else 0.0
    sig = signals or {}
    return [k / epochs, float(k), float(epochs), last, max(c), first, step_last, step_mean] + [
        float(sig[n]) if n in sig and sig[n] is not None and math.isfinite(float(sig[n])) else float("nan")
        for n in signal_names]


class LearningCurvePredictor:
    """Online learning-curve model with a persisted sample store (see the module docstring)."""

    def __init__(self, path: Path | str | None = None, *, space_config: dict[str, Any] | None = None,
                 dataset: dict[str, Any] | None = None, min_samples: int = 8, min_margin: float = 0.01,
                 quantile: float = 0.9, flat_tol: float = 0.01, flat_margin: float = 0.02, seed: int = 0) -> None:
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
            raise CosearchError(f"min_samples must be an integer >= 2, got {min_samples!r}")
        for name, v in (("min_margin", min_margin), ("flat_tol", flat_tol), ("flat_margin", flat_margin)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise CosearchError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 < quantile < 1:
            raise CosearchError(f"quantile must lie in (0, 1), got {quantile!r}")
        self.path = Path(path) if path is not None else None
        self.space_config = space_config or {}
        self.dataset = dataset or {}
        self.min_samples = min_samples
        self.min_margin = float(min_margin)
        self.quantile = float(quantile)
        self.flat_tol = float(flat_tol)
        self.flat_margin = float(flat_margin)
        self.seed = seed
        self.samples: list[dict[str, Any]] = []
        self._model = None
        self._margins: dict[int, float] = {}
        self._signal_names: list[str] = []
        self._fitted_on = -1
        if self.path is not None and self.path.exists():
            self._load()

    # ------------------------------------------------------------------ persistence
    @classmethod
    def for_data(cls, space, data, *, root: Path | str | None = None, **kw: Any) -> "LearningCurvePredictor":
        """The persisted predictor of ``space`` (its settings) on ``data`` (dataset + split)."""
        cfg = space.config()
        return cls(store_path(cfg, data.fingerprint(), root), space_config=cfg,
                   dataset={"name": data.name, "fingerprint": data.fingerprint()}, **kw)

    def _load(self) -> None:
        assert self.path is not None
        try:
            lines = jsonl.read(self.path, strict=True)  # a torn last line is skipped, other damage raises
        except CosearchError as e:
            raise CosearchError(f"learning-curve store: {e}") from None
        for i, rec in enumerate(lines):
            if i == 0:
                if rec.get("schema") != SCHEMA:
                    raise CosearchError(f"learning-curve store {str(self.path)!r} has schema {rec.get('schema')!r}; "
                                        f"accepted: {SCHEMA!r}")
                continue
            if rec.get("v") == 1 and isinstance(rec.get("curve"), list) and rec.get("epochs"):
                self.samples.append(rec)

    def _append(self, rec: dict[str, Any]) -> None:
        if self.path is None:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        header = [{"schema": SCHEMA, "space": self.space_config, "dataset": self.dataset}] if new else []
        jsonl.append(self.path, header + [rec])

    # ------------------------------------------------------------------ learning
    def observe(self, arch: str, curve: Sequence[float], epochs: int, *, signals: dict[str, float] | None = None,
                config: dict[str, Any] | None = None) -> None:
        """Add a completed curve (``len(curve) == epochs``) to the samples (and the store)."""
        if len(curve) != epochs or epochs < 2:
            return
        rec = {"v": 1, "arch": arch, "epochs": int(epochs), "curve": [round(float(v), 6) for v in curve],
               "signals": {k: float(v) for k, v in (signals or {}).items()}, "config": config or {}}
        self.samples.append(rec)
        self._append(rec)

    @property
    def ready(self) -> bool:
        return len(self.samples) >= self.min_samples

    def _rows(self, samples: Sequence[dict[str, Any]]):
        X, t, frac, group = [], [], [], []
        for gi, s in enumerate(samples):
            c, E = s["curve"], int(s["epochs"])
            for k in range(1, E):
                X.append(curve_features(c[:k], E, s.get("signals"), self._signal_names))
                t.append(c[-1] - c[k - 1])
                frac.append(k / E)
                group.append(gi)
        return np.asarray(X, float), np.asarray(t, float), np.asarray(frac), np.asarray(group)

    def _new_model(self):
        from xgboost import XGBRegressor

        return XGBRegressor(n_estimators=60, max_depth=3, learning_rate=0.1, subsample=1.0,
                            random_state=self.seed, n_jobs=1, verbosity=0)

    def fit(self) -> None:
        """Refit the model and the margins from all samples (no-op when unchanged)."""
        if self._fitted_on == len(self.samples) or not self.ready:
            return
        names = sorted({n for s in self.samples for n in (s.get("signals") or {})})
        self._signal_names = names
        X, t, frac, group = self._rows(self.samples)
        model = self._new_model().fit(X, t)
        # out-of-fold residuals grouped by architecture -> margin per third of training
        n_groups = len(self.samples)
        folds = np.arange(n_groups) % 3
        resid = np.full(len(t), np.nan)
        for f in range(3):
            test = folds[group] == f
            if test.all() or not test.any():
                continue
            m = self._new_model().fit(X[~test], t[~test])
            resid[test] = np.abs(m.predict(X[test]) - t[test])
        bucket = np.minimum((frac * 3).astype(int), 2)
        margins = {}
        ok = np.isfinite(resid)
        glob = float(np.quantile(resid[ok], self.quantile)) if ok.any() else self.min_margin
        for b in range(3):
            sel = ok & (bucket == b)
            margins[b] = max(self.min_margin, float(np.quantile(resid[sel], self.quantile)) if sel.sum() >= 3 else glob)
        self._model, self._margins, self._fitted_on = model, margins, len(self.samples)

    def predict(self, curve: Sequence[float], epochs: int, *, signals: dict[str, float] | None = None
                ) -> tuple[float, float] | None:
        """(predicted final accuracy, margin) or ``None`` before ``min_samples`` curves."""
        if not self.ready:
            return None
        self.fit()
        x = np.asarray([curve_features(curve, epochs, signals, self._signal_names)], float)
        delta = float(self._model.predict(x)[0])
        frac = len(curve) / epochs
        margin = self._margins.get(min(int(frac * 3), 2), self.min_margin)
        pred = min(1.0, max(0.0, float(curve[-1]) + delta))
        return pred, margin

    # ------------------------------------------------------------------ the rule
    def decide(self, curve: Sequence[float], epochs: int, threshold: float | None, *,
               signals: dict[str, float] | None = None) -> Decision:
        if not curve:
            raise CosearchError("decide needs at least one epoch of the curve")
        k = len(curve)
        p = self.predict(curve, epochs, signals=signals) if k < epochs else None
        if threshold is None or k >= epochs:
            return Decision(False, "none", p[0] if p else None, p[1] if p else None, threshold)
        if p is not None:
            pred, margin = p
            return Decision(pred + margin < threshold, "model", pred, margin, threshold)
        tail = [float(v) for v in curve[-3:]]
        flat = k >= 3 and max(tail) - min(tail) <= self.flat_tol
        stop = flat and max(float(v) for v in curve) + self.flat_margin < threshold
        return Decision(stop, "flat", None, None, threshold)

    def should_stop(self, curve: Sequence[float], front_threshold: float | None, *, epochs: int | None = None,
                    signals: dict[str, float] | None = None) -> bool:
        """True when training should stop (see the module docstring). ``epochs``: the run's
        planned epochs (default: the most common in the samples, else ``len(curve) + 1``)."""
        if epochs is None:  # the most common run length in the samples, else "more epochs to come"
            es = [int(s["epochs"]) for s in self.samples]
            epochs = max(set(es), key=es.count) if es else len(curve) + 1
        return self.decide(curve, epochs, front_threshold, signals=signals).stop

    def config(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "samples": len(self.samples),
                "min_samples": self.min_samples, "min_margin": self.min_margin, "quantile": self.quantile,
                "flat_tol": self.flat_tol, "flat_margin": self.flat_margin, "seed": self.seed, "schema": SCHEMA}


__all__ = ["Decision", "LearningCurvePredictor", "SCHEMA", "TRAIN_DIR_ENV", "curve_features", "default_root",
           "store_path"]
