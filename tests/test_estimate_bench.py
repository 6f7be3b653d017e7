"""The proxy-correlation bench's learned combinations never see held-out accuracies."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "proxy_correlation.py"


@pytest.fixture(scope="module")
def pc():
    spec = importlib.util.spec_from_file_location("proxy_correlation", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_halves_are_a_seeded_partition(pc):
    a, b = pc.halves(725, 0)
    assert len(a) == 362 and len(b) == 363 and set(a) | set(b) == set(range(725)) and not set(a) & set(b)
    a2, _ = pc.halves(725, 0)
    a3, _ = pc.halves(725, 1)
    assert list(a) == list(a2) and list(a) != list(a3)


@pytest.mark.parametrize("model", ["linear", "xgb"])
def test_fit_predict_ignores_test_accuracies(pc, model):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    acc = X @ np.array([1.0, -0.5, 0.2]) + 0.1 * rng.normal(size=60)
    train, test = np.arange(30), np.arange(30, 60)
    p1, _ = pc.fit_predict(model, X, acc, train, test, 0)
    acc2 = acc.copy()
    acc2[test] = rng.permutation(acc2[test]) * 100  # scramble the held-out labels
    p2, _ = pc.fit_predict(model, X, acc2, train, test, 0)
    np.testing.assert_array_equal(p1, p2)
    assert pc.corr(p1, acc[test])["tau"] > 0.5  # and it does learn the signal


def test_inner_cv_uses_only_the_given_rows(pc):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 2))
    acc = X[:, 0] + 0.1 * rng.normal(size=80)
    fit = np.arange(40)
    cv1 = pc.inner_cv("linear", X, acc, fit, 0)
    acc2 = acc.copy()
    acc2[40:] = -acc2[40:]
    assert cv1 == pc.inner_cv("linear", X, acc2, fit, 0) and cv1 > 0.5


def test_mbv2_section_agreement_applies_directions(pc):
    # flops increases with i; ntk_cond decreases (lower is better) -> both "agree" with flops
    recs = [{"arch": f"a{i}", "signals": {"flops": float(i), "ntk_cond": 100.0 - i, "linear_regions": float(i % 3),
                                          "meco": float(-i), "naswot": 300.0 + i, "synflow": 5.0 + i,
                                          "ntk_singular": 0.0, "naswot_singular": 0.0, "synflow_degenerate": 0.0},
             "seconds": {"tenas": 1.0 + i, "flops": 0.1}, "cpu": {"tenas": 1.0, "flops": 0.1},
             "fidelity": {"tenas": "zero-cost"}} for i in range(6)]
    summ = pc.analyse_mbv2(recs)
    assert summ["n"] == 6 and summ["vs_flops"]["ntk_cond"]["tau"] == 1.0
    assert summ["vs_flops"]["meco"]["tau"] == -1.0 and summ["tau_between"]["naswot"]["synflow"] == 1.0
    assert "zc-all rank fallback" in summ["tau_between"] and "tenas (rank)" in summ["vs_flops"]
    assert summ["seconds_per_arch"]["tenas"]["wall_mean"] == 3.5 and summ["fidelities"] == ["zero-cost"]
