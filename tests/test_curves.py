"""The tuning-curve model (``cosearch.search.curves``): curve bookkeeping, and its held-out error
on the recorded curves of the committed NB201 benchmark, under bounds today's feature model
(``predictors.TaskLatencyPredictor``) does not meet."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from cosearch.search.curves import HORIZONS, MAX_TRIALS, CurveModel, TaskCurve, curves_from_samples

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "results" / "cobench-nb201-host--znver3-2c-3afece49"


def _curve(points, **kw) -> TaskCurve:
    return TaskCurve("w", kw.pop("op", "conv2d"), kw.pop("flops", 1e6), kw.pop("elements", 1e4), tuple(points), **kw)


def test_curve_bookkeeping():
    c = _curve([(8, 10.0), (16, 8.0), (32, 7.5)])
    assert c.best_at(7) is None and c.best_at(8) == 10.0 and c.best_at(31) == 8.0 and c.best_at(999) == 7.5
    assert c.known_at(32) and not c.known_at(33)
    assert _curve(c.points, converged=True).known_at(500)
    assert c.upto(20).points == ((8, 10.0), (16, 8.0))
    d = c.with_point(64, 9.0)  # the best so far never gets worse
    assert d.points[-1] == (64, 7.5)
    assert c.with_point(16, 5.0).points == ((8, 10.0), (16, 5.0))  # later points are replaced
    assert _curve([], op="pool", flops=0.0, elements=300.0).work == 300.0


def test_exhausted_and_cold_predictions():
    m = CurveModel(seed=0).fit([])
    p = m.predict(_curve([(1, 3.0)], exhausted=True), 64)
    assert p.us == p.low_us == 3.0 and p.source == "exhausted"  # no candidate left: no gain
    p = m.predict(_curve([(8, 10.0)]), 64)
    assert p.source == "anchored-prior" and p.low_us < p.us < 10.0
    p = m.predict(_curve([]), 32)
    assert p.source == "prior" and 0 < p.low_us < p.us
    with pytest.raises(ValueError, match="coverage"):
        CurveModel(coverage=1.5)


def test_curves_from_samples_skips_old_lines():
    rows = [{"v": 1, "x": [0.0], "trials": 8, "us": 5.0},  # an older line: no task identity
            {"v": 1, "workload": "a", "op": "conv2d", "flops": 1e6, "elements": 1e3, "trials": 16, "us": 4.0},
            {"v": 1, "workload": "a", "op": "conv2d", "flops": 1e6, "elements": 1e3, "trials": 8, "us": 6.0},
            {"v": 1, "workload": "a", "op": "conv2d", "flops": 1e6, "elements": 1e3, "trials": 24, "us": 4.5}]
    got = curves_from_samples(rows)
    assert list(got) == ["a"] and got["a"].points == ((8, 6.0), (16, 4.0), (24, 4.0))


@pytest.fixture(scope="module")
def held_out():
    """Every 4th searched workload of the benchmark held out; both models trained on the rest."""
    from cosearch.cobench.store import Bench
    from cosearch.search.evaluator import Task
    from cosearch.search.predictors import TaskLatencyPredictor

    bench = Bench(BENCH)
    curves = bench.task_curves()
    searched = sorted({c.workload for c in curves if not c.exhausted and len(c.points) > 1})
    held = set(searched[::4])
    train = [c for c in curves if c.workload not in held]
    model = CurveModel(seed=0).fit(train)

    def task(c):
        ti = bench.task_info[c.workload]
        return Task(c.workload, 1, ti["op"], float(ti["flops"]), tuple(tuple(s) for s in ti["shapes"]), ti["name"])

    old = TaskLatencyPredictor(0, None)
    old.refit_every = 100
    for c in train:
        for n, us in c.points:
            old.add(task(c), n, us)
    out = {"anchored": [], "unanchored": [], "covered": [], "old_anchored": [], "old_unanchored": []}
    for c in curves:
        if c.workload not in held:
            continue
        for n in [0] + [t for t, _ in c.points if t <= 128]:
            for h in HORIZONS:
                total = n + h
                if total > MAX_TRIALS or not c.known_at(total):
                    continue
                truth = c.best_at(max(total, c.points[0][0]))
                hist = c.upto(n)
                p = model.predict(hist, total)
                if n:
                    out["anchored"].append(math.log(p.us / truth))
                    out["covered"].append(p.low_us <= truth)
                    out["old_anchored"].append(math.log(hist.points[-1][1] * old.gain_ratio(task(c), n, h) / truth))
                else:
                    out["unanchored"].append(math.log(p.us / truth))
                    out["old_unanchored"].append(math.log(old.predict(task(c), total) / truth))
    return out


def _rmse(e) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


def test_held_out_error_beats_the_feature_model(held_out):
    assert len(held_out["anchored"]) > 500 and len(held_out["unanchored"]) > 30
    # measured when written: anchored 0.133 (features 0.208), unanchored 0.377 (features 0.439)
    assert _rmse(held_out["anchored"]) < 0.17 < _rmse(held_out["old_anchored"])
    assert _rmse(held_out["unanchored"]) < 0.41 < _rmse(held_out["old_unanchored"])


def test_optimistic_bound_covers_held_out_truth(held_out):
    cov = float(np.mean(held_out["covered"]))
    assert cov >= 0.88  # measured 0.914; the search needs >= 0.9 over all tasks (bench/results/gain_predictor.json)


def test_fit_is_deterministic_under_a_seed():
    from cosearch.cobench.store import Bench

    curves = Bench(BENCH).task_curves()
    a = CurveModel(seed=3).fit(curves)
    b = CurveModel(seed=3).fit(curves)
    q = [(c.upto(n), n + 32) for c in curves[:10] for n, _ in c.points[:3]]
    assert [a.predict(h, t) for h, t in q] == [b.predict(h, t) for h, t in q]


def test_gain_predictor_bench_writes_results(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.gain_predictor import main

    out = tmp_path / "gp.json"
    assert main(["--bench", str(BENCH), "--out", str(out)]) == 0
    import json

    d = json.loads(out.read_text())
    assert d["benchmark"]["machine_key"] and d["machine"]["cpu"] and d["config"]["bench"] == str(BENCH)
    rows = {(r["tasks"], r["question"]): r for r in d["rows"]}
    assert rows[("searched", "anchored (n>0)")]["curve_log_rmse"] < rows[("searched", "anchored (n>0)")]["features_log_rmse"]
    assert d["priors"]["anchored_per_doubling"] and d["priors"]["rate_at_convergence"]["compute"]["curves"] > 0
    assert main(["--bench", str(tmp_path / "nope")]) == 2


def test_a_runs_short_curves_predict_convergence_with_the_prior_beyond_their_reach():
    """Online, the anchored model learns from the run's own curves, all cut at the trials the run
    spent (32 per task before the finish): extrapolated to 256 trials it underestimated late gains.
    Beyond its training reach (``horizon``) the prediction continues with the cross-task prior.
    Scored on the benchmark's curves cut at 32 trials, one tuning seed per run, best after 256."""
    from dataclasses import replace

    from cosearch.cobench.store import Bench

    curves = Bench(BENCH).task_curves()
    errs, extrapolated, covered = [], [], []
    for seed in (0, 1):
        by_wl: dict[str, list[TaskCurve]] = {}
        for c in curves:
            by_wl.setdefault(c.workload, []).append(c)
        run = [v[seed % len(v)] for _w, v in sorted(by_wl.items())]
        cut = [replace(c, points=tuple(p for p in c.points if p[0] <= 32), converged=False) for c in run]
        model = CurveModel(seed=0).fit(cut)
        assert model.horizon == 32
        for full, hist in zip(run, cut):
            if full.exhausted or not hist.points:
                continue
            truth = full.best_at(256)
            p = model.predict(hist, 256)
            errs.append(math.log(p.us / truth))
            covered.append(p.low_us <= truth)
            model.horizon = MAX_TRIALS  # as before: the model extrapolated from its short curves
            model._memo.clear()
            extrapolated.append(math.log(model.predict(hist, 256).us / truth))
            model.horizon = 32
            model._memo.clear()
    assert len(errs) == 36
    # measured when written: 0.197 (seeds 0 / 1: 0.217 / 0.174) against 0.251 extrapolated
    assert _rmse(errs) < 0.23 < _rmse(extrapolated)
    assert np.mean(covered) >= 0.9  # measured 0.97
