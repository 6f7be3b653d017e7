"""Tuning with real TVM MetaSchedule (few trials) into a per-target schedule database."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cosearch.compile.storage import history
from cosearch.compile.tuning import stop as early_stop
from cosearch.compile.storage.database import RECORD_FILE, WORKLOAD_FILE, open_database
from cosearch.compile.frontend import extract_tasks, from_torch
from cosearch.compile.target import load_target
from cosearch.compile.tuning.config import TuneConfig
from cosearch.compile.pipeline import tune_and_compile
from cosearch.errors import CosearchError


class NetA(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x)) + x
        return self.fc(x.mean((2, 3)))


class NetB(torch.nn.Module):
    """Shares A's first conv (same shapes and epilogue); the rest is new."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean((2, 3)))


X = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _imported(cls, seed=0):
    torch.manual_seed(seed)
    net = cls().eval()
    with torch.no_grad():
        ref = net(X).numpy()
    return from_torch(net, (X,)), ref


def _run(executable):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(X.numpy())).numpy()


@pytest.fixture(scope="module")
def host():
    return load_target("host")


@pytest.fixture(scope="module")
def tuned_a(host, tmp_path_factory):
    db = tmp_path_factory.mktemp("schedules") / "host"
    imported, ref = _imported(NetA)
    cfg = TuneConfig(trials=16, trials_per_iter=4, seed=0)
    return db, imported, ref, tune_and_compile(imported, host, database_dir=db, config=cfg)


