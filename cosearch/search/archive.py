"""The search's record of one architecture (``Rec``, one per isomorphism key in
``Search.archive``): what each stage learned about it and its status."""

from __future__ import annotations

from dataclasses import dataclass, field

from cosearch.search import pareto
from cosearch.search.evaluator import Task


@dataclass
class Rec:
    arch: str
    key: str
    n: int
    status: str = "pending"  # pending | evaluated | stopped | failed
    tasks: list[Task] = field(default_factory=list)
    flops: float = 0.0
    acc: float | None = None  # full estimator (with the training rung: trained validation accuracy)
    score: float | None = None  # the cheap estimator's score (training rung only; else it is ``acc``)
    acc_pred: float | None = None
    lat_pred_ms: float | None = None
    ms: float | None = None  # last end-to-end measurement (search measure)
    sum_at_measure: float | None = None  # kernel sum ms when measured
    final_ms: float | None = None
    proxy: float | None = None


def measured_front(archive: dict[str, Rec], obj: pareto.Objectives) -> tuple[list[str], float]:
    """The keys of the Pareto front of the evaluated archs with a measured latency and an
    accuracy, and its hypervolume (``obj``'s reference point) over all of them."""
    recs = [r for r in archive.values() if r.status == "evaluated" and r.acc is not None and r.ms is not None]
    pts = [(r.acc, r.ms) for r in recs]
    return [recs[i].key for i in pareto.pareto_indices(pts)], pareto.hypervolume(pts, obj)
