"""Tuning with real TVM MetaSchedule (few trials) into a per-target schedule database."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cosearch.compile import early_stop
from cosearch.compile.database import RECORD_FILE, WORKLOAD_FILE, open_database
from cosearch.compile.early_stop import Stall, TaskStats
from cosearch.compile.frontend import extract_tasks, from_torch
from cosearch.compile.target import load_target
from cosearch.compile.tune import TuneConfig, tune_and_compile
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
    assert {"extract", "tune", "merge", "compile"} <= set(res.seconds)
    # records are on disk, in MetaSchedule's format, and cover every task
    assert res.records_written > 0
    assert len((db / RECORD_FILE).read_text().splitlines()) == res.records_written
    assert len((db / WORKLOAD_FILE).read_text().splitlines()) == 4
    database = open_database(db)
    assert all(database.has_workload(t.dispatched[0]) for t in extract_tasks(imported, load_target("host")))
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_second_tune_of_same_model_uses_only_the_database(tuned_a, host):
    db, imported, ref, first = tuned_a
    before = (db / RECORD_FILE).read_text()
    res = tune_and_compile(imported, host, database_dir=db, config=TuneConfig(trials=16, trials_per_iter=4))
    assert res.trials_run == 0 and "tune" not in res.seconds
    assert [t.source for t in res.tasks] == ["db"] * 4
    best_first = {t.name: t.best_us for t in first.tasks}
    for t in res.tasks:  # best latency comes from the database's best record
        assert t.best_us == pytest.approx(best_first[t.name])
    assert (db / RECORD_FILE).read_text() == before
    np.testing.assert_allclose(_run(res.executable), ref, rtol=1e-4, atol=1e-5)


def test_model_sharing_a_conv_tunes_only_new_tasks(tuned_a, host, tmp_path):
    import shutil

    db_a, *_ = tuned_a
    db = tmp_path / "host"
    shutil.copytree(db_a, db)
    imported, ref = _imported(NetB, seed=3)  # other weights: workloads do not depend on them
    cfg = TuneConfig(trials=40, trials_per_task=4, trials_per_iter=4, seed=1, keep_records=2)
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
])
def test_batch_for(kw, n, want):
    assert TuneConfig(**kw).batch_for(n) == want


def test_compile_only_target_never_tunes_but_uses_database(tuned_a, host, tmp_path):
    db, imported, ref, _ = tuned_a
    p = tmp_path / "compile-only.json"
    p.write_text(json.dumps({"target": host.target, "measure": "none"}))
    target = load_target(str(p))
    cfg = TuneConfig(trials=16)
    fresh = tune_and_compile(imported, target, database_dir=tmp_path / "empty", config=cfg)
    assert fresh.trials_run == 0 and {t.source for t in fresh.tasks} == {"untuned"}
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
    ],
)
def test_bad_tune_config_is_rejected(kw, needle):
    with pytest.raises(CosearchError, match=needle):
        TuneConfig(**kw)


def test_config_resolves_to_dict():
    d = TuneConfig(trials=8).to_dict()
    assert d["trials"] == 8 and d["cost_model"] in ("xgb", "random") and json.dumps(d)
    assert dataclasses.replace(TuneConfig(), seed=None).seed is None


def test_stall_rule_and_registry():
    rule = Stall(patience=2, min_gain=0.1)
    assert not rule.should_stop("t", [100.0, 99.0])
    assert not rule.should_stop("t", [100.0, 80.0, 70.0])  # improving
    assert rule.should_stop("t", [100.0, 95.0, 95.0])  # < 10 % over 2 batches
    assert not rule.should_stop("t", [math.inf, math.inf, math.inf])  # nothing ran yet
    assert early_stop.create("never").should_stop("t", [1.0] * 50) is False
    assert early_stop.create("stall", patience=3).config() == {"kind": "stall", "patience": 3, "min_gain": 0.03}
    with pytest.raises(CosearchError, match="always, never, stall"):
        early_stop.create("magic")
    with pytest.raises(CosearchError, match="patience"):
        early_stop.create("stall", patience=0)


def test_task_stats_counts_failures_and_stops_once():
    stats = TaskStats(["a", "b"], early_stop.create("always"))
    assert stats.observe(0, [(None, [2e-6, 4e-6]), ("build failed", None), (None, [1e10])]) is True
    assert stats.trials[0] == 3 and stats.errors[0] == 2 and stats.best_us[0] == pytest.approx(3.0)
    assert stats.observe(0, [(None, [1e-6])]) is False  # already stopped: reported once
    assert stats.trials == [4, 0] and stats.history[0] == [pytest.approx(3.0), pytest.approx(1.0)]


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

    from cosearch.compile.tune import KernelCache, compile_with_database

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