def test_tune_fills_database_and_is_correct(tuned_a):
    db, imported, ref, res = tuned_a
    assert 0 < res.trials_run <= 16
    tuned = [t for t in res.tasks if t.source == "tuned"]
    assert len(tuned) == len(res.tasks) == 4, res.tasks  # 4 tasks x one batch of 4
    for t in tuned:
        assert t.trials == 4 and t.best_us is not None and 0 < t.best_us < 1e6
    assert {"extract", "tune", "compile"} <= set(res.seconds)
    # records are on disk, in MetaSchedule's format, and cover every task
    assert res.records_written > 0
    assert len((db / RECORD_FILE).read_text().splitlines()) == res.records_written
    assert len((db / WORKLOAD_FILE).read_text().splitlines()) == 4
    database = open_database(db)
    assert all(database.has_workload(t.dispatched[0]) for t in extract_tasks(imported, load_target("host")))
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_second_tune_continues_from_the_database(tuned_a, host, tmp_path):
    """A tuned model tuned again spends its trials (warm-started) and never gets worse;
    the per-task history counts both runs."""
    import shutil

    db_a, imported, ref, first = tuned_a
    db = tmp_path / "host"
    shutil.copytree(db_a, db)
    spent_before = {w: h.trials for w, h in history.summarize(db).items()}
    assert sum(spent_before.values()) == first.trials_run
    res = tune_and_compile(imported, host, database_dir=db, config=TuneConfig(trials=8, trials_per_iter=4, seed=1))
    assert res.trials_run == 8
    assert {t.source for t in res.tasks} <= {"db", "tuned"} and any(t.source == "tuned" for t in res.tasks)
    best_first = {t.name: t.best_us for t in first.tasks}
    for t in res.tasks:  # the database keeps the best record: never slower than before
        assert t.best_us <= best_first[t.name] * (1 + 1e-9)
    spent_after = {w: h.trials for w, h in history.summarize(db).items()}
    assert sum(spent_after.values()) == first.trials_run + 8
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_model_sharing_a_conv_tunes_only_new_tasks(tuned_a, host, tmp_path):
    import shutil

    db_a, *_ = tuned_a
    db = tmp_path / "host"
    shutil.copytree(db_a, db)
    imported, ref = _imported(NetB, seed=3)  # other weights: workloads do not depend on them
    # one batch per new task; cold start (transfer=False): the keep/cap logic alone (seeding has its own test)
    cfg = TuneConfig(trials=12, trials_per_task=4, trials_per_iter=4, seed=1, keep_records=2, transfer=False)
    lines_before = len((db / RECORD_FILE).read_text().splitlines())
    res = tune_and_compile(imported, host, database_dir=db, config=cfg)
    assert 3 <= res.records_written <= 6  # at most the 2 best records of each of 3 new tasks
    assert len((db / RECORD_FILE).read_text().splitlines()) == lines_before + res.records_written
    by_source = {s: [t.name for t in res.tasks if t.source == s] for s in ("db", "tuned", "untuned")}
    assert by_source["db"] == ["fused_conv2d_add_relu"], res.tasks
    assert len(by_source["tuned"]) == 3 and not by_source["untuned"], res.tasks
    assert all(t.trials == 4 for t in res.tasks if t.source == "tuned")  # per-task cap
    assert res.trials_run == 12
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_early_stop_rule_stops_tasks(host, tmp_path):
    imported, ref = _imported(NetA)
    cfg = TuneConfig(trials=40, trials_per_iter=4, seed=0)
    res = tune_and_compile(imported, host, database_dir=tmp_path / "db", config=cfg,
                           early_stop=early_stop.create("always"))
    assert res.trials_run < cfg.trials
    assert all(t.trials == 4 for t in res.tasks), res.tasks  # each task stopped after one batch
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_deadline_stops_every_task_and_keeps_what_ran(host, tmp_path):
    """``max_seconds``: a budget of wall time. The first measured batch is past a 1 ms deadline,
    so every task stops there (recorded as a ``deadline`` stop) and the module still compiles
    from what was measured. (The batch is fitted to the trials 1 ms allows: 1.)"""
    imported, ref = _imported(NetA)
    cfg = TuneConfig(trials=400, trials_per_iter=4, seed=0, patience=None, max_seconds=0.001)
    assert cfg.batch_for(4) == 1
    db = tmp_path / "db"
    res = tune_and_compile(imported, host, database_dir=db, config=cfg)
    assert res.trials_run == res.trials_per_iter == 1, res.tasks  # one batch ran, then the deadline stopped all
    stops = [e for e in history.read(db) if e["event"] == "stop"]
    assert len(stops) == len(res.tasks) - 1 and all(e["rule"] == {"kind": "deadline"} for e in stops)
    assert sum(e["before_first_batch"] for e in stops) == len(res.tasks) - 1
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_confirm_retimes_best_records_and_predictions_use_them(host, tmp_path):
    """``confirm=True``: every tuned task's best record is timed again on its own (a ``confirm``
    event with its samples); status and predictions use the confirmed µs while that record is
    the best; a second confirmation has nothing to do."""
    from cosearch.compile import engine

    imported, ref = _imported(NetA)
    db = tmp_path / "db"
    cfg = TuneConfig(trials=8, trials_per_iter=2, seed=0, patience=None, confirm=True)
    res = tune_and_compile(imported, host, database_dir=db, config=cfg)
    assert "confirm" in res.seconds
    plan = engine.plan(imported, host)
    st = engine.status(plan, db)
    events = [e for e in history.read(db) if e["event"] == "confirm"]
    assert {e["workload"] for e in events} == set(st) and all(len(e["samples"]) == 10 for e in events)
    for e in events:
        s = st[e["workload"]]
        assert e["record_us"] == round(s.best_us, 4) and s.confirmed_us == e["us"] == s.latency_us > 0
    pred = engine.predict_latency(plan, db)
    want = sum(t.weight * st[t.workload].confirmed_us for t in plan.tasks if t.tunable) / 1000
    assert pred.ms == pytest.approx(want)
    assert engine.confirm(plan.tasks, host, database_dir=db, config=cfg) == {}
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_small_budget_is_split_so_every_task_gets_a_batch(host, tmp_path):
    """8 trials, batches of 8, 4 new tasks: without fitting only one task would be tuned."""
    imported, ref = _imported(NetA)
    cfg = TuneConfig(trials=8, trials_per_iter=8, seed=0, patience=None)
    assert cfg.batch_for(4) == 2 and dataclasses.replace(cfg, fit_batch=False).batch_for(4) == 8
    res = tune_and_compile(imported, host, database_dir=tmp_path / "db", config=cfg)
    assert res.trials_per_iter == 2
    assert [t.source for t in res.tasks] == ["tuned"] * 4, res.tasks
    assert all(t.trials == 2 for t in res.tasks) and res.trials_run == 8
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw,n,want", [
    (dict(trials=64, trials_per_iter=8), 16, 4),
    (dict(trials=64, trials_per_iter=8), 4, 8),  # enough budget: unchanged
    (dict(trials=10, trials_per_iter=8), 16, 1),  # fewer trials than tasks: batches of 1
    (dict(trials=64, trials_per_iter=8, trials_per_task=2), 4, 2),
    (dict(trials=64, trials_per_iter=8, fit_batch=False), 16, 8),
    # under a clock: fitted to the trials the time is expected to allow (TRIALS_PER_S = 1)
    (dict(trials=10**6, trials_per_iter=16, max_seconds=120), 36, 3),
    (dict(trials=10**6, trials_per_iter=16, max_seconds=600), 30, 16),
])
def test_batch_for(kw, n, want):
    assert TuneConfig(**kw).batch_for(n) == want


