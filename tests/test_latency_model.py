"""The end-to-end latency model: features, persisted samples, the fit and its
leave-one-network-out error (synthetic), and one real tiny model tuned, compiled,
profiled, measured and predicted."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench import latency_model as lm
from cosearch.errors import CosearchError


def _synthetic(seed: int, *, a=1.4, b_us=25.0, c=0.08, noise=0.02) -> list[dict]:
    """Samples of 6 'networks' x 3 budgets from a known model, kernel sums shrinking with budget."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(6):
        calls = int(rng.integers(20, 200))
        mb = float(rng.uniform(5, 120))
        k0 = float(rng.uniform(1, 40))
        for j in range(3):
            k = k0 / (1 + j)
            e2e = (a * k + b_us * calls / 1e3 + c * mb) * (1 + rng.normal(0, noise))
            out.append({"v": lm.VERSION, "network": f"net{i}", "kernel_ms": k, "untuned_ms": 0.0, "calls": calls,
                        "mbytes": mb, "missing": 0, "tasks": 10, "e2e_ms": e2e})
    return out


def test_fit_recovers_a_known_model_and_beats_the_raw_sum():
    samples = _synthetic(0)
    fit = lm.fit_latency(samples)
    assert fit.kind == "linear" and fit.n == 18 and len(fit.networks) == 6
    assert fit.a == pytest.approx(1.4, rel=0.1)
    assert fit.b_us == pytest.approx(25.0, rel=0.3)
    assert fit.c_ms_per_mb == pytest.approx(0.08, rel=0.3)
    lono = lm.leave_one_network_out(samples)
    assert set(lono) == {f"net{i}" for i in range(6)}
    for v in lono.values():
        assert v["mean_abs_rel_err"] < 0.06, v
        assert v["raw_mean_abs_rel_err"] > 0.25  # the kernel sum alone is far off


def test_fit_kinds_by_amount_of_data():
    assert lm.fit_latency([]).kind == "none"
    one_net = [s for s in _synthetic(1) if s["network"] == "net0"]
    fit = lm.fit_latency(one_net)
    assert fit.kind == "ratio" and fit.b_us == 0.0 and fit.c_ms_per_mb == 0.0
    ratios = [s["e2e_ms"] / s["kernel_ms"] for s in one_net]
    assert min(ratios) <= fit.a <= max(ratios)


def test_untuned_tasks_are_estimated_from_the_plans_own_rate():
    # two tuned FLOP tasks at 10 and 30 GFLOP/s (median 20 => 20e3 FLOP/us), one untuned 2 MFLOP
    f = lm.features_from_tasks([(1e6, 4e3, 2, 100.0), (3e6, 4e3, 1, 100.0), (3e6, 4e3, 1, None),
                                (0.0, 8e6, 3, None)])
    assert f.kernel_ms == pytest.approx(0.3)
    assert f.missing == 2 and f.tasks == 4 and f.calls == 7
    # 1 x 3e6 / 2e4 us = 150 us, plus a FLOP-free task at the default 1 GB/s: 3 x 8e6 B / 1e3 B/us
    assert f.untuned_ms == pytest.approx(0.150 + 24.0)
    assert f.mbytes == pytest.approx((2 * 4e3 + 4e3 + 4e3 + 3 * 8e6) / 1e6)


def test_samples_append_only_and_torn_line_tolerated(tmp_path):
    s = _synthetic(2)[:3]
    lm.append_sample(tmp_path, s[0])
    with open(lm.samples_path(tmp_path), "a") as fh:
        fh.write('{"v": 1, "network": "torn", "kernel')  # a writer killed mid-line
    lm.append_sample(tmp_path, s[1])
    lm.append_sample(tmp_path, {"v": 99, "kernel_ms": 1})  # foreign version: skipped
    got = lm.read_samples(tmp_path)
    assert [g["network"] for g in got] == [s[0]["network"], s[1]["network"]]
    assert lm.read_samples(lm.samples_path(tmp_path)) == got  # the file path works too
    lines = lm.samples_path(tmp_path).read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[2])["network"] == s[1]["network"]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_record_rejects_bad_latency(tmp_path, bad):
    with pytest.raises(CosearchError, match="e2e_ms must be"):
        lm.record_measurement(tmp_path, plan=None, e2e_ms=bad)  # type: ignore[arg-type]
    assert not lm.samples_path(tmp_path).exists()


# --------------------------------------------------------------------------- real
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The conftest tiny conv net (32x32, 16 channels), tuned 6 trials into a fresh database."""
    os.environ.setdefault("TVM_NUM_THREADS", "2")
    from conftest import make_tiny_conv_onnx

    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    target = load_target("host")
    model = make_tiny_conv_onnx(size=32, channels=16)
    try:
        imported = from_onnx(model, layout="NCHW")  # the frontend's layout option, where it exists
    except TypeError:
        imported = from_onnx(model)
    db = tmp_path_factory.mktemp("lm-db")
    res = tune_and_compile(imported, target, database_dir=db,
                           config=TuneConfig(trials=6, trials_per_iter=2, seed=0, population=8, init_min_unmeasured=4,
                                             number=2, repeat=1))
    assert res.trials_run > 0
    return target, imported, engine.plan(imported, target), db, res.executable


@pytest.mark.tvm
def test_real_tiny_model_profile_record_predict(tiny):
    from cosearch.compile import engine

    target, imported, plan, db, executable = tiny
    x = np.random.default_rng(0).standard_normal(imported.inputs[0][1]).astype(np.float32)
    prof = lm.profile_vm(executable, [x], runs=5, hot_repeat=5, flush_mb=8)
    kernels = [c for c in prof.calls if c.kernel]
    assert kernels and any(not c.kernel for c in prof.calls)  # builtins (alloc, checks) are seen too
    # every compiled kernel call of one inference is seen, as many times as the plan says
    assert sum(c.calls for c in kernels) == sum(t.weight for t in plan.tasks if t.tunable)
    assert all(c.hot_ms is not None and c.hot_ms > 0 and c.cold_ms > 0 and c.idle_ms > 0 for c in kernels)
    assert 0 < prof.kernel_ms < prof.instrumented_ms
    assert prof.e2e_ms > 0

    feats = lm.plan_features(plan, db)
    pred = engine.predict_latency(plan, db)
    assert feats.kernel_ms == pytest.approx(pred.known_ms)
    assert feats.calls == sum(c.calls for c in kernels)
    assert feats.mbytes > 0

    ms0, detail0 = lm.predict_e2e_ms(plan, db)
    assert detail0["fit"]["kind"] == "none" and ms0 == pytest.approx(feats.kernel_ms + feats.untuned_ms)
    sample = lm.record_measurement(db, plan, prof.e2e_ms, network="tiny", note="test")
    assert sample["target"] == engine.target_key(target)
    ms1, detail1 = lm.predict_e2e_ms(plan, db, target)
    assert detail1["fit"]["kind"] == "ratio" and detail1["fit"]["n"] == 1
    assert ms1 == pytest.approx(prof.e2e_ms, rel=1e-6)  # one sample: the ratio reproduces it
    with pytest.raises(CosearchError, match="differs"):
        lm.predict_e2e_ms(plan, db, type("T", (), {"name": "other"})())
