"""A real small search's exported front is tuned: 256 more trials on each front point gain under 20 %.

Issue 18's finalisation claim, on the real engine: the search tunes the tasks of its front until
more trials stop paying (``loop.finish_front``), so re-tuning a front point from the run's own
database for 256 more trials (what a user would do with ``cosearch tune``) must not find much left.
The latency compared is the weighted kernel sum of the database's best records
(``engine.predict_latency``), each record *confirmed* (timed again on its own, ``engine.confirm``)
before and after: a tuning-time best is the minimum of many noisy timings, so on these µs kernels
256 more trials "gain" 16 % unconfirmed from noise alone where the confirmed sum moved -3 %
(one architecture, 200 s, 504 trials; measured on znver4). One architecture, so the clock can
converge its ~18 tasks (two architectures in 150 s, 400 trials, left 23-25 % confirmed to 256
more), and 300 s rather than the 200 s that sufficed here, for machines slower than this one.

The bound is 20 %, between a converged front and the old fixed cap (26-40 %): 10 % held on znver4
(-3 %) but a CI run on a clean clone measured 13.5 % (one front point, 2026-12-05), the confirmed
sum of ~18 µs-scale kernels moving that much between two timings of the same records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


@pytest.mark.tvm
@pytest.mark.timeout(1500)
def test_a_small_searchs_front_gains_under_20_percent_from_256_more_trials(tmp_path):
    from cosearch.compile import engine
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.space import create_space

    out, sched = tmp_path / "run", tmp_path / "schedules"
    space_opts = {"C": 4, "N": 1, "resolution": 8}
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--target", "host", "--space", "nb201",
                        *[a for k, v in space_opts.items() for a in ("--space-opt", f"{k}={v}")],
                        "--estimator", "params", "--max-archs", "1", "--calibration-archs", "1",
                        "--budget", "300s", "--seed", "0",
                        "--schedules", str(sched), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["pareto"], result
    assert "front_vs_converged" in result

    target = load_target("host")
    space = create_space("nb201", **space_opts)
    retuned = tmp_path / "retuned"
    gains = []
    for p in result["pareto"]:
        plan = engine.plan(engine.import_arch(space, p["arch"]), target)
        tunable = [t for t in plan.tasks if t.tunable]
        engine.confirm(tunable, target, database_dir=sched)
        before = engine.predict_latency(plan, sched)
        assert not before.missing, before.missing  # every exported task was tuned at least once
        if not retuned.exists():
            shutil.copytree(sched, retuned)
        engine.tune_tasks(tunable, target, database_dir=retuned, trials=256,
                          config=TuneConfig(trials=256, patience=None, seed=1))
        engine.confirm(tunable, target, database_dir=retuned)
        after = engine.predict_latency(plan, retuned)
        gains.append((before.ms - after.ms) / before.ms)
    # the check can fail: a front tuned at the old fixed cap (32 trials per task) gained 26-40 %
    assert max(gains) < 0.20, gains
