"""``XGBStop``: an early-stop rule that predicts what more trials would gain.

An XGBoost regressor, trained on the per-task tuning histories kept beside schedule
databases (``<db>/tasks.jsonl``, ``cosearch.compile.storage.history``; across tasks and
runs), predicts from a task's features and its progress the relative gain of the
best latency after ``horizon`` more trials::

    gain = log(best_us_now / best_us_after_horizon_more_trials)      (>= 0)

The rule stops a task when the predicted gain is below ``threshold`` (with
``weighted=True``: when the predicted µs saved per inference,
``weight * best_us * (1 - exp(-gain))``, is below ``threshold`` µs). It is asked
before a task's first batch too: a task with prior trials whose predicted gain is
below the threshold is not tuned in this run. A task with no measured candidate
yet (``best_us`` infinite) is never stopped. Without a model (too few training
samples) it behaves as the ``stall`` rule and says so in ``config()``.

Features (``FEATURES``; one function, ``featurize``, for training and prediction,
so the two cannot drift apart): op-kind one-hot, log FLOPs, log weight, buffer
count and log sizes of the output / largest input, log trials (all runs / this
run), log best µs, log achieved GFLOP/s, the log-gain of the best over the last
1 and 2 batches (missing when there are fewer), error fraction of this run, log
batch size.

Training samples (``samples``): every batch of every workload in the history
files, replayed run by run into the ``TaskProgress`` the engine would have
passed (and the point before a run's first batch when earlier runs exist); the
label needs the workload's curve to reach ``horizon`` more trials (later points
are censored and skipped).

On disk (default ``<db>/stop_model.json``, written by ``save``/``refit_and_save``;
both files atomically, the booster first)::

    stop_model.json          {"v": 1, "kind": "xgb", "features": [...], "threshold": ..,
                              "horizon": .., "weighted": .., "n_samples": .., "n_workloads": ..,
                              "holdout": {...}, "params": {...}, "booster": "stop_model.booster.json",
                              "booster_sha256": "...", "targets": [...], "created": "..."}
    stop_model.booster.json  xgboost's own JSON model (``Booster.save_model``)

Deterministic: fixed ``nthread``, ``seed``, ``hist`` trees; same histories and
seed give the same booster.
"""

from __future__ import annotations

from cosearch.fsio import atomic_write_bytes as _atomic_write_bytes

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from cosearch.compile.plan import OP_KINDS, TaskFeatures
from cosearch.compile.tuning.stop.rule import EarlyStopRule, Stall, TaskProgress
from cosearch.errors import CosearchError

VERSION = 1
MODEL_FILE = "stop_model.json"
FEATURES = (
    *(f"op_{k}" for k in OP_KINDS),
    "log_flops",
    "log_weight",
    "n_buffers",
    "log_out_elems",
    "log_max_in_elems",
    "log_trials_total",
    "log_trials_run",
    "log_best_us",
    "log_gflops",
    "gain_last_1",
    "gain_last_2",
    "error_frac",
    "log_batch",
)
#: XGBoost settings: small data (hundreds to thousands of rows), shallow trees.
PARAMS = {
    "objective": "reg:squarederror",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.9,
    "min_child_weight": 2.0,
    "tree_method": "hist",
    "nthread": 1,
}
NUM_ROUNDS = 150


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= max(int(s), 1)
    return n


def _best_seq(progress: TaskProgress) -> list[float]:
    """Best µs so far after each batch, the prior best first (running minimum)."""
    seq, best = [], math.inf
    if progress.prior_best_us is not None and math.isfinite(progress.prior_best_us):
        best = float(progress.prior_best_us)
        seq.append(best)
    for h in progress.history:
        if math.isfinite(h):
            best = min(best, float(h))
        seq.append(best)
    return seq


def _log_gain(before: float, now: float) -> float:
    if not (math.isfinite(before) and math.isfinite(now)) or now <= 0 or before <= 0:
        return math.nan
    return math.log(before / now)