def test_a_clock_allocates_what_it_can_allow():
    """Under a clock the trials to allocate are bounded by it (allocating TuneConfig.long's 10**6
    trials in batches of 2 took 40 s of a 40 s clock), never below one batch per task."""
    from cosearch.compile import engine

    assert engine.trials_to_allocate(TuneConfig(trials=500), 500, 10, 4) == 500
    long_ = TuneConfig.long(60)
    assert engine.trials_to_allocate(long_, 10**6, 10, 4) == 60 * engine.CLOCK_TRIALS_MARGIN
    assert engine.trials_to_allocate(TuneConfig.long(0.01), 10**6, 10, 4) == 40
    assert engine.trials_to_allocate(TuneConfig.long(60, trials=100), 100, 10, 4) == 100


def test_search_scales_with_the_kernel():
    """``wide_min_us``: a task whose kernel costs the model less than that searches narrow
    (population 64, 1 genetic iteration); unknown cost, or at or above: the configured search."""
    long_ = TuneConfig.long(60)
    assert long_.wide_min_us is not None  # the long tuning scales its search with the kernel
    assert long_.search_for(0.99 * long_.wide_min_us) == (64, 1)
    assert long_.search_for(long_.wide_min_us) == long_.search_for(None) == (long_.population, long_.genetic_iters)
    assert (long_.population, long_.genetic_iters) != (64, 1)  # wide differs from narrow
    assert TuneConfig().search_for(1.0) == (64, 1)  # wide_min_us None: as configured
    assert TuneConfig(population=32, genetic_iters=3, wide_min_us=10.0).search_for(1.0) == (32, 1)  # never wider


