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


def _assert_equals_onnxruntime(exe, onnx_path) -> None:
    """The compiled tiny conv net's output on a seeded input equals ONNX Runtime's."""
    import numpy as np
    import onnxruntime as ort
    import tvm

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    got = tvm.relax.VirtualMachine(exe, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu()))
    got = (got if hasattr(got, "numpy") else got[0]).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


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


@pytest.mark.tvm
def test_tuning_builds_on_workers_and_measures_on_two_boards(ray_workers, tiny_onnx, tmp_path):
    """An RPC target's tuning call with a work pool: every candidate is built in a Ray worker
    (PoolBuilder, sent back as bytes) and measured on two loopback boards; the records it writes
    compile into a module whose outputs equal ONNX Runtime's."""
    import dataclasses

    from cosearch.compile import engine
    from cosearch.compile.deploy.rpc import LocalRPC
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.pipeline import compile_plan
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig

    db = tmp_path / "db"
    with LocalRPC(key="cosearch-builds", port=0, servers=2, session_timeout_s=60) as s:
        target = dataclasses.replace(load_target("rpc-loopback"), rpc=s)
        plan = engine.plan(from_onnx(tiny_onnx), target)
        out = engine.tune_tasks(plan.tasks, target, database_dir=db, trials=8, builders=ray_workers["pool"],
                                config=TuneConfig(trials=8, trials_per_iter=8, seed=0, patience=None, transfer=False))
    assert out.builds["where"] == "pool" and out.builds["built"] >= out.trials_run
    assert out.builds["processes"] and os.getpid() not in out.builds["processes"]
    assert out.trials_run >= 4 and out.records_written >= 1
    local = load_target("host")
    exe = compile_plan(engine.plan(from_onnx(tiny_onnx), local), db)
    _assert_equals_onnxruntime(exe, tiny_onnx)


@pytest.mark.tvm
def test_search_splits_tuning_calls_over_two_boards(ray_workers, tmp_path):
    """Real TVM: a search on an RPC target with two loopback boards and two workers runs each
    tuning call of two or more tasks as two parts, one per worker (``distributed.tune``), in
    processes other than the driver; every task gets the trials the driver gave it, the records
    reach the one database, and the front's artifacts are measured. With ``--overlap 4`` the
    archs that pass the gates (here two or more of the four) have their new tasks tuned in one
    call and are measured side by side, each by a worker on a board (``distributed.measure``)."""
    from conftest import write_target_file
    from cosearch.cli import main
    from cosearch.compile.deploy.rpc import LocalRPC

    out = tmp_path / "run"
    with LocalRPC(key="cosearch-split", port=0, servers=2, session_timeout_s=60) as s:
        tfile = write_target_file(tmp_path / "two-boards.json", "rpc-loopback", rpc={
            "tracker_host": s.tracker_host, "tracker_port": s.tracker_port, "key": s.key, "session_timeout_s": 60})
        rc = main(["search", "--target", str(tfile), "--space", "nb201", "--estimator", "naswot", "--max-archs", "4",
                   "--calibration-archs", "2", "--trials-per-task", "2", "--tune-batch", "2", "--workers", "2",
                   "--overlap", "4", "--schedules", str(tmp_path / "sched"), "--out", str(out), "--no-progress"])
    assert rc == 0
    events = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    group = [e for e in events if e["event"] == "measure" and e.get("group")]
    assert len(group) >= 2 and all(e["ok"] and e["ms"] > 0 for e in group), group
    assert all(e.get("worker") and not e["worker"].endswith(f":{os.getpid()}") for e in group)
    assert any(e["event"] == "tune" and e.get("archs") == [g["key"] for g in group] for e in events)
    tunes = [e for e in events if e["event"] == "tune"]
    split = [t for t in tunes if (t.get("builds") or {}).get("where") == "split"]
    assert split, tunes
    for t in split:
        assert t["builds"]["parts"] == 2 and os.getpid() not in t["builds"]["processes"]
        assert t["trials"] > 0 and "lost" not in t["builds"]
    records = [line for f in (tmp_path / "sched").rglob("database_tuning_record.json")
               for line in f.read_text().splitlines() if line.strip()]
    assert len(records) >= 2
    result = json.loads((out / "result.json").read_text())
    assert result["pareto"] and all(r["latency_ms"] > 0 for r in result["pareto"])


class _LostWorkerPool:
    """A fake work pool (search logic only) whose every piece of work fails as a lost worker does
    after Ray's retries: ``result()`` raises."""

    workers = 2

    def submit(self, fn, *args):
        class Lost:
            def result(self):
                raise RuntimeError("ray.exceptions.WorkerCrashedError: the worker died")
        return Lost()