def featurize(task: TaskFeatures, progress: TaskProgress) -> list[float]:
    """The model's input row (``FEATURES`` order); NaN = missing (XGBoost handles it)."""
    op = task.op_kind if task.op_kind in OP_KINDS else "other"
    row = [1.0 if op == k else 0.0 for k in OP_KINDS]
    shapes = [tuple(s) for s in task.shapes]
    out_elems = _prod(shapes[-1]) if shapes else 0
    in_elems = max((_prod(s) for s in shapes[:-1]), default=0)
    best = progress.best_us
    total = progress.prior_trials + progress.trials
    seq = _best_seq(progress)
    row += [
        math.log1p(max(task.flops, 0.0)),
        math.log(max(task.weight, 1)),
        float(len(shapes)),
        math.log1p(out_elems),
        math.log1p(in_elems),
        math.log1p(total),
        math.log1p(progress.trials),
        math.log(best) if math.isfinite(best) and best > 0 else math.nan,
        math.log((task.flops + 1.0) / (best * 1e3)) if math.isfinite(best) and best > 0 else math.nan,
        _log_gain(seq[-2], seq[-1]) if len(seq) >= 2 else math.nan,
        _log_gain(seq[-3], seq[-1]) if len(seq) >= 3 else math.nan,
        progress.errors / progress.trials if progress.trials > 0 else math.nan,
        math.log(progress.batch_size) if progress.batch_size > 0 else math.nan,
    ]
    return row


def task_features(workload: str, fields: dict[str, Any]) -> TaskFeatures:
    """``TaskFeatures`` from a history file's ``"task"`` event (``WorkloadHistory.features``)."""
    shapes = fields.get("shapes") or []
    try:
        shp = tuple(tuple(int(x) for x in s) for s in shapes)
    except (TypeError, ValueError):
        shp = ()
    return TaskFeatures(
        name=str(fields.get("name", "")),
        workload=workload,
        op_kind=str(fields.get("op", fields.get("op_kind", "other")) or "other"),
        shapes=shp,
        flops=float(fields.get("flops", 0.0) or 0.0),
        weight=int(fields.get("weight", 1) or 1),
        target=str(fields.get("target", "") or ""),
    )


def _num(x: Any) -> float:
    return math.inf if x is None else float(x)


def replay(batches: Sequence[dict[str, Any]]) -> Iterable[tuple[TaskProgress, int, float]]:
    """Replay a workload's ``"batch"`` events (file order) into the decision points the
    engine asks a rule about: ``(progress, cumulative trials, best µs)`` after each batch,
    plus the point before the first batch of every run that has earlier trials."""
    total, best = 0, math.inf
    run, progress = object(), None
    for b in batches:
        if b.get("run") != run:  # a new run starts: priors are what earlier runs left
            run = b.get("run")
            batch_size = max(int(x.get("trials", 0) or 0) for x in batches if x.get("run") == run)
            prior_best = best if math.isfinite(best) else None
            progress = TaskProgress(prior_trials=total, prior_best_us=prior_best, batch_size=batch_size)
            if total > 0:
                yield _copy(progress), total, best
        assert progress is not None
        n = int(b.get("trials", 0) or 0)
        progress.trials += n
        progress.errors += int(b.get("errors", 0) or 0)
        total += n
        bb = _num(b.get("batch_best_us"))
        run_best = min([h for h in progress.history if math.isfinite(h)] + [bb], default=math.inf)
        progress.history.append(run_best)
        best = min(best, bb, _num(b.get("best_us")))
        yield _copy(progress), total, best


def _copy(p: TaskProgress) -> TaskProgress:
    return TaskProgress(trials=p.trials, errors=p.errors, history=list(p.history), prior_trials=p.prior_trials,
                        prior_best_us=p.prior_best_us, batch_size=p.batch_size)


