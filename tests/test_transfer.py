"""Schedule transfer (cosearch.compile.codegen.transfer) on real TVM: a network of new shapes
compiled from a database tuned on another one takes its tuned siblings' schedules."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.compile.codegen.transfer import refit_tiles
from conftest import make_tiny_conv_onnx


@pytest.mark.parametrize("decision,extent,want", [
    ([1, 4, 2, 8], 64, [1, 4, 2, 8]),
    ([1, 4, 2, 8], 48, [3, 1, 2, 8]),
    ([2, 2, 4], 7, [7, 1, 1]),
    ([16, 1], 24, [24, 1]),
    ([1, 3, 16], 96, [2, 3, 16]),
])
def test_refit_tiles_keeps_inner_factors_that_still_divide(decision, extent, want):
    got = refit_tiles(decision, extent)
    assert got == want and int(np.prod(got)) == extent and len(got) == len(decision)


@pytest.mark.tvm
def test_new_shapes_take_their_tuned_siblings_schedules(host_tuned, tmp_path):
    import onnxruntime as ort
    import tvm

    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.codegen.transfer import distance, signature
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.storage.database import open_database

    target, db = host_tuned["target"], open_database(host_tuned["db"])
    model = make_tiny_conv_onnx(channels=12, size=24, seed=3)  # same ops as the tuned net, other shapes
    imported = from_onnx(model)
    sources = {}
    outs = {}
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)
    for transfer in (False, True):
        report: list = []
        ex = compile_with_database(imported.mod, target, db, kernel_cache=None, report=report, transfer=transfer)
        sources[transfer] = {c.name: c for c in report}
        vm = tvm.relax.VirtualMachine(ex, tvm.cpu())
        outs[transfer] = vm["main"](tvm.runtime.tensor(x)).numpy()
    convs = [n for n in sources[True] if "conv2d" in n]
    assert convs and all(sources[False][n].source == "fallback" for n in convs), sources[False]
    assert all(sources[True][n].source == "transfer" for n in convs), sources[True]
    assert all("transferred from workload" in sources[True][n].reason for n in convs)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for got in outs.values():
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

    # the donor is a same-structure kernel at a positive shape distance
    tuned = from_onnx(make_tiny_conv_onnx(channels=8, size=16)).mod
    new_f = [f for gv, f in imported.mod.functions.items() if gv.name_hint == convs[0]][0]
    sigs = {signature(f): f for gv, f in tuned.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert signature(new_f) in sigs and distance(new_f, sigs[signature(new_f)]) > 0


@pytest.mark.tvm
@pytest.mark.parametrize("per_task", [1, 4])
def test_new_tasks_start_tuning_from_the_transferred_schedule(host_tuned, tmp_path, per_task):
    """Tuning a network of new shapes on a warm database: each new conv's first trial is its
    sibling's schedule (a ``batch`` of one trial with ``source: "transfer"`` in the history, a
    record in the database), paid from the task's budget; with ``transfer=False`` none is."""
    import shutil

    import onnxruntime as ort
    import tvm

    from cosearch.compile import engine
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage import history as hist
    from cosearch.compile.tuning.config import TuneConfig

    target = host_tuned["target"]
    model = make_tiny_conv_onnx(channels=12, size=24, seed=3)
    imported = from_onnx(model)
    plan = engine.plan(imported, target)
    runs = {}
    for transfer in (True, False):
        db_dir = tmp_path / f"db-{transfer}"
        shutil.copytree(host_tuned["db"], db_dir)
        before = dbmod.open_database(db_dir)
        lines_before = len((db_dir / dbmod.RECORD_FILE).read_text().splitlines())
        new = [t for t in plan.tasks if t.tunable and not before.has_workload(t.mod)]
        convs = [t for t in new if "conv2d" in t.name]
        assert convs, [t.name for t in plan.tasks]
        out = engine.tune_tasks(new, target, database_dir=db_dir, trials=per_task * len(new),
                                config=TuneConfig(trials=per_task * len(new), trials_per_iter=4, seed=0, patience=None,
                                                  transfer=transfer),
                                budgets={t.workload: per_task for t in new})
        runs[transfer] = (db_dir, new, convs, out)
        # every record appended (the seeded ones too) is counted
        assert len((db_dir / dbmod.RECORD_FILE).read_text().splitlines()) == lines_before + out.records_written

    db_dir, new, convs, out = runs[True]
    seeded = [e for e in hist.read(db_dir) if e["event"] == "batch" and e.get("source") == "transfer"]
    assert {e["workload"] for e in seeded} >= {t.workload for t in convs}
    assert all(e["trials"] == 1 and e["best_us"] > 0 for e in seeded)
    assert out.transfer["seeded"] == len(seeded) and out.transfer["new_tasks"] == len(new)
    # the budget holds: the transferred trial is one of the task's trials
    assert all(o.trials <= per_task for o in out.tasks.values())
    assert out.trials_run == sum(o.trials for o in out.tasks.values())
    db = dbmod.open_database(db_dir)
    assert all(db.has_workload(t.mod) for t in convs)
    if per_task == 1:  # nothing but the seed ran: the database's record of the conv is the transferred one
        by_w = {e["workload"]: e["best_us"] for e in seeded}
        for t in convs:
            assert dbmod.best_us(db, t.mod) == pytest.approx(by_w[t.workload], rel=1e-3)
    assert not [e for e in hist.read(runs[False][0]) if e.get("source") == "transfer"]
    assert runs[False][3].transfer is None

    # the module compiled from the seeded database takes database records, and computes what ORT does
    report: list = []
    ex = compile_with_database(imported.mod, target, db, kernel_cache=None, report=report)
    by_name = {c.name: c.source for c in report}
    assert all(by_name[t.name] == "db" for t in convs), by_name
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)
    got = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
