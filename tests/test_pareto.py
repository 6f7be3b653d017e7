"""Pareto front, dominance and 2-D hypervolume against hand-computed cases."""

from __future__ import annotations

import json
import math
import random

import pytest

from cosearch.errors import CosearchError
from cosearch.search.pareto import Objectives, accuracy_label, dominated, hypervolume, pareto_indices

# a = acc / 100, l = (10 - lat) / 10: easy to compute by hand.
OBJ = Objectives(accuracy_ref=0.0, accuracy_best=100.0, latency_ref_ms=10.0, latency_best_ms=0.0)


# ---------------------------------------------------------------- Objectives
def test_normalize_maths():
    o = Objectives(accuracy_ref=0.6, accuracy_best=0.9, latency_ref_ms=20.0, latency_best_ms=5.0)
    assert o.normalize(0.6, 20.0) == pytest.approx((0.0, 0.0))
    assert o.normalize(0.9, 5.0) == pytest.approx((1.0, 1.0))
    assert o.normalize(0.75, 12.5) == pytest.approx((0.5, 0.5))
    # not clipped: better than best > 1, worse than reference < 0
    assert o.normalize(1.05, 2.0) == pytest.approx((1.5, 1.2))
    assert o.normalize(0.45, 35.0) == pytest.approx((-0.5, -1.0))


def test_objectives_round_trip_and_validation():
    o = Objectives(accuracy_ref=0.6, accuracy_best=0.9, latency_ref_ms=20, latency_best_ms=5)
    d = o.to_dict()
    assert d == {"accuracy_ref": 0.6, "accuracy_best": 0.9, "latency_ref_ms": 20.0, "latency_best_ms": 5.0,
                 "accuracy_label": "accuracy"}
    assert Objectives.from_dict(json.loads(json.dumps(d))) == o
    # objectives written before the axis had a name still load (as "accuracy")
    old = {k: v for k, v in d.items() if k != "accuracy_label"}
    assert Objectives.from_dict(old) == o
    named = Objectives.from_dict(d | {"accuracy_label": "naswot score"})
    assert named.accuracy_label == "naswot score" and named.normalize(0.75, 12.5) == o.normalize(0.75, 12.5)
    with pytest.raises(CosearchError, match="accuracy_label"):
        Objectives(accuracy_ref=0.6, accuracy_best=0.9, latency_ref_ms=20, latency_best_ms=5, accuracy_label="")
    with pytest.raises(CosearchError, match="latency_best_ms"):
        Objectives.from_dict({"accuracy_ref": 0.6, "accuracy_best": 0.9, "latency_ref_ms": 20})
    with pytest.raises(CosearchError, match="accuracy_best"):
        Objectives(accuracy_ref=0.9, accuracy_best=0.6, latency_ref_ms=20, latency_best_ms=5)
    with pytest.raises(CosearchError, match="latency_best_ms"):
        Objectives(accuracy_ref=0.6, accuracy_best=0.9, latency_ref_ms=5, latency_best_ms=20)
    with pytest.raises(CosearchError, match="nan"):
        Objectives(accuracy_ref=float("nan"), accuracy_best=0.9, latency_ref_ms=20, latency_best_ms=5)
    with pytest.raises(CosearchError, match="mapping"):
        Objectives.from_dict([0.6, 0.9, 20, 5])


@pytest.mark.parametrize("spec, label", [
    ("naswot", "naswot score"),  # training-free: the estimator's registered name
    ("zc-xgb", "zc-xgb score"),
    ("naswot+train", "validation accuracy"),  # the training rung decides the front
    ("table:bench/results/nb201_subset725_table.csv", "table accuracy (nb201_subset725_table.csv)"),
])
def test_accuracy_axis_is_named_for_what_it_holds(spec, label):
    assert accuracy_label(spec) == label


