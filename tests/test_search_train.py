"""`cosearch search --train-pareto N`: the final front is trained and shipped as trained artifacts.

The fake test uses ``FakeEvaluator`` (its artifacts are not real, so training fails):
it checks that a failed training is a ``fail`` event with stage ``train``, never fatal.
The TVM test is one small real search (nb201 C=4 N=1, 2 archs, 2 trials per task) with
one front point trained for 1 epoch on 60 images, then resumed without retraining.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cosearch.errors import CosearchError
from cosearch.search.journal import read_journal
from cosearch.search.config import SearchConfig


def _search(*args: str, timeout: int = 590) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosearch", "search", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_train_settings_validated_and_not_in_hash():
    base = SearchConfig(max_archs=2)
    assert base.train_pareto == 0 and base.train_epochs == 3 and base.train_data == "digits"
    assert SearchConfig(max_archs=2, train_pareto=3, train_epochs=1, train_limit=50).hash() == base.hash()
    for bad in ({"train_pareto": -1}, {"train_epochs": 0}, {"train_limit": 2}, {"train_pareto": True}):
        with pytest.raises(CosearchError, match=next(iter(bad))):
            SearchConfig(max_archs=2, **bad)


def test_bad_train_data_fails_before_the_search(tmp_path):
    r = _search("--evaluator", "fake", "--estimator", "synthetic", "--max-archs", "3", "--out", str(tmp_path / "run"),
                "--train-pareto", "1", "--train-data", str(tmp_path / "nope.npz"), "--no-progress", timeout=120)
    assert r.returncode == 2 and "nope.npz" in r.stderr, r.stderr[-1000:]
    assert not (tmp_path / "run" / "journal.jsonl").exists()


def test_failed_training_is_a_fail_event_not_fatal(tmp_path):
    """FakeEvaluator (a simulated compiler): its Pareto artifacts cannot be trained."""
    out = tmp_path / "run"
    r = _search("--evaluator", "fake", "--estimator", "synthetic", "--max-archs", "6", "--out", str(out),
                "--train-pareto", "2", "--train-epochs", "1", "--no-progress", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["pareto"] and all(p["trained"] is None for p in result["pareto"])
    fails = [e for e in read_journal(out / "journal.jsonl") if e["event"] == "fail" and e.get("stage") == "train"]
    assert len(fails) == min(2, len(result["pareto"])) and all(e["error"] for e in fails)
    assert json.loads((out / "config.json").read_text())["search"]["train_pareto"] == 2


@pytest.mark.tvm
@pytest.mark.timeout(600)
def test_small_real_search_trains_its_front(tmp_path):
    out, sched = tmp_path / "run", tmp_path / "schedules"
    r = _search("--target", "host", "--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1",
                "--estimator", "params", "--max-archs", "2", "--trials-per-task", "2", "--tune-batch", "2",
                "--calibration-archs", "1", "--schedules", str(sched), "--out", str(out), "--no-progress",
                "--train-pareto", "1", "--train-epochs", "1", "--train-limit", "60")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    pts = result["pareto"]
    assert pts
    best = max(range(len(pts)), key=lambda i: pts[i]["accuracy"])
    trained = [i for i, p in enumerate(pts) if p["trained"]]
    assert trained == [best], pts
    t = pts[best]["trained"]
    assert t["artifact"] == f"trained/{best}"
    meta = json.loads((out / t["artifact"] / "meta.json").read_text())
    acc = meta["accuracy"]
    assert acc["epochs"] == 1 and acc["dataset"]["dataset"] == "digits" and len(acc["curve"]) == 1
    assert acc["agreement"] >= 0.99 and abs(acc["tvm_heldout"] - acc["torch_heldout"]) <= 1.0 / acc["heldout_n"]
    assert t["tvm_heldout"] == acc["tvm_heldout"] and t["torch_heldout"] == acc["torch_heldout"]
    assert (out / t["artifact"] / "model.so").exists()
    assert all(p["trained"] is None for i, p in enumerate(pts) if i != best)
    evs = [e for e in read_journal(out / "journal.jsonl") if e["event"] == "train"]
    assert len(evs) == 1
    e = evs[0]
    assert e["key"] == pts[best]["key"] and e["arch"] == pts[best]["arch"]
    assert e["accuracy_estimate"] == pts[best]["accuracy"] and e["epochs"] == 1 and e["seconds"] > 0
    assert e["dataset"] == "digits"
    assert e["tvm_heldout"] == acc["tvm_heldout"] and e["artifact"] == t["artifact"]
    assert "trained:" in r.stdout and f"trained/{best}" in r.stdout
    assert "trained held-out (TVM / torch)" in (out / "report.html").read_text()
    # resumed with the same setting: nothing retrained, result unchanged
    r2 = _search("--resume", str(out), "--train-pareto", "1", "--no-progress", timeout=300)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert len([e for e in read_journal(out / "journal.jsonl") if e["event"] == "train"]) == 1
    assert json.loads((out / "result.json").read_text())["pareto"][best]["trained"] == t


def test_finished_search_resumed_with_train_pareto(tmp_path):
    """FakeEvaluator run without training, then ``--resume DIR --train-pareto 1``: the training step runs
    (and fails: fake artifacts), the search is not redone, the new setting is recorded."""
    out = tmp_path / "run"
    r = _search("--evaluator", "fake", "--estimator", "synthetic", "--max-archs", "4", "--out", str(out),
                "--no-progress", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    before = read_journal(out / "journal.jsonl")
    assert not [e for e in before if e.get("stage") == "train"]
    r2 = _search("--resume", str(out), "--train-pareto", "1", "--no-progress", timeout=120)
    assert r2.returncode == 0, r2.stderr[-2000:]
    after = read_journal(out / "journal.jsonl")
    assert [e["event"] for e in after[len(before):]] == ["fail"] and after[-1]["stage"] == "train"
    conf = json.loads((out / "config.json").read_text())
    assert conf["search"]["train_pareto"] == 1 and conf["config_hash"] == SearchConfig(**conf["search"]).hash()