def test_search_scales_with_the_clock_per_task():
    """``wide_min_s_per_task``: a clock giving each task less than that runs the cheap search
    (population 64, 1 genetic iteration, random cost model); enough time, or no clock: as given."""
    long_ = TuneConfig.long(600)
    enough = int(600 // long_.wide_min_s_per_task)  # the most tasks the clock gives that much each
    assert long_.for_tasks(enough) is long_ and long_.for_tasks(0) is long_
    short = long_.for_tasks(enough + 1)
    assert (short.population, short.genetic_iters, short.cost_model) == (64, 1, "random")
    assert short.max_seconds == 600 and short.patience is None and short.for_tasks(enough + 1) == short
    assert TuneConfig(population=256, wide_min_s_per_task=20.0).for_tasks(1000).population == 256  # no clock


def test_compile_only_target_never_tunes_but_uses_database(tuned_a, host, tmp_path):
    db, imported, ref, _ = tuned_a
    p = tmp_path / "compile-only.json"
    p.write_text(json.dumps({"target": host.target, "measure": "none"}))
    target = load_target(str(p))
    cfg = TuneConfig(trials=16)
    fresh = tune_and_compile(imported, target, database_dir=tmp_path / "empty", config=cfg)
    # no records: convolutions get a seeded design-space sample, the rest the light schedule; the
    # old rule (fallback="mac") leaves the rest at TVM's default
    assert fresh.trials_run == 0 and {t.source for t in fresh.tasks} == {"fallback"}
    assert {t.name for t in fresh.tasks} > {"fused_conv2d_add_relu"}
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.storage import database as dbmod

    choices: list = []
    mac = compile_with_database(imported.mod, target, dbmod.open_database(tmp_path / "empty"), fallback="mac",
                                report=choices)
    assert {c.source for c in choices} == {"default", "fallback"}
    assert {c.name for c in choices if c.source == "fallback"} >= {"fused_conv2d_add_relu"}
    np.testing.assert_allclose(_run(mac), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_run(fresh.executable), ref, rtol=1e-4, atol=1e-5)
    reused = tune_and_compile(imported, target, database_dir=db, config=cfg)
    assert reused.trials_run == 0 and {t.source for t in reused.tasks} == {"db"}


def test_local_target_that_cannot_run_here_is_refused(tmp_path):
    p = tmp_path / "arm-local.json"
    p.write_text(json.dumps({"target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
                             "measure": "local", "export": "tar"}))
    imported, _ = _imported(NetA)
    with pytest.raises(CosearchError, match="cannot run here"):
        tune_and_compile(imported, load_target(str(p)), database_dir=tmp_path / "db", config=TuneConfig(trials=4))


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"trials": 0}, "trials"),
        ({"trials": -5}, "trials"),
        ({"trials_per_task": 0}, "trials_per_task"),
        ({"trials_per_iter": -1}, "trials_per_iter"),
        ({"patience": 0}, "patience"),
        ({"min_gain": 1.5}, "min_gain"),
        ({"cost_model": "gbm"}, "xgb, random"),
        ({"seed": -1}, "seed"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"max_seconds": True}, "max_seconds"),
        ({"wide_min_us": -1.0}, "wide_min_us"),
        ({"wide_min_us": "big"}, "wide_min_us"),
        ({"wide_min_s_per_task": -1}, "wide_min_s_per_task"),
    ],
)
def test_bad_tune_config_is_rejected(kw, needle):
    with pytest.raises(CosearchError, match=needle):
        TuneConfig(**kw)


def test_config_resolves_to_dict():
    """``to_dict`` is the whole resolved config (written next to results): through JSON and
    back it rebuilds an equal ``TuneConfig``, every field included."""
    for cfg in (TuneConfig(trials=8), TuneConfig.long(60, seed=None), TuneConfig(cost_model="xgb", patience=None)):
        d = json.loads(json.dumps(cfg.to_dict()))
        assert set(d) == {f.name for f in dataclasses.fields(TuneConfig)}
        assert TuneConfig(**d) == cfg


def test_rpc_target_without_tracker_fails_before_tuning(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = tmp_path / "rpc-nowhere.json"
    p.write_text(json.dumps({"target": {"kind": "llvm"}, "measure": "rpc",
                             "rpc": {"tracker_host": "127.0.0.1", "tracker_port": port, "key": "k", "connect_timeout_s": 1}}))
    imported, _ = _imported(NetA)
    with pytest.raises(CosearchError, match=f"rpc-nowhere.*127.0.0.1:{port}"):
        tune_and_compile(imported, load_target(str(p)), database_dir=tmp_path / "db", config=TuneConfig(trials=4))
    assert not (tmp_path / "db" / RECORD_FILE).exists()


def test_cuda_target_is_compile_only(tmp_path):
    """measure 'none': never tuned, still compiled (needs nvcc; without it a one-line error)."""
    import shutil

    imported, _ = _imported(NetA)
    target = load_target("cuda-sm90")
    if shutil.which("nvcc") is None:
        with pytest.raises(CosearchError, match="compiling for target 'cuda-sm90' failed"):
            tune_and_compile(imported, target, database_dir=tmp_path / "db", config=TuneConfig(trials=8))
        return
    res = tune_and_compile(imported, target, database_dir=tmp_path / "db", config=TuneConfig(trials=8))
    assert res.trials_run == 0 and {t.source for t in res.tasks} == {"untuned"}
    assert res.executable is not None and "tune" not in res.seconds


def test_kernel_cache_reuses_kernels_and_matches_plain_compile(tuned_a, host, tmp_path):
    """The per-kernel cached build (default on CPU) gives the plain ``tvm.compile``
    result: same outputs, a second compile of an equal module builds nothing, the
    exported library loads and runs."""
    import tvm
    from tvm import relax

    from cosearch.compile.codegen import KernelCache, compile_with_database

    db_dir, imported, ref, _ = tuned_a
    db = open_database(db_dir)
    cache = KernelCache(max_kernels=64)
    plain = compile_with_database(imported.mod, host, db, kernel_cache=None)
    first = compile_with_database(imported.mod, host, db, kernel_cache=cache)
    n = cache.misses
    assert n == len(cache) >= 4 and cache.hits == 0  # one kernel per fused function at least
    again, other = _imported(NetA, seed=5)  # other weights: same kernels
    second = compile_with_database(again.mod, host, db, kernel_cache=cache)
    assert cache.misses == n and cache.hits == n
    np.testing.assert_allclose(_run(first), _run(plain), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(first), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_run(second), other, rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.so"
    second.export_library(str(path))
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(X.numpy())).numpy(), other, rtol=1e-4, atol=1e-5)
    small = KernelCache(max_kernels=2)
    compile_with_database(imported.mod, host, db, kernel_cache=small)
    assert len(small) == 2  # oldest kernels dropped beyond the cap
    with pytest.raises(CosearchError, match="max_kernels"):
        KernelCache(max_kernels=0)


