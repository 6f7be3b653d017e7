"""Pareto front and 2-D hypervolume for accuracy (maximised) × latency (minimised).

Pure maths, no TVM/torch/numpy. A *point* is any sequence whose first two
items are ``(accuracy, latency_ms)``; extra items (e.g. a key, as in the
journal's ``front`` events ``[accuracy, latency_ms, key]``) are ignored.
Points with a non-finite accuracy or latency (NaN, inf, ``None``) are never on
the front, never dominate anything and add no hypervolume.

Hypervolume is computed on normalised objectives (``Objectives.normalize``:
larger is better on both axes, the reference point is ``(0, 0)``, the
"best" corner is ``(1, 1)``), with an exact O(n log n) sweep. The reference
and best values are fixed before a run and written in its config, so
hypervolumes of different runs and strategies with the same ``Objectives``
are comparable; a single point at the best corner gives exactly 1.0.

The best corner is *not* a bound: a training-free score has no maximum known before
the run, and a front point more accurate than ``accuracy_best`` maps above 1, so the
normalised hypervolume can exceed 1. What users read is therefore
``Objectives.area(hv)``: the same hypervolume in the objectives' own units
(accuracy unit × ms, the area the front dominates up to the reference point), with
the accuracy axis named by ``Objectives.accuracy_label`` (``accuracy_label(spec)``
derives it from the estimator spec).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from cosearch.errors import CosearchError

__all__ = ["Objectives", "accuracy_label", "pareto_indices", "dominated", "hypervolume"]

_FIELDS = ("accuracy_ref", "accuracy_best", "latency_ref_ms", "latency_best_ms")


def _num(value: Any) -> float:
    """``float(value)`` or NaN when it is not a number (``None``, a string, ...)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _xy(point: Sequence[Any]) -> tuple[float, float]:
    try:
        return _num(point[0]), _num(point[1])
    except (TypeError, IndexError, KeyError):
        return math.nan, math.nan


def _finite(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b)


def accuracy_label(estimator: str) -> str:
    """What the accuracy axis of a search with ``--estimator estimator`` holds, for people:
    ``"X+train"`` -> ``"validation accuracy"`` (the training rung decides the front),
    ``"table:PATH"`` -> ``"table accuracy (FILE)"`` (whatever the table's ``accuracy`` column
    holds), any other (training-free) estimator ``X`` -> ``"X score"``."""
    spec = str(estimator)
    if spec.endswith("+train") and spec != "+train":  # the spelling of ``SearchConfig.train_rung``
        return "validation accuracy"
    name, sep, path = spec.partition(":")
    if name == "table" and sep:
        return f"table accuracy ({os.path.basename(path) or path})"
    return f"{spec} score"


