"""Compiling with a schedule database: records that do not replay are skipped (never
fatal), kernels without a usable record get a parallel + vectorised fallback (MAC kernels: a
design-space sample; the others: the light schedule).
Real TVM, a tiny conv net (16x16), no tuning: records are built by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cosearch.compile.codegen import fallback as fb
from cosearch.compile.codegen import KernelCache, compile_with_database
from cosearch.compile.frontend import from_onnx
from cosearch.compile.target import load_target
from cosearch.errors import CosearchError

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def setup(tiny_onnx):
    from tvm import tirx

    target = load_target("host")
    imported = from_onnx(tiny_onnx)
    convs = sorted(gv.name_hint for gv, f in imported.mod.functions.items()
                   if isinstance(f, tirx.PrimFunc) and "conv2d" in gv.name_hint)
    assert len(convs) == 2, convs  # 3->8 conv (stride 1) and 8->8 conv (stride 2)
    x = np.random.default_rng(0).standard_normal(imported.inputs[0][1]).astype(np.float32)
    return target, imported, convs, x


def _run(executable, x):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    return (out if hasattr(out, "numpy") else out[0]).numpy()


def _task_mod(imported, name):
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    return _normalize_mod(imported.mod[name])


def _bad_database(setup):
    """An anchor-block database whose only record, filed under conv B's workload,
    carries a trace sampled on the ``mean`` kernel: it matches B but cannot replay on
    it (its instructions name blocks and loops B does not have)."""
    from tvm.s_tir import meta_schedule as ms

    target, imported, (a, b), _ = setup
    tgt = target.tvm_target()
    mod_a, mod_b = _task_mod(imported, a), _task_mod(imported, b)
    trace = _trace_on(_task_mod(imported, "mean"), tgt)
    db = ms.database.MemoryDatabase(module_equality="anchor-block")
    wl = db.commit_workload(mod_b)
    db.commit_tuning_record(ms.database.TuningRecord(trace, wl, [1e-5], tgt, ms.arg_info.ArgInfo.from_prim_func(mod_b["main"])))
    assert db.has_workload(mod_b) and not db.has_workload(mod_a)
    return db, b


def _trace_on(mod, tgt):
    """The trace of a design-space sample of ``mod`` (what a tuning record holds)."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics

    ensure_tensor_intrinsics(tgt)
    ctx = ms.TuneContext(mod=mod, target=tgt, space_generator="post-order-apply", task_name="t", num_threads=1,
                         rand_state=0)
    return ctx.generate_design_space()[0].trace


def test_stock_tvm_pass_fails_on_the_bad_record(setup):
    """The constructed record really is one TVM cannot apply (the bug we guard against)."""
    import tvm
    from tvm.relax.transform import MetaScheduleApplyDatabase

    target, imported, _, _ = setup
    db, _ = _bad_database(setup)
    with target.tvm_target(), db, tvm.transform.PassContext(opt_level=3):
        with pytest.raises(Exception):
            MetaScheduleApplyDatabase(enable_warning=False)(imported.mod)


def test_non_replaying_record_is_skipped_with_a_warning(setup):
    target, imported, (a, b), x = setup
    db, bad = _bad_database(setup)
    fb.clear_caches()
    report: list = []
    with pytest.warns(fb.ScheduleWarning) as caught:
        ex = compile_with_database(imported.mod, target, db, report=report, kernel_cache=KernelCache())
    workload = "%016x" % (__import__("tvm_ffi").structural_hash(_task_mod(imported, bad)) & (2**64 - 1))
    msgs = [str(w.message) for w in caught if issubclass(w.category, fb.ScheduleWarning)]
    assert any(bad in m and workload in m for m in msgs), msgs
    by_name = {c.name: c for c in report}
    assert by_name[bad].source == "fallback" and by_name[bad].skipped == 1 and by_name[bad].workload == workload
    assert "did not replay" in by_name[bad].reason
    assert by_name[a].source == "fallback" and by_name[a].skipped == 0
    ref = _run(compile_with_database(imported.mod, target, None, fallback="none", kernel_cache=KernelCache()), x)
    np.testing.assert_allclose(_run(ex, x), ref, rtol=1e-4, atol=1e-5)

    # the verdict is cached: a second compile replays nothing and warns no more
    before = fb.cache_stats()["verdict_hits"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", fb.ScheduleWarning)
        fb.apply_schedules(imported.mod, target.tvm_target(), db)
    assert fb.cache_stats()["verdict_hits"] == before + 1


def test_a_replaying_record_is_used(setup):
    """A record whose trace was sampled on its own workload is applied (source "db")."""
    from tvm.s_tir import meta_schedule as ms

    target, imported, (a, _), _ = setup
    tgt = target.tvm_target()
    mod_a = _task_mod(imported, a)
    db = ms.database.MemoryDatabase(module_equality="anchor-block")
    wl = db.commit_workload(mod_a)
    db.commit_tuning_record(ms.database.TuningRecord(_trace_on(mod_a, tgt), wl, [1e-5], tgt,
                                                     ms.arg_info.ArgInfo.from_prim_func(mod_a["main"])))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fb.ScheduleWarning)
        _, choices = fb.apply_schedules(imported.mod, tgt, db)
    assert {c.name: c.source for c in choices}[a] == "db"