def test_tuning_survives_unnamed_log_handlers_and_logs_to_file(host, tmp_path):
    """pytest 9.2 leaves an unnamed handler on loggers; MetaSchedule's own ``create_loggers``
    crashed on it (``'NoneType' object has no attribute 'format'``). The engine creates
    MetaSchedule's loggers itself: tuning works and its log goes to the run's file."""
    import logging

    from cosearch.compile import engine

    unnamed = logging.StreamHandler()
    assert unnamed.get_name() is None
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_logger.addHandler(unnamed)
    logging.getLogger().addHandler(unnamed)
    try:
        imported, ref = _imported(NetA)
        plan = engine.plan(imported, host)
        out = engine.tune_tasks(plan.tasks, host, database_dir=tmp_path / "db", trials=4,
                                config=TuneConfig(trials=4, trials_per_iter=4, seed=0), log_dir=tmp_path / "logs")
    finally:
        ms_logger.removeHandler(unnamed)
        logging.getLogger().removeHandler(unnamed)
    assert out.trials_run == 4
    log = (tmp_path / "logs" / "tune.log").read_text()
    assert "cosearch.tvm.task_" in log  # MetaSchedule's per-task lines went to the file


def test_plan_status_predict(tuned_a, host):
    from cosearch.compile import engine

    db, imported, ref, res = tuned_a
    plan = engine.plan(imported, host)
    assert [t.name for t in plan.tasks] == [t.name for t in res.tasks]
    convs = [t for t in plan.tasks if t.features.op_kind == "conv2d"]
    assert len(convs) == 2 and all(t.features.flops > 0 for t in convs)
    assert any(t.features.shapes[0] == (1, 3, 16, 16) for t in convs)  # the first conv reads the input
    st = engine.status(plan, db)
    assert set(st) == set(plan.workloads()) and all(s.in_db and s.trials_spent > 0 for s in st.values())
    pred = engine.predict_latency(plan, db)
    expect = sum(t.weight * t.best_us for t in res.tasks) / 1000
    assert pred.ms == pytest.approx(expect, rel=1e-6) and not pred.missing
    empty = engine.predict_latency(plan, db.parent / "nothing-here", untuned_us=lambda f: 100.0)
    assert len(empty.missing) == len(set(plan.workloads())) and empty.known_ms == 0
    assert empty.ms == pytest.approx(sum(t.weight for t in plan.tasks if t.tunable) * 0.1)