@dataclass(frozen=True)
class Objectives:
    """Reference and best values of both objectives, fixed before a run.

    ``normalize(acc, lat)`` maps ``(accuracy_ref, latency_ref_ms)`` to ``(0, 0)``
    and ``(accuracy_best, latency_best_ms)`` to ``(1, 1)``; larger is better on
    both axes. Values are not clipped: a point better than "best" maps above 1,
    a point worse than the reference maps below 0 (and adds no hypervolume).
    ``accuracy_label`` names the accuracy axis (``accuracy_label(spec)``); it is
    description only and takes no part in the maths.
    """

    accuracy_ref: float
    accuracy_best: float
    latency_ref_ms: float
    latency_best_ms: float
    accuracy_label: str = "accuracy"

    def __post_init__(self) -> None:
        for name in _FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CosearchError(f"objectives: {name}={v!r} is not a finite number")
            object.__setattr__(self, name, float(v))
        if not self.accuracy_best > self.accuracy_ref:
            raise CosearchError(
                f"objectives: accuracy_best={self.accuracy_best!r} must be greater than "
                f"accuracy_ref={self.accuracy_ref!r}"
            )
        if not self.latency_ref_ms > self.latency_best_ms:
            raise CosearchError(
                f"objectives: latency_best_ms={self.latency_best_ms!r} must be smaller than "
                f"latency_ref_ms={self.latency_ref_ms!r}"
            )
        if self.latency_best_ms < 0:
            raise CosearchError(f"objectives: latency_best_ms={self.latency_best_ms!r} must be >= 0")
        if not isinstance(self.accuracy_label, str) or not self.accuracy_label.strip():
            raise CosearchError(f"objectives: accuracy_label={self.accuracy_label!r} must be a non-empty string")

    def normalize(self, acc: float, lat_ms: float) -> tuple[float, float]:
        a = (_num(acc) - self.accuracy_ref) / (self.accuracy_best - self.accuracy_ref)
        l = (self.latency_ref_ms - _num(lat_ms)) / (self.latency_ref_ms - self.latency_best_ms)
        return a, l

    def area(self, hv: float) -> float:
        """A normalised hypervolume in the objectives' own units (``accuracy_label`` × ms):
        the area the points dominate up to the reference point, no upper bound."""
        return _num(hv) * (self.accuracy_best - self.accuracy_ref) * (self.latency_ref_ms - self.latency_best_ms)

    @property
    def area_units(self) -> str:
        return f"{self.accuracy_label} × ms"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Objectives":
        if not isinstance(d, Mapping):
            raise CosearchError(f"objectives: expected a mapping with keys {', '.join(_FIELDS)}, got {d!r}")
        missing = [k for k in _FIELDS if k not in d]
        if missing:
            raise CosearchError(
                f"objectives: missing {', '.join(missing)} in {dict(d)!r}; expected keys {', '.join(_FIELDS)}"
            )
        label = {"accuracy_label": d["accuracy_label"]} if "accuracy_label" in d else {}
        return cls(**{k: d[k] for k in _FIELDS}, **label)


def pareto_indices(points: Sequence[Sequence[Any]]) -> list[int]:
    """Indices of the non-dominated points (max accuracy, min latency), sorted by
    increasing latency (hence increasing accuracy).

    Of several identical points only the one with the lowest index is kept; a
    point with the same latency as another but lower accuracy (or the same
    accuracy and higher latency) is dominated. Non-finite points are excluded.
    """
    xy = [_xy(p) for p in points]
    order = sorted((i for i, (a, l) in enumerate(xy) if _finite(a, l)), key=lambda i: (xy[i][1], -xy[i][0], i))
    front: list[int] = []
    best_acc = -math.inf
    for i in order:
        if xy[i][0] > best_acc:
            front.append(i)
            best_acc = xy[i][0]
    return front


def dominated(point: Sequence[Any], front_points: Sequence[Sequence[Any]]) -> bool:
    """True when some point of ``front_points`` is at least as good on both
    objectives and strictly better on one. A point equal to a front point is not
    dominated; a non-finite ``point`` is never dominated (no decision on garbage).
    """
    a, l = _xy(point)
    if not _finite(a, l):
        return False
    for q in front_points:
        qa, ql = _xy(q)
        if not _finite(qa, ql):
            continue
        if qa >= a and ql <= l and (qa > a or ql < l):
            return True
    return False


def hypervolume(points: Sequence[Sequence[Any]], objectives: Objectives) -> float:
    """Area dominated by the normalised points and bounded below by the reference
    point ``(0, 0)``; exact, O(n log n). Dominated or duplicate points add nothing,
    points worse than the reference on either axis add nothing, the empty set is 0.
    """
    norm = [objectives.normalize(*_xy(p)) for p in points]
    pts = sorted(((a, l) for a, l in norm if _finite(a, l) and a > 0 and l > 0), reverse=True)
    area = 0.0
    l_max = 0.0
    for a, l in pts:  # decreasing normalised accuracy
        if l > l_max:
            area += a * (l - l_max)
            l_max = l
    return area
