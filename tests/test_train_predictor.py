"""Learning-curve predictor and early-stop rule; seeded training of a tiny net; the `train` estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosearch.errors import CosearchError
from cosearch.train.predictor import SCHEMA, LearningCurvePredictor


def synthetic_curves(n: int, epochs: int = 6, seed: int = 0):
    """Saturating curves a * (1 - exp(-k / tau)) with per-arch ceiling a and speed tau."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, tau = rng.uniform(0.3, 0.95), rng.uniform(0.8, 2.5)
        out.append([float(a * (1 - np.exp(-k / tau))) for k in range(1, epochs + 1)])
    return out


def test_warmup_rule_stops_flat_continues_rising():
    p = LearningCurvePredictor(None)
    assert not p.ready
    flat = [0.30, 0.31, 0.305, 0.31]
    rising = [0.30, 0.40, 0.50, 0.60]
    d = p.decide(flat, 10, threshold=0.8)
    assert d.stop and d.rule == "flat"
    assert p.should_stop(flat, 0.8, epochs=10)
    assert not p.should_stop(rising, 0.8, epochs=10)
    assert not p.should_stop(flat, None, epochs=10)  # no front yet: never stop
    assert not p.should_stop(flat, 0.32, epochs=10)  # flat but close enough to the front
    assert not p.should_stop(flat[:2], 0.8, epochs=10)  # too short to call flat
    assert not p.should_stop(flat, 0.8, epochs=4)  # the last epoch: nothing to save


def test_model_rule_learns_across_curves_and_persists(tmp_path):
    path = tmp_path / "lc.jsonl"
    p = LearningCurvePredictor(path, space_config={"space": "toy"}, min_samples=8, seed=0)
    curves = synthetic_curves(30)
    for i, c in enumerate(curves):
        p.observe(f"a{i}", c, len(c))
    assert p.ready
    # predictions on unseen curves are close to their real final accuracy
    errs = []
    for c in synthetic_curves(10, seed=1):
        pred, margin = p.predict(c[:3], 6)
        errs.append(abs(pred - c[-1]))
        assert margin >= p.min_margin
    assert np.mean(errs) < 0.05, errs
    low = [0.20, 0.25, 0.27]  # heading for ~0.3
    high = [0.55, 0.75, 0.83]  # heading for ~0.9
    d = p.decide(low, 6, 0.8)
    assert d.stop and d.rule == "model" and d.predicted + d.margin < 0.8
    assert not p.should_stop(high, 0.8, epochs=6)
    # persisted: header + one line per curve; reload (a torn last line is skipped)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["schema"] == SCHEMA and len(lines) == 31
    with open(path, "a") as fh:
        fh.write('{"v": 1, "arch": "torn", "epo')
    q = LearningCurvePredictor(path, min_samples=8, seed=0)
    assert len(q.samples) == 30
    assert q.predict(low, 6) == pytest.approx(p.predict(low, 6))
    path.write_text(json.dumps({"schema": "other/9"}) + "\n")
    with pytest.raises(CosearchError, match="schema 'other/9'"):
        LearningCurvePredictor(path)


@pytest.fixture(scope="module")
def tiny():
    from cosearch.space import create_space
    from cosearch.train.data import prepare_data

    space = create_space("nb201", C=4, N=1, resolution=16)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    data = prepare_data("digits", space.input_shape(arch), 10, limit=600)
    return space, arch, data


def test_train_arch_seeded_and_stops_early(tiny):
    from cosearch.train.trainer import TrainConfig, train_arch

    space, arch, data = tiny
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.1, seed=1)
    a = train_arch(space, arch, data, cfg)
    b = train_arch(space, arch, data, cfg)
    assert a.curve == b.curve and a.epochs_run == 3 and not a.stopped_early
    assert a.accuracy_val == a.curve[-1] and set(a.state_dict) and a.fidelity == "train:3"
    assert max(a.curve) > 0.5  # it learns (10 classes, chance 0.1)
    # a predictor that has seen enough curves stops a run that cannot reach an impossible front
    p = LearningCurvePredictor(None, min_samples=4)
    for i, c in enumerate(synthetic_curves(6, epochs=3)):
        p.observe(f"s{i}", c, 3)
    r = train_arch(space, arch, data, cfg, stop_threshold=1.5, predictor=p)
    assert r.stopped_early and r.epochs_run == 1 and r.predicted_final is not None
    assert r.decisions[0]["stop"] and r.decisions[0]["rule"] == "model"
    assert r.fidelity == "train:3:stopped-at-1" and len(p.samples) == 6  # a stopped run is not learned from
    r2 = train_arch(space, arch, data, cfg, stop_threshold=None, predictor=p)
    assert not r2.stopped_early and len(p.samples) == 7  # a full run is


def test_train_estimator(tiny, tmp_path):
    from cosearch.estimate import ESTIMATORS, create_estimator

    space, arch, data = tiny
    assert ESTIMATORS.get("train").absolute
    est = create_estimator("train", epochs=2, batch_size=32, limit=600, predictor_root=str(tmp_path))
    e = est.estimate(space, arch)
    assert e.fidelity == "train:2" and e.score == e.signals["val_acc"] == e.signals["val_acc@2"]
    assert est.config()["fidelity"] == "train:2"
    assert len(list(tmp_path.glob("lc-nb201-*.jsonl"))) == 1  # the completed curve was stored
    with pytest.raises(CosearchError, match="epochs=0"):
        create_estimator("train", epochs=0)
