"""One small real end-to-end search with TVM (nb201, C=4, N=1, 2 archs, 2 trials per task)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cosearch.search.journal import read_journal


@pytest.mark.tvm
@pytest.mark.timeout(600)
def test_small_real_search_end_to_end(tmp_path):
    out, sched = tmp_path / "run", tmp_path / "schedules"
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--target", "host", "--space", "nb201",
                        "--space-opt", "C=4", "--space-opt", "N=1", "--estimator", "params", "--max-archs", "2",
                        "--trials-per-task", "2", "--tune-batch", "2", "--calibration-archs", "1",
                        "--schedules", str(sched), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=590)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["proposed"] == 2 and result["evaluated"] >= 1 and result["trials"] > 0
    assert result["pareto"], result
    for p in result["pareto"]:
        assert p["latency_ms"] > 0 and (out / p["artifact"] / "meta.json").exists()
        assert (out / p["artifact"] / "model.so").exists()
    evs = read_journal(out / "journal.jsonl")
    kinds = {e["event"] for e in evs}
    assert {"start", "propose", "plan", "accuracy", "tune", "measure", "front", "done"} <= kinds
    assert any(e["event"] == "measure" and e.get("final") and e["ok"] for e in evs)
    assert (sched / "search-predictors" / "task_latency.jsonl").exists()  # persisted for the next search
    assert f"cosearch run {out / 'pareto' / '0'}" in r.stdout
    assert "Warning" not in r.stderr  # TVM's C++ warnings go to the run's logs, not the terminal
    # the artifact runs with the plain runtime and matches ONNX Runtime
    r2 = subprocess.run([sys.executable, "-m", "cosearch", "run", str(out / "pareto" / "0"), "--repeat", "3"],
                        capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-2000:]