@pytest.mark.tvm
def test_a_lost_build_worker_fails_only_its_candidates():
    """PoolBuilder turns a worker lost for good into that candidate's build error (data for the
    tuner), never an exception that ends the tuning call."""
    import tvm
    from tvm import te
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    from cosearch.compile.tuning.builder import PoolBuilder

    a = te.placeholder((16,), name="a")
    b = te.compute((16,), lambda i: a[i] + 1.0, name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    results = PoolBuilder(_LostWorkerPool()).build([BuilderInput(mod, tvm.target.Target("llvm"))] * 2)
    assert [r.artifact_path for r in results] == [None, None]
    assert all("worker lost" in r.error_msg and "WorkerCrashedError" in r.error_msg for r in results)


def test_split_budgets_and_merge_of_parts():
    """The split of a tuning call (largest budget first, to the lightest part; deterministic) and
    the merge of its parts: trials and per-task results added up, a lost part ends the call early,
    measurement retries summed."""
    from cosearch.distributed.tune import merge, split_budgets

    parts = split_budgets({"a": 8, "b": 4, "c": 4, "d": 2}, 2)
    assert parts == [{"a": 8, "d": 2}, {"b": 4, "c": 4}]  # d ties 8 / 8: the lower part
    assert parts == split_budgets({"d": 2, "c": 4, "b": 4, "a": 8}, 2)
    assert split_budgets({"a": 3}, 4) == [{"a": 3}]

    def part(w: str, trials: int, retried: int) -> dict:
        return {"trials": trials, "seconds": 1.0, "best_us": {w: 5.0}, "trials_per_task": {w: trials},
                "ended_early": False, "builds": {"built": trials}, "pid": 1,
                "measure": {"retried": retried, "failed": 0, "errors": ["RPCRunner: x"] * retried}}

    m = merge([part("a", 8, 1), part("b", 6, 2)], [None, None], 3.0)
    assert m["trials"] == 14 and m["trials_per_task"] == {"a": 8, "b": 6} and not m["ended_early"]
    assert m["measure"]["retried"] == 3 and m["measure"]["failed"] == 0 and len(m["measure"]["errors"]) == 3
    lost = merge([part("a", 8, 0), None], [None, "WorkerCrashedError"], 3.0)
    assert lost["ended_early"] and lost["builds"]["lost"] == ["WorkerCrashedError"] and lost["trials"] == 8


@pytest.mark.tvm
def test_a_tuning_part_writes_nothing_and_its_records_reach_the_database_through_the_driver(tiny_onnx, tmp_path):
    """Real TVM, one writer: a part of a split tuning call tunes from the driver's snapshot in a
    scratch database and never touches the run's database (its worker's schedules path here is
    another, empty folder: a node without the shared filesystem); what it found reaches the run's
    database only when the driver appends it (``absorb``), with its history, and compiles into a
    module whose output equals ONNX Runtime's."""
    from cosearch.compile import engine
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.pipeline import compile_plan
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage import history as hist
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.distributed.tune import absorb, snapshot, task_payload, tune_part
    from cosearch.search.api import worker_evaluator
    from cosearch.search.config import SearchConfig

    target = load_target("host")
    plan = engine.plan(from_onnx(tiny_onnx), target)
    task = max((t for t in plan.tasks if t.tunable), key=lambda t: float(t.features.flops))
    run_db, worker_db = tmp_path / "run-db", tmp_path / "worker-db"
    engine.tune_tasks([task], target, database_dir=run_db, trials=2,
                      config=TuneConfig(trials=2, seed=0, patience=None, transfer=False))
    before = dbmod.record_count(run_db)
    start = snapshot(run_db, [task], keep=8)
    assert start["records"] and any(e["event"] == "batch" for e in start["history"])
    spec = {"factory": worker_evaluator, "schedules": str(worker_db),
            "search": SearchConfig(space="nb201", estimator="naswot", target="host", max_archs=1).to_dict()}
    cfg = TuneConfig(trials=4, seed=1, patience=None, transfer=False)
    part = tune_part(spec, [task_payload(task)], {task.workload: 4}, cfg.to_dict(), start)
    assert part["trials"] == 4 and part["new_records"] and part["new_history"]
    assert dbmod.record_count(run_db) == before and dbmod.record_count(worker_db) == 0
    prior = [e["prior_trials"] for e in part["new_history"] if e["event"] == "batch"]
    assert prior and min(prior) >= 2  # it tuned on from the snapshot's trials, not from nothing
    assert absorb(run_db, [part, None]) == len(part["new_records"])
    assert dbmod.record_count(run_db) == before + len(part["new_records"])
    spent = hist.summarize(run_db)[task.workload]
    assert spent.trials >= 6
    exe = compile_plan(plan, run_db)
    _assert_equals_onnxruntime(exe, tiny_onnx)