def test_allocate_gives_new_tasks_a_batch_first_then_costliest():
    from cosearch.compile.tuning.stop import TaskFeatures
    from cosearch.compile.engine import PlannedTask, TaskStatus, allocate

    def task(w, weight=1, flops=1.0):
        return PlannedTask(TaskFeatures(name=w, workload=w, weight=weight, flops=flops), True)

    tasks = [task("new"), task("slow", weight=2), task("fast")]
    st = {"new": TaskStatus(False, None, 0), "slow": TaskStatus(True, 100.0, 8), "fast": TaskStatus(True, 1.0, 8)}
    b = allocate(tasks, st, trials=16, batch=4)
    assert sum(b.values()) == 16 and b["new"] >= 4
    assert b.get("slow", 0) > b.get("fast", 0)
    capped = allocate(tasks, st, trials=100, batch=4, per_task_cap=8)
    assert max(capped.values()) <= 8 and sum(capped.values()) == 24


def test_a_task_terminated_while_meta_schedule_joins_it_ends_the_call_not_the_work(host, tmp_path, monkeypatch):
    """MetaSchedule's round-robin joins the task it picks when its measurements were still
    running at its poll and returns it without looking again; a task the monitor terminated in
    that join (budget reached) then fails ``ICHECK(!task->is_terminated)``. A runner whose
    results are never ready at the poll forces the race: the call must end with every batch
    measured before it kept, not raise (the search's finishing calls hit it on the engine)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile import engine
    from cosearch.compile.tuning import runner as runners

    @derived_object
    class NotReadyAtPoll(PyRunnerFuture):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def done(self) -> bool:
            return False  # never ready when polled: the pick-and-join path joins it

        def result(self):
            return self.inner.result()

    @derived_object
    class LaggingRunner(PyRunner):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def run(self, runner_inputs):
            return [NotReadyAtPoll(f) for f in self.inner.run(runner_inputs)]

    real = runners.acquire_runner
    monkeypatch.setattr(runners, "acquire_runner", lambda target, config: LaggingRunner(real(target, config)))
    imported, _ref = _imported(NetA)
    plan = engine.plan(imported, host)
    convs = [t for t in plan.tasks if t.features.op_kind == "conv2d"]
    assert len(convs) == 2
    budgets = {convs[0].features.workload: 2, convs[1].features.workload: 6}  # the first ends below the cap
    out = engine.tune_tasks(convs, host, database_dir=tmp_path / "db", trials=8, budgets=budgets,
                            config=TuneConfig(trials=8, trials_per_iter=2, seed=0))
    assert out.scheduler_race
    assert out.trials_run >= 2 and out.tasks[convs[0].features.workload].trials == 2
    db = dbmod.open_database(tmp_path / "db")
    assert db.has_workload(convs[0].mod)  # the batches measured before the race are in the database


@pytest.mark.tvm
def test_calls_share_one_measuring_worker_which_restarts_after_it_dies(host, tmp_path):
    """A tuning call used to start its own measuring worker (a process importing TVM: 3.5 s of
    a 4.4 s call of 8 trials); calls now share one per measurement setting. A worker that died
    (killed, crashed on a kernel) is restarted by the next call, which measures as before."""
    from cosearch.compile import engine
    from cosearch.compile.tuning import runner as runners

    imported, _ref = _imported(NetA)
    plan = engine.plan(imported, host)
    conv = [t for t in plan.tasks if t.features.op_kind == "conv2d"][:1]
    cfg = TuneConfig(trials=2, trials_per_iter=2, seed=0, patience=None)
    first = engine.tune_tasks(conv, host, database_dir=tmp_path / "db", trials=2, config=cfg)
    runner = runners.acquire_runner(host, cfg)
    assert runners.acquire_runner(host, cfg) is runner  # shared, not rebuilt
    workers = list(runner.pool._worker_map.values())
    assert workers and all(w.is_alive() for w in workers)
    for w in workers:
        w._proc.kill()
        w._proc.wait()
    second = engine.tune_tasks(conv, host, database_dir=tmp_path / "db", trials=2, config=cfg)
    assert first.trials_run == 2 and second.trials_run == 2
    w = conv[0].features.workload
    assert first.tasks[w].errors == 0 and second.tasks[w].errors == 0  # measured, not failed
    assert runners.acquire_runner(host, cfg) is runner
