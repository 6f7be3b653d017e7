"""Early-stop rules on the TaskFeatures/TaskProgress interface, TaskStats, and the
XGBoost rule (``cosearch.compile.tuning.stop.xgb``) on synthetic task histories. No TVM."""

from __future__ import annotations

import json
import math
import random

import pytest

from cosearch.compile.storage import history
from cosearch.compile.tuning import stop as early_stop
from cosearch.compile.tuning.stop import Stall, TaskFeatures, TaskProgress, TaskStats
from cosearch.compile.tuning.stop.xgb import FEATURES, MODEL_FILE, XGBStop, featurize, refit_and_save, replay
from cosearch.errors import CosearchError

INF = math.inf
T = TaskFeatures(name="t")


def prog(history, **kw) -> TaskProgress:
    return TaskProgress(trials=4 * len(history), history=list(history), batch_size=4, **kw)


# -- built-in rules --------------------------------------------------------------------
def test_stall_stops_flat_keeps_improving():
    rule = Stall(patience=2, min_gain=0.1)
    assert rule.should_stop(T, prog([10.0, 10.0, 10.0])) is True  # 2 batches without 10 %
    assert rule.should_stop(T, prog([10.0, 8.0, 6.0])) is False  # improving
    assert rule.should_stop(T, prog([10.0, 9.5, 9.2])) is True  # 8 % < 10 %


def test_stall_patience_and_first_batch():
    rule = Stall(patience=3, min_gain=0.03)
    assert rule.should_stop(T, TaskProgress()) is False  # before the first batch
    assert rule.should_stop(T, prog([5.0] * 3)) is False  # not enough batches for patience 3
    assert rule.should_stop(T, prog([5.0] * 4)) is True


def test_stall_inf_handling():
    rule = Stall(patience=2, min_gain=0.03)
    assert rule.should_stop(T, prog([INF, INF, INF, INF])) is False  # nothing ran: keep trying
    assert rule.should_stop(T, prog([INF, INF, 3.0])) is False  # the first success is recent
    assert rule.should_stop(T, prog([INF, 3.0, 3.0, 3.0])) is True


def test_never_and_always():
    never, always = early_stop.create("never"), early_stop.create("always")
    assert never.should_stop(T, prog([1.0] * 50)) is False
    assert always.should_stop(T, TaskProgress()) is False  # before the first batch
    assert always.should_stop(T, prog([1.0])) is True


def test_registry_errors_name_valid_kinds():
    assert set(early_stop.RULES.names()) >= {"always", "never", "stall", "xgb"}
    with pytest.raises(CosearchError, match=r"'magic'.*always, never, stall, xgb"):
        early_stop.create("magic")
    with pytest.raises(CosearchError, match="patience must be a positive integer, got 0"):
        early_stop.create("stall", patience=0)
    with pytest.raises(CosearchError, match="min_gain"):
        early_stop.create("stall", min_gain=1.5)
    with pytest.raises(CosearchError, match="threshold must be a non-negative number, got -1"):
        early_stop.create("xgb", threshold=-1)
    assert early_stop.create("stall", patience=3).config() == {"kind": "stall", "patience": 3, "min_gain": 0.03}


def test_task_stats_priors_and_on_batch():
    seen = []
    priors = [TaskProgress(prior_trials=32, prior_best_us=5.0, batch_size=4), TaskProgress(batch_size=4)]
    stats = TaskStats([TaskFeatures(name="a"), "b"], early_stop.create("stall", patience=1, min_gain=0.1),
                      priors=priors, on_batch=lambda i, res, p: seen.append((i, len(res), p.trials, p.best_us)))
    assert stats.names == ["a", "b"] and stats.features[1] == TaskFeatures(name="b")
    assert stats.should_skip(0) is False  # stall never skips before a batch
    ok, bad = (None, [2e-6, 2e-6]), ("build failed", None)
    assert stats.observe(0, [ok, bad, (None, [1e10])]) is False
    # the batch's own best (2 µs) is the run's history; best_us counts the prior
    assert stats.progress[0].history == [2.0] and stats.progress[0].errors == 2
    assert stats.progress[0].best_us == 2.0 and stats.progress[0].prior_trials == 32
    assert seen == [(0, 3, 3, 2.0)]
    assert stats.observe(0, [(None, [3e-6])]) is True  # no 10 % gain over 1 batch
    assert stats.observe(0, [(None, [1e-6])]) is False  # reported once
    assert stats.trials == [5, 0] and stats.errors == [2, 0]
    with pytest.raises(CosearchError, match="1 priors for 2 tasks"):
        TaskStats(["a", "b"], None, priors=[TaskProgress()])


