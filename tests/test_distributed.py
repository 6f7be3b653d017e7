"""The search on Ray workers (cosearch.distributed): the same decisions as one process under a
seed and a lookahead, a worker killed mid-task loses nothing and does nothing twice, the
measurement lease keeps every worker's work off the cores while the driver measures, and
without Ray ``--workers`` is one line and exit 2.

The search-logic tests run the simulated compiler (``FakeEvaluator``) on real Ray workers; the
engine test plans real NB201 networks with TVM on two workers while the driver tunes and measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cosearch.distributed.lease import DeviceLease, overlaps, read_holds


#: journal fields that are timing or bookkeeping, not decisions
NOT_DECISIONS = {"t", "seconds", "wall_s", "worker", "predicted_s", "hv_gain"}


def decisions(run_dir: Path) -> list[tuple]:
    """The run's journal without its clock: every event and what it decided, in order."""
    out = []
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") in ("start", "generation", "done", "result"):
            continue
        out.append(tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in ev.items() if k not in NOT_DECISIONS)))
    return out


@pytest.fixture(scope="module")
def ray_workers(tmp_path_factory):
    """One local Ray instance with 2 worker CPUs for the module; workers inherit the fault
    injection switch of the fake evaluator (armed per test)."""
    import ray  # the ray extra is part of the test extra: missing, this fails

    kill_dir = tmp_path_factory.mktemp("kill")
    old = os.environ.get("COSEARCH_FAKE_KILL_WORKER")
    os.environ["COSEARCH_FAKE_KILL_WORKER"] = str(kill_dir)
    from cosearch.distributed.pool import RayPool

    if ray.is_initialized():
        ray.shutdown()
    pool = RayPool(workers=2)
    yield {"pool": pool, "kill_dir": kill_dir}
    pool.close()
    if old is None:
        os.environ.pop("COSEARCH_FAKE_KILL_WORKER", None)
    else:
        os.environ["COSEARCH_FAKE_KILL_WORKER"] = old


def _fake_search(out: Path, parallel, *, lookahead: int = 4, max_archs: int = 24, seed: int = 3) -> dict:
    from cosearch.search import api
    from cosearch.search.config import SearchConfig

    cfg = SearchConfig(evaluator="fake", estimator="synthetic", max_archs=max_archs, seed=seed, lookahead=lookahead,
                       calibration_archs=3)
    return api.run_search(cfg, out, schedules=str(out.parent / (out.name + "-sched")), progress=False,
                          parallel=parallel)


def _workers_used(run_dir: Path) -> set[str]:
    return {json.loads(line).get("worker") for line in (run_dir / "journal.jsonl").read_text().splitlines()
            if '"event":"plan"' in line.replace(" ", "")} - {None}


def test_two_workers_decide_what_one_process_decides(ray_workers, tmp_path):
    from cosearch.distributed.pool import Parallel

    one = _fake_search(tmp_path / "inline", None)
    two = _fake_search(tmp_path / "ray", Parallel(workers=2))
    assert _workers_used(tmp_path / "ray") and not _workers_used(tmp_path / "inline")
    assert decisions(tmp_path / "inline") == decisions(tmp_path / "ray")
    assert one["hypervolume"] == pytest.approx(two["hypervolume"], rel=1e-12)
    # another lookahead is another search (the proposer is asked ahead), so the test above can fail
    other = _fake_search(tmp_path / "inline-1", None, lookahead=1)
    assert decisions(tmp_path / "inline-1") != decisions(tmp_path / "inline")
    assert other["evaluated"] >= 1