def samples(histories: dict[str, Any], horizon: int) -> tuple[list[list[float]], list[float], list[str]]:
    """Training rows, labels (log gain after ``horizon`` more trials) and workload keys."""
    X, y, groups = [], [], []
    for key, h in histories.items():
        feats = task_features(h.workload, h.features)
        points = list(replay(h.batches))
        curve = [(t, b) for _, t, b in points]
        for progress, t, best in points:
            if not math.isfinite(best) or best <= 0:
                continue
            if not curve or curve[-1][0] < t + horizon:
                continue  # censored: the history ends before the horizon
            after = min((b for tt, b in curve if tt <= t + horizon), default=best)
            X.append(featurize(feats, progress))
            y.append(math.log(best / min(after, best)))
            groups.append(key)
    return X, y, groups


def _history_dirs(history_files: Iterable[str | os.PathLike]) -> list[Path]:
    from cosearch.compile.storage.history import HISTORY_FILE

    dirs = []
    for f in history_files:
        p = Path(f)
        if p.is_dir():
            dirs.append(p)
        elif p.name == HISTORY_FILE and p.exists():
            dirs.append(p.parent)
        else:
            raise CosearchError(f"XGBStop.fit: {str(p)!r} is neither a schedule database folder nor an existing "
                                f"{HISTORY_FILE} file")
    return dirs


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return None if r is None or not math.isfinite(r) else round(float(r), 4)