def test_task_stats_skip_before_first_batch():
    class SkipPrior(early_stop.EarlyStopRule):
        kind = "skip-prior"

        def should_stop(self, task, progress):
            return progress.trials == 0 and progress.prior_trials > 0

    stats = TaskStats(["a", "b"], SkipPrior(), priors=[TaskProgress(prior_trials=8, prior_best_us=1.0), TaskProgress()])
    assert [stats.should_skip(0), stats.should_skip(1)] == [True, False]
    assert stats.stopped == [True, False]


# -- XGBStop on synthetic histories -----------------------------------------------------
KINDS = {
    # op kind A keeps improving 4 % per batch of 4 for 64 trials; kind B 15 % per batch, saturated after 8
    "conv2d": (0.04, 64),
    "elementwise": (0.15, 8),
}


def curve_us(kind: str, base: float, t: int) -> float:
    rate, until = KINDS[kind]
    return base * math.exp(-rate * min(t, until) / 4)


def write_histories(db, *, per_kind=10, runs=2, trials_per_run=48, seed=0):
    """Task histories of a database as the engine writes them: per workload a task event,
    then batches of 4 in ``runs`` runs."""
    rng = random.Random(seed)
    events = []
    for kind in KINDS:
        for i in range(per_kind):
            w = f"{kind}-{i:02d}"
            flops = float(rng.choice([1e5, 1e6, 1e7]))
            base = flops / 1e3 * rng.uniform(0.8, 1.2)
            shapes = [[1, 16, 32, 32], [16, 16, 3, 3], [1, 16, 32, 32]] if kind == "conv2d" else [[1, 16, 32, 32]] * 2
            events.append(history.event("task", w, name=f"fused_{kind}_{i}", op=kind, shapes=shapes, flops=flops,
                                        weight=rng.choice([1, 2, 4]), target="llvm-test"))
            total, best = 0, INF
            for r in range(runs):
                for _ in range(trials_per_run // 4):
                    total += 4
                    bb = curve_us(kind, base, total) * (1 + 0.005 * rng.random())
                    prior = total - 4
                    best = min(best, bb)
                    events.append(history.event("batch", w, run=f"run{r}", trials=4, errors=rng.choice([0, 0, 1]),
                                                batch_best_us=bb, best_us=best, prior_trials=prior))
    history.append(db, events)
    return db


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    db = write_histories(tmp_path_factory.mktemp("db"))
    return db, XGBStop(threshold=0.03, horizon=16).fit([db])


def feats(kind: str) -> TaskFeatures:
    return TaskFeatures(name=f"new_{kind}", op_kind=kind, flops=1e6, weight=2,
                        shapes=((1, 16, 32, 32), (16, 16, 3, 3), (1, 16, 32, 32)) if kind == "conv2d"
                        else ((1, 16, 32, 32), (1, 16, 32, 32)))


def run_progress(kind: str, batches: int, base: float = 1000.0, **kw) -> TaskProgress:
    return TaskProgress(trials=4 * batches, history=[curve_us(kind, base, 4 * (b + 1)) for b in range(batches)],
                        batch_size=4, **kw)


def test_replay_reconstructs_engine_progress():
    b = [history.event("batch", "w", run="r0", trials=4, errors=1, batch_best_us=10.0, best_us=10.0, prior_trials=0),
         history.event("batch", "w", run="r0", trials=4, errors=0, batch_best_us=12.0, best_us=10.0, prior_trials=4),
         history.event("batch", "w", run="r1", trials=2, errors=0, batch_best_us=9.0, best_us=9.0, prior_trials=8)]
    pts = list(replay(b))
    # after b0, after b1, before r1's first batch, after r1's batch
    assert [(p.trials, p.prior_trials, t, best) for p, t, best in pts] == [
        (4, 0, 4, 10.0), (8, 0, 8, 10.0), (0, 8, 8, 10.0), (2, 8, 10, 9.0)]
    assert pts[1][0].history == [10.0, 10.0] and pts[1][0].errors == 1
    assert pts[2][0].prior_best_us == 10.0 and pts[2][0].history == [] and pts[3][0].batch_size == 2


def test_xgb_stops_saturated_kind_keeps_improving_kind(trained):
    _, rule = trained
    assert rule.booster is not None and rule.n_samples >= 200 and rule.n_workloads == 20
    assert rule.config()["n_samples"] == rule.n_samples and "fallback" not in rule.config()
    A, B = feats("conv2d"), feats("elementwise")
    # after 2 batches both still improved in every batch: the stall rule keeps both ...
    pa, pb = run_progress("conv2d", 2), run_progress("elementwise", 2)
    stall = Stall(patience=4, min_gain=0.03)
    assert not stall.should_stop(A, pa) and not stall.should_stop(B, pb)
    # ... the model knows B is done after 8 trials and A is not
    ga, gb = rule.predict_gain(A, pa), rule.predict_gain(B, pb)
    assert ga > 0.1 and gb < 0.03, (ga, gb)
    assert rule.should_stop(A, pa) is False and rule.should_stop(B, pb) is True
    # A after 60 trials has saturated too (its gain ends at 64)
    assert rule.should_stop(A, run_progress("conv2d", 17)) is True


def test_xgb_before_first_batch(trained):
    _, rule = trained
    A, B = feats("conv2d"), feats("elementwise")
    prior_b = TaskProgress(prior_trials=32, prior_best_us=curve_us("elementwise", 1000, 32), batch_size=4)
    prior_a = TaskProgress(prior_trials=16, prior_best_us=curve_us("conv2d", 1000, 16), batch_size=4)
    assert rule.should_stop(B, prior_b) is True  # tuned before, predicted to gain nothing
    assert rule.should_stop(A, prior_a) is False
    assert rule.should_stop(A, TaskProgress(batch_size=4)) is False  # new task: nothing measured yet
    assert rule.should_stop(B, prog([INF, INF])) is False  # nothing ran successfully yet


def test_xgb_weighted_threshold_in_us(trained):
    db, _ = trained
    rule = XGBStop(weighted=True, threshold=5.0).fit([db])
    pa = run_progress("conv2d", 2)
    g = rule.predict_gain(feats("conv2d"), pa)
    saved = 2 * pa.best_us * (1 - math.exp(-g))
    assert rule.score(feats("conv2d"), pa) == pytest.approx(saved)
    assert rule.should_stop(feats("conv2d"), pa) is (saved < 5.0)
    small = TaskFeatures(name="s", op_kind="conv2d", flops=1e6, weight=1)
    tiny = TaskProgress(trials=8, history=[0.2, 0.19], batch_size=4)  # 0.2 µs kernel: nothing to save
    assert rule.should_stop(small, tiny) is True


def test_xgb_save_load_roundtrip(trained, tmp_path):
    db, rule = trained
    path = rule.save(tmp_path / "m" / MODEL_FILE)
    side = json.loads(path.read_text())
    assert side["v"] == 1 and side["features"] == list(FEATURES) and side["horizon"] == 16
    assert side["n_samples"] == rule.n_samples and (tmp_path / "m" / side["booster"]).exists()
    again = XGBStop.load(path)
    cases = [(feats(k), run_progress(k, n)) for k in KINDS for n in (1, 2, 5, 12)]
    assert [rule.predict_gain(f, p) for f, p in cases] == [again.predict_gain(f, p) for f, p in cases]
    assert again.config()["path"] == str(path) and again.threshold == rule.threshold
    assert XGBStop.load(path, threshold=0.5).threshold == 0.5
    with pytest.raises(CosearchError, match="gain of 16 more trials, not 32"):
        XGBStop.load(path, horizon=32)
    # a damaged booster is refused, in one line
    (tmp_path / "m" / side["booster"]).write_text("{}")
    with pytest.raises(CosearchError, match="does not match"):
        XGBStop.load(path)
    with pytest.raises(CosearchError, match="no model file"):
        XGBStop.load(tmp_path / "missing.json")


def test_xgb_deterministic_under_seed(trained):
    db, rule = trained
    other = XGBStop(threshold=0.03, horizon=16).fit([db])
    assert bytes(other.booster.save_raw("json")) == bytes(rule.booster.save_raw("json"))
    assert other.holdout == rule.holdout and rule.holdout.get("n_test", 0) > 0


def test_xgb_fallback_without_data(tmp_path):
    rule = early_stop.create("xgb")
    assert rule.booster is None and rule.config()["fallback"]["kind"] == "stall"
    assert "no model yet" in rule.config()["note"]
    assert rule.should_stop(T, prog([5.0] * 6)) is True  # the stall rule decides
    assert rule.should_stop(T, prog([5.0, 4.0, 3.0, 2.0, 1.0])) is False
    small = write_histories(tmp_path / "small", per_kind=1, runs=1, trials_per_run=24)
    fitted = XGBStop(min_samples=50).fit([small / history.HISTORY_FILE])
    assert fitted.booster is None and "too few samples" in fitted.config()["note"]
    assert refit_and_save(small) is None and not (small / MODEL_FILE).exists()
    assert refit_and_save(tmp_path / "nothing-here") is None
    with pytest.raises(CosearchError, match="nothing to save"):
        fitted.save(tmp_path / "x.json")
    with pytest.raises(CosearchError, match="neither a schedule database folder"):
        XGBStop().fit([tmp_path / "nope.jsonl"])


def test_refit_and_save_and_for_database(tmp_path):
    db = write_histories(tmp_path / "db", per_kind=4)
    assert isinstance(XGBStop.for_database(db).booster, type(None))  # nothing saved yet
    rule = refit_and_save(db, horizon=16)
    assert rule is not None and (db / MODEL_FILE).exists()
    loaded = XGBStop.for_database(db)
    p = run_progress("elementwise", 3)
    assert loaded.predict_gain(feats("elementwise"), p) == rule.predict_gain(feats("elementwise"), p)


def test_load_rule_per_database(tmp_path):
    db = write_histories(tmp_path / "db", per_kind=4)
    assert early_stop.load_rule("stall", db, patience=7).config()["patience"] == 7
    assert early_stop.load_rule("never", db, patience=7).kind == "never"
    unfitted = early_stop.load_rule("xgb", db, patience=6)
    assert unfitted.booster is None and unfitted.config()["fallback"]["patience"] == 6
    refit_and_save(db)
    loaded = early_stop.load_rule("xgb", db, patience=6)
    assert loaded.booster is not None and loaded.config()["path"] == str(db / MODEL_FILE)
    with pytest.raises(CosearchError, match="valid early-stop rules"):
        early_stop.load_rule("magic", db)


def test_featurize_shape_and_missing():
    row = featurize(feats("conv2d"), TaskProgress())
    assert len(row) == len(FEATURES)
    named = dict(zip(FEATURES, row))
    assert named["op_conv2d"] == 1.0 and named["op_other"] == 0.0
    assert math.isnan(named["log_best_us"]) and math.isnan(named["gain_last_1"])
    unknown = featurize(TaskFeatures(name="x", op_kind="weird"), run_progress("conv2d", 3))
    named = dict(zip(FEATURES, unknown))
    assert named["op_other"] == 1.0 and named["gain_last_2"] == pytest.approx(2 * 0.04)