def test_a_worker_killed_mid_task_loses_nothing_and_repeats_nothing(ray_workers, tmp_path):
    from cosearch.distributed.pool import Parallel

    kill_dir = ray_workers["kill_dir"]
    _fake_search(tmp_path / "inline", None, max_archs=12)
    (kill_dir / "arm").write_text("1")
    try:
        _fake_search(tmp_path / "ray", Parallel(workers=2), max_archs=12)
    finally:
        (kill_dir / "arm").unlink()
    killed = [p for p in kill_dir.iterdir() if p.name != "arm"]
    assert len(killed) >= 3, "the fault injection did not kill workers"
    assert decisions(tmp_path / "inline") == decisions(tmp_path / "ray")
    plans = [json.loads(line)["key"] for line in (tmp_path / "ray" / "journal.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "plan"]
    assert len(plans) == len(set(plans)) == 12


def test_no_work_runs_while_the_driver_measures(ray_workers, tmp_path, monkeypatch):
    from cosearch.distributed.pool import Parallel

    monkeypatch.setenv("COSEARCH_FAKE_SLEEP", "0.02")  # the simulated costs take real time, driver and workers
    _fake_search(tmp_path / "ray", Parallel(workers=2), max_archs=16)
    holds = read_holds(tmp_path / "ray" / "lease")
    ex = [h for h in holds if h["mode"] == "exclusive"]
    shared = [h for h in holds if h["mode"] == "shared"]
    assert ex and shared
    assert {h["pid"] for h in shared} - {os.getpid()}, "no worker took the lease"
    assert overlaps(holds) == []


def test_lease_overlap_check_finds_an_overlap(tmp_path):
    """``overlaps`` is what the lease test relies on: it must see an overlap when there is one."""
    holds = [{"mode": "exclusive", "host": "h", "t0": 1.0, "t1": 2.0, "pid": 1},
             {"mode": "shared", "host": "h", "t0": 1.5, "t1": 3.0, "pid": 2},
             {"mode": "shared", "host": "h", "t0": 2.5, "t1": 3.5, "pid": 3},
             {"mode": "shared", "host": "other", "t0": 1.2, "t1": 1.4, "pid": 4}]
    got = overlaps(holds)
    assert len(got) == 1 and got[0][1]["pid"] == 2


def test_lease_excludes_work_from_measurement_across_processes(tmp_path):
    """Real processes: a measurement waits for the work running and holds off new work."""
    lease = DeviceLease.for_run(tmp_path)
    code = ("import sys, time\n"
            "from cosearch.distributed.lease import DeviceLease\n"
            "lease = DeviceLease(sys.argv[1], sys.argv[2])\n"
            "for _ in range(20):\n"
            "    with lease.work('w'):\n"
            "        time.sleep(0.01)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, lease.dir, lease.host]) for _ in range(2)]
    import time

    for _ in range(10):
        with lease.measuring("m"):
            time.sleep(0.01)
    assert all(p.wait(timeout=60) == 0 for p in procs)
    holds = read_holds(lease.dir)
    assert sum(h["mode"] == "shared" for h in holds) == 40 and sum(h["mode"] == "exclusive" for h in holds) == 10
    assert overlaps(holds) == []


def test_workers_without_ray_is_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from cosearch.cli import main\n"
            f"sys.exit(main(['search', '--evaluator', 'fake', '--estimator', 'synthetic', '--max-archs', '3', "
            f"'--workers', '2', '--out', {str(tmp_path / 'run')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'cosearch[ray]'" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.tvm
def test_engine_search_on_two_workers_from_the_cli(ray_workers, tmp_path):
    """Real TVM: NB201 architectures planned (torch build, ONNX export, import, task extraction)
    and scored on two Ray workers while the driver tunes and measures under the lease."""
    from cosearch.cli import main

    out = tmp_path / "run"
    rc = main(["search", "--target", "host", "--space", "nb201", "--estimator", "naswot", "--max-archs", "4",
               "--calibration-archs", "2", "--trials-per-task", "4", "--tune-batch", "2", "--workers", "2",
               "--schedules", str(tmp_path / "sched"), "--out", str(out), "--no-progress"])
    assert rc == 0
    assert len(_workers_used(out)) >= 1
    holds = read_holds(out / "lease")
    assert {h["what"] for h in holds if h["mode"] == "exclusive"} >= {"measure"}
    assert overlaps(holds) == []
    result = json.loads((out / "result.json").read_text())
    assert result["pareto"] and all(r["latency_ms"] > 0 for r in result["pareto"])
    conf = json.loads((out / "config.json").read_text())
    assert conf["workers"]["kind"] == "ray" and conf["search"]["lookahead"] == 4