class XGBStop(EarlyStopRule):
    """Stop a task when the predicted gain of ``horizon`` more trials is below ``threshold``.

    ``XGBStop(path=...)`` loads a saved model; ``XGBStop().fit(files)`` trains one. With no
    model the ``stall`` rule (``patience``, ``min_gain``) decides."""

    takes_patience = True

    kind = "xgb"

    def __init__(
        self,
        *,
        threshold: float = 0.03,
        horizon: int = 16,
        weighted: bool = False,
        min_samples: int = 50,
        seed: int = 0,
        patience: int = 4,
        min_gain: float = 0.03,
        path: str | os.PathLike | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or threshold < 0:
            raise CosearchError(f"xgb rule: threshold must be a non-negative number, got {threshold!r}")
        for name, v in (("horizon", horizon), ("min_samples", min_samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise CosearchError(f"xgb rule: {name} must be a positive integer, got {v!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise CosearchError(f"xgb rule: seed must be a non-negative integer, got {seed!r}")
        if not isinstance(weighted, bool):
            raise CosearchError(f"xgb rule: weighted must be true or false, got {weighted!r}")
        self.threshold = float(threshold)
        self.horizon = horizon
        self.weighted = weighted
        self.min_samples = min_samples
        self.seed = seed
        self.fallback = Stall(patience=patience, min_gain=min_gain)
        self.booster = None
        self.n_samples = 0
        self.n_workloads = 0
        self.holdout: dict[str, Any] = {}
        self.targets: list[str] = []
        self.path: str | None = None
        self.note = "no model yet"
        if path is not None:
            self._load_into(Path(path))

    # -- the rule -----------------------------------------------------------------------
    def predict_gain(self, task: TaskFeatures, progress: TaskProgress) -> float | None:
        """Predicted log gain after ``horizon`` more trials (None: no model or no best yet)."""
        if self.booster is None or not math.isfinite(progress.best_us):
            return None
        return self._predict([featurize(task, progress)])[0]

    def score(self, task: TaskFeatures, progress: TaskProgress) -> float | None:
        """What the threshold is compared with: the gain, or µs saved per inference if weighted."""
        g = self.predict_gain(task, progress)
        if g is None:
            return None
        if self.weighted:
            return max(task.weight, 1) * progress.best_us * (1.0 - math.exp(-max(g, 0.0)))
        return g

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        if self.booster is None:
            return self.fallback.should_stop(task, progress)
        s = self.score(task, progress)
        return s is not None and s < self.threshold

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"kind": self.kind, "threshold": self.threshold, "horizon": self.horizon,
                               "weighted": self.weighted, "seed": self.seed, "min_samples": self.min_samples}
        if self.booster is None:
            cfg["fallback"] = self.fallback.config()
            cfg["note"] = f"{self.note}: the stall rule decides"
        else:
            cfg.update(n_samples=self.n_samples, n_workloads=self.n_workloads, holdout=self.holdout)
        if self.path is not None:
            cfg["path"] = self.path
        return cfg

    # -- training -----------------------------------------------------------------------
    def _predict(self, rows: list[list[float]]) -> list[float]:
        import numpy as np
        import xgboost as xgb

        dm = xgb.DMatrix(np.asarray(rows, dtype=float), feature_names=list(FEATURES), missing=math.nan)
        return [float(v) for v in self.booster.predict(dm)]

    def _train(self, X: list[list[float]], y: list[float]):
        import numpy as np
        import xgboost as xgb

        dm = xgb.DMatrix(np.asarray(X, dtype=float), label=np.asarray(y, dtype=float),
                         feature_names=list(FEATURES), missing=math.nan)
        return xgb.train({**PARAMS, "seed": self.seed}, dm, num_boost_round=NUM_ROUNDS)

    def fit(self, history_files: Iterable[str | os.PathLike]) -> "XGBStop":
        """Train on the histories of these databases (folders or their ``tasks.jsonl``).
        With fewer than ``min_samples`` labelled points the rule keeps no model (stall fallback)."""
        from cosearch.compile.storage.history import summarize

        histories: dict[str, Any] = {}
        targets: set[str] = set()
        for d in _history_dirs(history_files):
            for w, h in summarize(d).items():
                histories[f"{d}::{w}"] = h
                if h.features.get("target"):
                    targets.add(str(h.features["target"]))
        X, y, groups = samples(histories, self.horizon)
        self.n_samples, self.n_workloads = len(y), len(set(groups))
        self.targets = sorted(targets)
        self.path = None
        if len(y) < self.min_samples:
            self.booster, self.holdout = None, {}
            self.note = f"too few samples ({len(y)} < min_samples {self.min_samples})"
            return self
        self.holdout = self._holdout(X, y, groups)
        self.booster = self._train(X, y)
        self.note = ""
        return self

    def _holdout(self, X, y, groups) -> dict[str, Any]:
        """Grouped 5-fold cross-validation: each workload's points are predicted by a model
        fit without that workload (folds by a hash of the workload key: deterministic).
        Reports the rank correlation of predicted vs actual gain and the mean absolute
        error, next to that of always predicting the mean gain."""
        def fold(g: str) -> int:
            return int(hashlib.sha256(f"{self.seed}:{g}".encode()).hexdigest()[:8], 16) % 5

        keys = sorted(set(groups))
        if len(keys) < 5:
            return {"n_test": 0, "note": f"too few workloads ({len(keys)}) for a grouped 5-fold split"}
        folds = {g: fold(g) for g in keys}
        pred = [math.nan] * len(y)
        saved = self.booster
        try:
            for f in range(5):
                tr = [i for i, g in enumerate(groups) if folds[g] != f]
                te = [i for i, g in enumerate(groups) if folds[g] == f]
                if not te or not tr:
                    continue
                self.booster = self._train([X[i] for i in tr], [y[i] for i in tr])
                for i, v in zip(te, self._predict([X[i] for i in te])):
                    pred[i] = v
        finally:
            self.booster = saved
        idx = [i for i, v in enumerate(pred) if math.isfinite(v)]
        actual = [y[i] for i in idx]
        mean = sum(actual) / len(actual)
        return {"method": "grouped 5-fold CV", "n_test": len(idx), "workloads": len(keys),
                "spearman": _spearman([pred[i] for i in idx], actual),
                "mae_log_gain": round(sum(abs(pred[i] - y[i]) for i in idx) / len(idx), 5),
                "mae_mean_predictor": round(sum(abs(mean - a) for a in actual) / len(actual), 5)}

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the booster (``<stem>.booster.json``) then the sidecar ``path``, atomically."""
        if self.booster is None:
            raise CosearchError(f"xgb rule: nothing to save to {str(path)!r}: {self.note}")
        p = Path(path)
        if p.suffix != ".json":
            raise CosearchError(f"xgb rule: model path must end in .json, got {str(p)!r}")
        p.parent.mkdir(parents=True, exist_ok=True)
        booster_path = p.with_name(p.stem + ".booster.json")
        raw = bytes(self.booster.save_raw(raw_format="json"))
        _atomic_write_bytes(booster_path, raw)
        side = {
            "v": VERSION, "kind": self.kind, "features": list(FEATURES), "threshold": self.threshold,
            "horizon": self.horizon, "weighted": self.weighted, "seed": self.seed, "min_samples": self.min_samples,
            "n_samples": self.n_samples, "n_workloads": self.n_workloads, "holdout": self.holdout,
            "targets": self.targets, "params": {**PARAMS, "num_rounds": NUM_ROUNDS},
            "booster": booster_path.name, "booster_sha256": hashlib.sha256(raw).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _atomic_write_bytes(p, (json.dumps(side, indent=1) + "\n").encode())
        self.path = str(p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> "XGBStop":
        """A rule from a saved model; ``overrides`` (e.g. ``threshold``) replace saved settings."""
        p = Path(path)
        side = cls._read_sidecar(p)
        kw = {k: side[k] for k in ("threshold", "horizon", "weighted", "seed", "min_samples") if k in side}
        if "horizon" in overrides and overrides["horizon"] != kw.get("horizon"):
            raise CosearchError(f"xgb rule: {str(p)!r} predicts the gain of {kw.get('horizon')} more trials, "
                                f"not {overrides['horizon']!r}; refit it with that horizon")
        kw.update(overrides)
        return cls(**kw, path=p)

    @staticmethod
    def _read_sidecar(p: Path) -> dict[str, Any]:
        try:
            side = json.loads(p.read_text())
        except FileNotFoundError:
            raise CosearchError(f"xgb rule: no model file {str(p)!r}") from None
        except (OSError, ValueError) as e:
            raise CosearchError(f"xgb rule: cannot read model file {str(p)!r}: {e}") from None
        if not isinstance(side, dict) or side.get("v") != VERSION or side.get("kind") != "xgb":
            raise CosearchError(f"xgb rule: {str(p)!r} is not a version-{VERSION} xgb stop model")
        if side.get("features") != list(FEATURES):
            raise CosearchError(f"xgb rule: {str(p)!r} was trained on other features; refit it")
        return side

    def _load_into(self, p: Path) -> None:
        import xgboost as xgb

        side = self._read_sidecar(p)
        bp = p.with_name(str(side.get("booster", "")))
        try:
            raw = bp.read_bytes()
        except OSError as e:
            raise CosearchError(f"xgb rule: cannot read booster {str(bp)!r}: {e.strerror or e}") from None
        if hashlib.sha256(raw).hexdigest() != side.get("booster_sha256"):
            raise CosearchError(f"xgb rule: booster {str(bp)!r} does not match {str(p)!r} (checksum); refit it")
        bst = xgb.Booster(params={"nthread": PARAMS["nthread"]})
        bst.load_model(bytearray(raw))
        self.booster = bst
        self.n_samples = int(side.get("n_samples", 0))
        self.n_workloads = int(side.get("n_workloads", 0))
        self.holdout = dict(side.get("holdout") or {})
        self.targets = list(side.get("targets") or [])
        self.path = str(p)
        self.note = ""

    @classmethod
    def for_database(cls, database_dir: str | os.PathLike, **kw: Any) -> "XGBStop":
        """The rule the engine uses for a database: its saved model if there is one, else
        an unfitted rule (stall fallback)."""
        p = Path(database_dir) / MODEL_FILE
        return cls.load(p, **kw) if p.exists() else cls(**kw)


def refit_and_save(database_dir: str | os.PathLike, **kw: Any) -> XGBStop | None:
    """Refit the rule on ``<database_dir>/tasks.jsonl`` and save it to
    ``<database_dir>/stop_model.json``; None (nothing written) with too few samples."""
    from cosearch.compile.storage.history import HISTORY_FILE

    d = Path(database_dir)
    if not (d / HISTORY_FILE).exists():
        return None
    rule = XGBStop(**kw).fit([d])
    if rule.booster is None:
        return None
    rule.save(d / MODEL_FILE)
    return rule