def _loop_kinds(func) -> set[str]:
    """Loop kinds in the scheduled TIR (TVMScript ``T.parallel`` / ``T.vectorized`` / ...)."""
    import re

    return set(re.findall(r"T\.(parallel|vectorized|serial|unroll)\(", func.script()))


def test_fallback_is_parallel_vectorised_and_equal_to_default(setup):
    target, imported, convs, x = setup
    tgt = target.tvm_target()
    default_mod, dchoices = fb.apply_schedules(imported.mod, tgt, None, fallback="none")
    fb_mod, choices = fb.apply_schedules(imported.mod, tgt, None, fallback="auto")
    assert {c.source for c in dchoices} == {"default"}
    sources = {c.name: c.source for c in choices}
    for name in convs:
        assert sources[name] == "fallback"
        kinds = _loop_kinds(fb_mod[name])
        assert {"parallel", "vectorized"} <= kinds, kinds
        assert not {"parallel", "vectorized"} & _loop_kinds(default_mod[name])
    # deterministic: the same seed gives the same schedule
    again, _ = fb.apply_schedules(imported.mod, tgt, None, fallback="auto")
    import tvm_ffi

    fb.clear_caches()
    fresh, _ = fb.apply_schedules(imported.mod, tgt, None, fallback="auto")
    assert all(tvm_ffi.structural_equal(fresh[n], again[n]) for n in convs)
    y_default = _run(compile_with_database(imported.mod, target, None, fallback="none", kernel_cache=KernelCache()), x)
    y_fb = _run(compile_with_database(imported.mod, target, None, fallback="auto", kernel_cache=KernelCache()), x)
    np.testing.assert_allclose(y_fb, y_default, rtol=1e-4, atol=1e-5)


def test_kernels_that_are_not_mac_get_the_light_schedule(setup):
    """The global-average-pool kernel (a reduction over one operand, not a MAC): "auto" gives it
    ``light_schedule`` (parallel and/or vectorised loops, nothing unrolled), "mac" (the previous
    rule) keeps TVM's serial default; the compiled outputs are equal."""
    target, imported, _convs, x = setup
    tgt = target.tvm_target()
    fb.clear_caches()
    light, choices = fb.apply_schedules(imported.mod, tgt, None, fallback="auto")
    old, old_choices = fb.apply_schedules(imported.mod, tgt, None, fallback="mac")
    mean = next(c.name for c in choices if "mean" in c.name)
    assert {c.name: c.source for c in choices}[mean] == "fallback"
    assert {c.name: c.source for c in old_choices}[mean] == "default"
    kinds = _loop_kinds(light[mean])
    assert kinds & {"parallel", "vectorized"} and "unroll" not in kinds, kinds
    assert not {"parallel", "vectorized"} & _loop_kinds(old[mean])
    y_old = _run(compile_with_database(imported.mod, target, None, fallback="mac", kernel_cache=KernelCache()), x)
    y_new = _run(compile_with_database(imported.mod, target, None, fallback="auto", kernel_cache=KernelCache()), x)
    np.testing.assert_allclose(y_new, y_old, rtol=1e-4, atol=1e-5)


def test_light_schedule_of_softmax_is_not_rfactored_and_exact():
    """Softmax (two reductions: max and sum) is where a design-space sample went wrong (rfactor
    and a moved compute: 8 ms against TVM's 0.004 ms): the light schedule keeps its four
    blocks, adds no rfactor block, and computes what numpy does."""
    import tvm
    from tvm import te, topi

    x = te.placeholder((1, 1000), name="x")
    mod = tvm.IRModule({"main": te.create_prim_func([x, topi.nn.softmax(x)])})
    target = load_target("host").tvm_target()
    func = fb.light_schedule(mod, target)
    assert func is not None
    text = func.script()
    assert "_rf" not in text and "unroll" not in _loop_kinds(func)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
    a = np.random.default_rng(0).standard_normal((1, 1000)).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((1, 1000), np.float32))
    lib["main"](tvm.runtime.tensor(a), out)
    e = np.exp(a - a.max())
    np.testing.assert_allclose(out.numpy(), e / e.sum(), rtol=1e-5, atol=1e-7)