def test_hypervolume_in_the_objectives_units_has_no_normalised_ceiling():
    """The best corner is no bound: a point more accurate than ``accuracy_best`` (a training-free
    score beating the calibration sample) gives a normalised hypervolume above 1; ``area`` shows
    the same value in accuracy-unit × ms, which has no ceiling to exceed."""
    o = Objectives(accuracy_ref=360.0, accuracy_best=400.0, latency_ref_ms=300.0, latency_best_ms=0.0,
                   accuracy_label="naswot score")
    hv = hypervolume([(420.0, 30.0)], o)  # 1.5 x 0.9
    assert hv == pytest.approx(1.35) and hv > 1
    assert o.area(hv) == pytest.approx((420.0 - 360.0) * (300.0 - 30.0))
    assert o.area_units == "naswot score × ms"
    assert OBJ.area(hypervolume([(100.0, 0.0)], OBJ)) == pytest.approx(100.0 * 10.0)  # the whole box


# ---------------------------------------------------------------- hypervolume
def test_hypervolume_empty_and_one_point():
    assert hypervolume([], OBJ) == 0.0
    assert hypervolume([(50.0, 5.0)], OBJ) == pytest.approx(0.25)  # 0.5 x 0.5
    assert hypervolume([(100.0, 0.0)], OBJ) == pytest.approx(1.0)  # the best corner


def test_hypervolume_two_points():
    # (1, .5) and (.5, 1): 1*.5 + .5*1 - .5*.5 overlap = .75
    assert hypervolume([(100.0, 5.0), (50.0, 0.0)], OBJ) == pytest.approx(0.75)


def test_hypervolume_three_points_staircase():
    pts = [(25.0, 2.0), (50.0, 4.0), (75.0, 8.0)]  # (.25,.8), (.5,.6), (.75,.2)
    expected = 0.75 * 0.2 + 0.5 * (0.6 - 0.2) + 0.25 * (0.8 - 0.6)  # = 0.4
    assert hypervolume(pts, OBJ) == pytest.approx(expected)
    assert hypervolume(list(reversed(pts)), OBJ) == pytest.approx(0.4)


def test_hypervolume_duplicates_and_dominated_points_change_nothing():
    pts = [(25.0, 2.0), (50.0, 4.0), (75.0, 8.0)]
    base = hypervolume(pts, OBJ)
    assert hypervolume(pts + pts + [pts[1]], OBJ) == pytest.approx(base)
    dominated_pts = [(20.0, 3.0), (50.0, 4.5), (10.0, 9.0), (74.0, 8.0)]
    assert hypervolume(pts + dominated_pts, OBJ) == pytest.approx(base)
    assert hypervolume([(50.0, 5.0)] * 5, OBJ) == pytest.approx(0.25)


def test_hypervolume_points_outside_the_reference_box():
    # worse than the reference on either axis (or exactly on it): no area
    assert hypervolume([(-10.0, 5.0), (50.0, 12.0), (50.0, 10.0), (0.0, 1.0)], OBJ) == 0.0
    # better than "best" is not clipped: (1.5, .5)
    assert hypervolume([(150.0, 5.0)], OBJ) == pytest.approx(0.75)
    # an outside point next to a normal one does not subtract anything
    assert hypervolume([(50.0, 5.0), (-10.0, 0.0)], OBJ) == pytest.approx(0.25)


def test_hypervolume_ignores_non_finite_and_extra_items():
    pts = [(50.0, 5.0, "k1"), (float("nan"), 1.0, "k2"), (90.0, None, "k3"), [100.0, math.inf]]
    assert hypervolume(pts, OBJ) == pytest.approx(0.25)


