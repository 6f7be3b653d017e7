"""The training rung of the joint search (``--estimator X+train``).

Search-logic tests use ``FakeEvaluator`` (a simulated compiler whose "training" is a
seeded synthetic learning curve) with the *real* learning-curve rule
(``cosearch.train.predictor.LearningCurvePredictor``): every stop decision is checked
against the threshold the loop gave it. The TVM test is one small real search
(nb201 C=4 N=1, real tuning, real training on 60 digits images).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from conftest import kill_when

from cosearch.errors import CosearchError
from cosearch.search.api import run_search
from cosearch.search.testing import FakeEvaluator
from cosearch.search.journal import read_journal
from cosearch.search.config import SearchConfig
from cosearch.search import pareto


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cosearch", "search", *args]


def _train_events(out):
    return [e for e in read_journal(out / "journal.jsonl") if e["event"] == "accuracy" and e.get("fidelity") == "train"]


def test_estimator_ladder_is_validated():
    cfg = SearchConfig(max_archs=2, estimator="naswot+train")
    assert cfg.train_rung and cfg.screen_estimator == "naswot"
    plain = SearchConfig(max_archs=2)
    assert not plain.train_rung and plain.screen_estimator == "naswot"
    # the rung's settings are part of the search's identity (not so for --train-pareto alone)
    assert SearchConfig(max_archs=2, estimator="naswot+train", train_epochs=5).hash() != cfg.hash()
    assert SearchConfig(max_archs=2, train_epochs=5).hash() == plain.hash()
    assert SearchConfig(max_archs=2, estimator="naswot+train", train_pareto=2).hash() == cfg.hash()
    for bad in ("train", "train+naswot", "naswot+", "naswot+snip", "a+b+train"):
        with pytest.raises(CosearchError):
            SearchConfig(max_archs=2, estimator=bad)


@pytest.mark.parametrize("args, needle", [
    (["--estimator", "train"], "naswot+train"),
    (["--estimator", "synthetic+train", "--train-data", "nope.npz"], "nope.npz"),
    (["--estimator", "synthetic+train", "--train-epochs", "0"], "--train-epochs"),
])
def test_bad_ladder_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    out = tmp_path / "run"
    r = subprocess.run(_cmd("--evaluator", "fake", "--space", "nb201", "--max-archs", "3", "--no-progress",
                            "--out", str(out), *args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-1500:]
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_joint_trains_measured_archs_and_stops_hopeless_ones(tmp_path):
    cfg = SearchConfig(strategy="joint", space="nb201", estimator="synthetic+train", evaluator="fake",
                       budget_s=1500.0, seed=0, train_epochs=6)
    out = tmp_path / "run"
    result = run_search(cfg, out, schedules=str(tmp_path / "sched"), progress=False)
    tr = _train_events(out)
    stopped = [e for e in tr if e["stopped"]]
    done = [e for e in tr if not e["stopped"]]
    summary = result["training"]
    assert summary["stopped"] == len(stopped) >= 1 and summary["trained"] == len(done) >= 3
    assert summary["epochs_run"] == sum(len(e["curve"]) for e in tr) < summary["epochs_planned"]
    assert result["accuracy_fidelity"] == "train:6:digits"
    # every stop is the rule's, against the accuracy needed to enter the front at the arch's latency
    for e in stopped:
        last = e["decisions"][-1]
        assert last["stop"] and e["threshold"] is not None and len(e["curve"]) < e["epochs"]
        if last["rule"] == "model":
            assert last["predicted"] + last["margin"] < e["threshold"]
        else:
            assert last["rule"] == "flat" and max(e["curve"]) + 0.02 < e["threshold"]
    # a run that completed continued at every decision
    assert all(not d["stop"] for e in done for d in e["decisions"])
    # the front is made of trained archs at their final accuracy, never of a stopped one
    finals = {e["key"]: e["final"] for e in done}
    assert result["pareto"] and all(p["accuracy"] == finals[p["key"]] for p in result["pareto"])
    stop_keys = {e["key"] for e in read_journal(out / "journal.jsonl")
                 if e["event"] == "stop_arch" and e["reason"] == "train_early_stop"}
    assert stop_keys == {e["key"] for e in stopped}
    # the objectives' accuracy axis is trained accuracy: chance .. 1
    assert result["objectives"]["accuracy_ref"] == pytest.approx(0.1) and result["objectives"]["accuracy_best"] == 1.0
    # how much would the stopped archs have added had they been trained? (the simulator knows)
    ev = FakeEvaluator(cfg_space(), None, schedules_dir=tmp_path / "probe", train_epochs=6)
    meas = {e["key"]: e["ms"] for e in read_journal(out / "journal.jsonl")
            if e["event"] == "measure" and e.get("ok") and not e.get("final")}
    arch = {e["key"]: e["arch"] for e in read_journal(out / "journal.jsonl") if e["event"] == "propose"}
    pts = [(finals[k], meas[k]) for k in finals]
    full = pts + [(ev.true_accuracy(arch[k]), meas[k]) for k in stop_keys]
    obj = pareto.Objectives.from_dict(result["objectives"])
    assert pareto.hypervolume(pts, obj) >= 0.97 * pareto.hypervolume(full, obj)


def cfg_space():
    from cosearch.space import create_space

    return create_space("nb201")


def test_resume_after_kill_never_retrains(tmp_path):
    out = tmp_path / "run"
    base = ["--evaluator", "fake", "--estimator", "synthetic+train", "--space", "nb201", "--no-progress",
            "--train-epochs", "4", "--max-archs", "16", "--seed", "1"]
    kill_when(_cmd(*base, "--out", str(out)),
              lambda: (out / "journal.jsonl").exists() and len(_train_events(out)) >= 3,
              env={"COSEARCH_FAKE_SLEEP": "0.01"})
    before = read_journal(out / "journal.jsonl")
    assert not any(e["event"] == "done" for e in before), "the run ended before the kill; slow it down"
    r = subprocess.run(_cmd("--resume", str(out), "--no-progress"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tr = _train_events(out)
    assert max(Counter(e["key"] for e in tr).values()) == 1  # nothing trained twice
    result = json.loads((out / "result.json").read_text())
    assert result["training"]["epochs_run"] == sum(len(e["curve"]) for e in tr)
    assert result["proposed"] == 16
    trained = {e["key"] for e in tr if not e["stopped"]}
    assert all(p["key"] in trained for p in result["pareto"])


@pytest.mark.tvm
@pytest.mark.timeout(600)
def test_small_real_search_with_training_rung(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "COSEARCH_TRAIN_DIR": str(tmp_path / "lc")}
    r = subprocess.run(_cmd("--target", "host", "--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1",
                            "--estimator", "params+train", "--max-archs", "3", "--trials-per-task", "2",
                            "--tune-batch", "2", "--calibration-archs", "1", "--train-epochs", "2",
                            "--train-limit", "60", "--schedules", str(tmp_path / "sched"), "--out", str(out),
                            "--no-progress"), capture_output=True, text=True, timeout=590, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    tr = _train_events(out)
    assert tr and all(0.0 <= v <= 1.0 for e in tr for v in e["curve"]) and all(e["seconds"] > 0 for e in tr)
    assert all(e["estimator_fidelity"].startswith("train:2") for e in tr)
    finals = {e["key"]: e["final"] for e in tr if not e["stopped"]}
    assert result["pareto"] and all(p["accuracy"] == finals[p["key"]] for p in result["pareto"])
    screen = [e for e in read_journal(out / "journal.jsonl") if e["event"] == "accuracy" and e["fidelity"] == "screen"]
    assert len(screen) >= len(tr)
    # the learning-curve samples of completed runs persist per space / dataset
    assert list((tmp_path / "lc").glob("lc-nb201-*.jsonl"))
    assert "Training rung" in (out / "report.html").read_text()
