"""The exported front is tuned: one small real search (TVM, this CPU), then every front point's
tasks re-tuned for 256 more trials from the run's own database; its kernel sum must improve by
less than 10 % (issue: exported fronts within 10 % of converged)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

SPACE = {"C": 4, "N": 1, "resolution": 8}


@pytest.mark.tvm
@pytest.mark.timeout(1500)
def test_exported_front_gains_under_10_percent_from_256_more_trials(tmp_path):
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.compile.tune import TuneConfig
    from cosearch.space import create_space

    out, sched = tmp_path / "run", tmp_path / "schedules"
    opts = [a for k, v in SPACE.items() for a in ("--space-opt", f"{k}={v}")]
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--target", "host", "--space", "nb201", *opts,
                        "--estimator", "naswot", "--max-archs", "2", "--budget", "3m", "--calibration-archs", "1",
                        "--seed", "0", "--schedules", str(sched), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "result.json").read_text())
    assert res["pareto"] and res["front_vs_converged"]["points"] == len(res["pareto"])
    assert "front vs converged (predicted)" in r.stdout
    journal = [json.loads(ln) for ln in (out / "journal.jsonl").open()]
    assert any(e["event"] == "tune" and e.get("reason") == "finish" and e["trials"] > 0 for e in journal)

    space, target = create_space("nb201", **SPACE), load_target("host")
    retuned = tmp_path / "retuned"
    shutil.copytree(sched, retuned)  # the run's own database, tuned further on a copy
    gains = []
    for p in res["pareto"]:
        plan = engine.plan(engine.import_arch(space, p["arch"], seed=0), target)
        before = engine.predict_latency(plan, sched).ms
        engine.tune_tasks(plan.tasks, target, database_dir=retuned, trials=256,
                          config=TuneConfig(trials=256, patience=None, seed=1))
        after = engine.predict_latency(plan, retuned).ms
        gains.append((p["arch"], before, after))
    worst = max(1 - a / b for _, b, a in gains)
    assert worst < 0.10, gains
