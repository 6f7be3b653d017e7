"""The end of a search run: the front re-measured with the full measurement, its artifacts
exported to ``DIR/pareto/<i>`` (in front order), and ``result.json``'s content (the front,
the counts, and how well the run's predictors did). ``search`` is the run (``loop.Search``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cosearch.search import pareto
from cosearch.search.archive import Rec
from cosearch.search.curves import CONVERGED_TRIALS

RESULT_VERSION = 1


def measure_and_export(search: Any) -> list[Rec]:
    """Each front point measured (final) and exported, in a fresh folder that replaces
    ``DIR/pareto`` at once; the points that measured and exported, ``DIR/pareto/<i>`` each."""
    s = search
    tmp_root = Path(tempfile.mkdtemp(prefix=".pareto-", dir=s.out))
    items = []
    for k in s.front_keys:
        r = s.archive[k]
        m = s.ev.measure(r.arch, final=True)
        s.j.write("measure", key=k, ms=m.ms, pred_ms=r.ms, ok=m.ok, error=m.error, seconds=m.seconds, final=True)
        if not m.ok:
            s.j.write("fail", key=k, stage=m.stage, error=m.error or "final measurement failed")
            continue
        r.final_ms = m.ms
        try:
            # "model" / "schedules" as `cosearch tune` writes them: `cosearch train DIR` accepts the artifact
            s.ev.export(r.arch, tmp_root / str(len(items)), config={
                "search": s.cfg.to_dict(), "arch": r.arch, "space": s.space.config(), "accuracy": r.acc,
                "model": {"kind": "space", "spec": f"{s.space.name}:{r.arch}", "space": s.space.config(),
                          "arch": r.arch},
                "schedules": str(s.schedules.absolute())})
        except Exception as e:  # noqa: BLE001
            s.j.write("fail", key=k, stage="export", error=str(e).splitlines()[0][:300] if str(e) else "export")
            continue
        items.append(r)
    pdir = s.out / "pareto"
    if pdir.exists():
        shutil.rmtree(pdir)
    os.replace(tmp_root, pdir)
    return items


def keep_front(pdir: Path, items: list[Rec]) -> list[Rec]:
    """The front of ``items`` on their final measurements; its artifacts renumbered
    ``pdir/0..n-1`` in front order, the others' removed."""
    idx = pareto.pareto_indices([(r.acc, r.final_ms) for r in items])
    front = []
    for j, i in enumerate(idx):
        if i != j:
            os.replace(pdir / str(i), pdir / f"{j}.tmp")
        front.append(items[i])
    for j in range(len(idx)):
        if (pdir / f"{j}.tmp").exists():
            if (pdir / str(j)).exists():
                shutil.rmtree(pdir / str(j))
            os.replace(pdir / f"{j}.tmp", pdir / str(j))
    for extra in range(len(idx), len(items)):
        if (pdir / str(extra)).exists():
            shutil.rmtree(pdir / str(extra))
    return front


def result(search: Any, front: list[Rec], hv: float) -> dict[str, Any]:
    """``result.json`` (version ``RESULT_VERSION``)."""
    s = search
    c = s.counts()
    return {
        "version": RESULT_VERSION,
        "strategy": s.cfg.strategy,
        "accuracy_fidelity": (f"train:{s.cfg.train_epochs}:{s.cfg.train_data}" if s.cfg.train_rung
                              else s.cfg.estimator),
        "pareto": [{"arch": r.arch, "key": r.key, "accuracy": r.acc, "latency_ms": r.final_ms,
                    "latency_search_ms": r.ms, "latency_pred_ms": r.lat_pred_ms,
                    "artifact": f"pareto/{i}", "trained": None} for i, r in enumerate(front)],
        "hypervolume": hv,
        "hypervolume_search": s.hv,
        "objectives": s.obj.to_dict(),
        "proposed": s.n_proposed,
        "evaluated": c["evaluated"],
        "stopped_early": c["stopped"],
        "failed": c["failed"],
        "trials": s.trials,
        "wall_s": s.now(),
        "latency_calibration": s.cal.summary() | {
            "arch_prediction_log_rmse": (math.sqrt(sum(v * v for v in s.arch_err) / len(s.arch_err))
                                         if s.arch_err else None),
            "arch_prediction_n": len(s.arch_err),
            "note": "arch_prediction: latency predicted from plan + database + task model before tuning, "
                    "vs the measurement after the arch's first tuning step"},
        "training": training_summary(s),
        "predictors": {"accuracy": s.apred.summary(),
                       "task_latency": {"samples": len(s.tpred.y), "warm_samples": s.tpred.warm,
                                        "online_log_rmse": s.tpred.err_std()},
                       "tuning_curves": curve_summary(s)},
        "front_vs_converged": front_vs_converged(s, front),
    }


def training_summary(search: Any) -> dict[str, Any] | None:
    """The training rung's cost and what its early stop saved (None without the rung)."""
    s = search
    if not s.cfg.train_rung:
        return None
    return {"epochs": s.cfg.train_epochs, "data": s.cfg.train_data, "seconds": round(s.train_seconds, 3),
            "epochs_run": s.epochs_run, "epochs_planned": s.epochs_planned,
            "epochs_saved_share": (1 - s.epochs_run / s.epochs_planned) if s.epochs_planned else 0.0,
            "trained": sum(1 for r in s.archive.values() if r.acc is not None),
            "stopped": s.n_train_stopped}


def curve_summary(search: Any) -> dict[str, Any]:
    """Online errors of the curve model (each tuning outcome predicted before it was known)."""
    s = search
    out: dict[str, Any] = {"curves": len(s.book.curves), "warm_curves": s.book.warm}
    for name, sel in (("anchored", True), ("unanchored", False)):
        e = [(err, cov) for a, err, cov in s.curve_err if a == sel]
        out[name] = {"n": len(e), "log_rmse": math.sqrt(sum(v * v for v, _ in e) / len(e)) if e else None,
                     "bound_coverage": sum(1 for _, c in e if c) / len(e) if e else None}
    return out


def front_vs_converged(search: Any, recs: list[Rec]) -> dict[str, Any]:
    """How far the front's kernels are from converged: per point, its weighted kernel sum now
    over the curve model's prediction after ``CONVERGED_TRIALS`` trials per task (1.0: nothing
    left to gain). Predicted, not measured: the optimistic bound says how low it may go."""
    s = search
    now_conv, now_low = [], []
    for r in recs:
        now = conv = low = 0.0
        for t in r.tasks:
            st = s.state.get(t.workload)
            if st is None or st.best_us is None:
                continue
            p = s.book.model.predict(s.curve_of(t.workload), CONVERGED_TRIALS)
            now += t.weight * st.best_us
            conv += t.weight * min(st.best_us, p.us)
            low += t.weight * min(st.best_us, p.low_us)
        if conv > 0:
            now_conv.append(now / conv)
            now_low.append(now / low)
    med = lambda v: sorted(v)[len(v) // 2] if v else None  # noqa: E731
    return {"points": len(now_conv), "median": med(now_conv), "max": max(now_conv) if now_conv else None,
            "median_vs_optimistic": med(now_low), "trials_per_task": CONVERGED_TRIALS,
            "note": "kernel sum now / predicted after tuning to convergence (cosearch.search.curves)"}