def _hv_oracle(points, obj):
    """Independent check: area of the union of rectangles [0,a]x[0,l] on a compressed grid."""
    rects = [obj.normalize(a, l) for a, l in points]
    rects = [(a, l) for a, l in rects if a > 0 and l > 0]
    xs = sorted({0.0} | {a for a, _ in rects})
    ys = sorted({0.0} | {l for _, l in rects})
    area = 0.0
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cx, cy = (xs[i] + xs[i + 1]) / 2, (ys[j] + ys[j + 1]) / 2
            if any(a >= cx and l >= cy for a, l in rects):
                area += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j])
    return area


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_grid_oracle(seed):
    rng = random.Random(seed)
    pts = [(rng.uniform(-10, 110), rng.uniform(-1, 12)) for _ in range(40)]
    pts += pts[:3]  # duplicates
    assert hypervolume(pts, OBJ) == pytest.approx(_hv_oracle(pts, OBJ), abs=1e-12)
    front = [pts[i] for i in pareto_indices(pts)]
    assert hypervolume(front, OBJ) == pytest.approx(hypervolume(pts, OBJ), abs=1e-12)


def test_hypervolume_matches_moocore_when_installed():
    moocore = pytest.importorskip("moocore")
    import numpy as np

    rng = random.Random(7)
    pts = [(rng.uniform(0, 100), rng.uniform(0, 10)) for _ in range(200)]
    # moocore minimises: negate the normalised (maximised) objectives, reference (0, 0)
    norm = np.array([OBJ.normalize(a, l) for a, l in pts])
    ref = moocore.hypervolume(-norm, ref=[0.0, 0.0])
    assert hypervolume(pts, OBJ) == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------- front
def test_pareto_indices_hand_cases():
    assert pareto_indices([]) == []
    assert pareto_indices([(0.5, 5.0)]) == [0]
    # one point dominates everything
    assert pareto_indices([(0.5, 5), (0.6, 6), (0.4, 7), (0.7, 4)]) == [3]
    # staircase, sorted by latency, duplicate keeps the lowest index
    assert pareto_indices([(0.5, 5), (0.6, 6), (0.4, 4), (0.6, 6), (0.5, 7)]) == [2, 0, 1]
    # equal latency: the more accurate wins; equal accuracy: the faster wins
    assert pareto_indices([(0.5, 5), (0.6, 5)]) == [1]
    assert pareto_indices([(0.6, 6), (0.6, 5)]) == [1]
    # full duplicates only: first one
    assert pareto_indices([(0.6, 5), (0.6, 5), (0.6, 5)]) == [0]


def test_pareto_indices_skips_non_finite_and_accepts_keys():
    pts = [(0.9, float("nan"), "a"), (0.5, 5.0, "b"), (None, 1.0, "c"), (0.6, 6.0, "d")]
    assert pareto_indices(pts) == [1, 3]


def test_dominated_hand_cases():
    front = [(0.6, 5.0), (0.8, 8.0)]
    assert dominated((0.5, 6.0), front)  # worse on both
    assert dominated((0.6, 6.0), front)  # equal accuracy, slower
    assert dominated((0.55, 5.0), front)  # equal latency, less accurate
    assert not dominated((0.6, 5.0), front)  # equal to a front point
    assert not dominated((0.7, 6.0), front)  # between the two
    assert not dominated((0.9, 9.0), front)  # more accurate than all
    assert not dominated((0.1, 1.0), front)  # faster than all
    assert not dominated((0.1, 100.0), [])
    assert not dominated((float("nan"), 100.0), front)
    assert dominated((0.5, 6.0, "key"), [(0.6, 5.0, "k2"), (float("nan"), 0.0)])


@pytest.mark.parametrize("seed", range(3))
def test_front_is_exactly_the_non_dominated_first_occurrences(seed):
    rng = random.Random(seed)
    # coarse grid so ties and duplicates are frequent
    pts = [(rng.randint(0, 6) / 10, float(rng.randint(1, 6))) for _ in range(60)]
    front = pareto_indices(pts)
    expected = [i for i, p in enumerate(pts) if not dominated(p, pts) and tuple(p) not in map(tuple, pts[:i])]
    assert sorted(front) == expected
    lats = [pts[i][1] for i in front]
    accs = [pts[i][0] for i in front]
    assert lats == sorted(lats) and len(set(lats)) == len(lats)
    assert accs == sorted(accs) and len(set(accs)) == len(accs)