def test_bad_fallback_value_is_rejected(setup):
    target, imported, _, _ = setup
    with pytest.raises(CosearchError, match="fallback must be one of auto, mac, none, got 'fast'"):
        compile_with_database(imported.mod, target, None, fallback="fast")


# ------------------------------------------------------------------ small kernels run serial
def _postprocessed_trace(mod, tgt):
    """The trace of a design-space sample with every postprocessor applied (what a tuner's
    record holds: its parallel / vectorise instructions included)."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics

    ensure_tensor_intrinsics(tgt)
    ctx = ms.TuneContext(mod=mod, target=tgt, space_generator="post-order-apply", task_name="t", num_threads=1,
                         rand_state=0)
    for space in ctx.generate_design_space():
        sch = space.copy()
        if all(p.apply(sch) for p in ctx.space_generator.postprocs):
            return sch.trace
    raise AssertionError("no design-space sample passes the postprocessors")


def _timed_database(setup, secs: dict[str, float]):
    """A database with one record per named conv, its run time set to ``secs[name]``."""
    from tvm.s_tir import meta_schedule as ms

    target, imported, _, _ = setup
    tgt = target.tvm_target()
    db = ms.database.MemoryDatabase(module_equality="anchor-block")
    for name, s in secs.items():
        mod = _task_mod(imported, name)
        wl = db.commit_workload(mod)
        db.commit_tuning_record(ms.database.TuningRecord(_postprocessed_trace(mod, tgt), wl, [s], tgt,
                                                         ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
    return db


def test_small_kernels_lose_their_parallel_loops_and_compute_the_same(setup):
    """codegen.serial: the conv whose record ran 1 µs and the light kernels moving a few KB are
    compiled without a parallel loop, the 100 µs conv keeps its; threshold 0 changes nothing;
    every build computes what the all-parallel one does."""
    from cosearch.compile.codegen.serial import serialize_small

    target, imported, (a, b), x = setup
    tgt = target.tvm_target()
    db = _timed_database(setup, {a: 1e-6, b: 1e-4})
    scheduled, choices = fb.apply_schedules(imported.mod, tgt, db)
    by = {c.name: c for c in choices}
    assert by[a].source == by[b].source == "db" and by[a].us == pytest.approx(1.0) and by[b].us == pytest.approx(100.0)
    assert "parallel" in _loop_kinds(scheduled[a]) and "parallel" in _loop_kinds(scheduled[b])
    small, marked = serialize_small(scheduled, choices, 2.0, originals=imported.mod)
    by = {c.name: c for c in marked}
    assert by[a].serial and not by[b].serial
    assert "parallel" not in _loop_kinds(small[a]) and "vectorized" in _loop_kinds(small[a])
    assert "parallel" in _loop_kinds(small[b])
    assert by["mean"].serial  # a light kernel of a few KB, no record
    same, unmarked = serialize_small(scheduled, choices, 0.0, originals=imported.mod)
    assert same is scheduled and not any(c.serial for c in unmarked)

    reports: dict[float, list] = {}
    ys = {}
    for below in (0.0, 2.0, float("inf")):
        reports[below] = []
        ys[below] = _run(compile_with_database(imported.mod, target, db, report=reports[below],
                                               serial_below_us=below, kernel_cache=KernelCache()), x)
    assert not any(c.serial for c in reports[0.0])
    assert {c.name for c in reports[2.0] if c.serial} >= {a, "mean"}
    assert b not in {c.name for c in reports[2.0] if c.serial} and b in {c.name for c in reports[float("inf")] if c.serial}
    for below in (2.0, float("inf")):
        np.testing.assert_allclose(ys[below], ys[0.0], rtol=1e-5, atol=1e-6)


def test_a_kernel_that_does_not_round_trip_keeps_its_parallel_loops(setup, monkeypatch):
    """A TVMScript round trip that fails leaves the kernel as scheduled: never a failed compile."""
    import tvm

    target, imported, (a, b), x = setup
    db = _timed_database(setup, {a: 1e-6, b: 1e-4})
    want = _run(compile_with_database(imported.mod, target, db, serial_below_us=0.0, kernel_cache=KernelCache()), x)

    def broken(*_a, **_k):
        raise tvm.error.DiagnosticError("cannot parse")

    monkeypatch.setattr(tvm.script, "from_source", broken)
    report: list = []
    got = _run(compile_with_database(imported.mod, target, db, report=report, serial_below_us=2.0,
                                     kernel_cache=KernelCache()), x)
    assert report and not any(c.serial for c in report)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_artifact_task_lists_say_which_kernels_run_serial():
    from cosearch.compile.deploy.artifact import _task_dict
    from cosearch.compile.pipeline import TaskReport

    assert _task_dict(TaskReport("k", "db", 8, 1.5, serial=True))["serial"] is True
    assert _task_dict(TaskReport("k", "db", 8, 1.5))["serial"] is False
