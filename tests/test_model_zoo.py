"""Any model compiles: the onnx package's model-zoo graphs (ResNet-50, DenseNet-121,
Inception v1; ``onnx/backend/test/data/light``, 224x224) compiled against a real
tuned database holding records that do not replay on some of their kernels, run,
and compared with ONNX Runtime.

The "light" graphs make every weight with ``ConstantOfShape`` (constant values:
the outputs are uniform and would match anything), so ``bench.zoo``
replaces those with seeded random initializers of the same shapes; workloads
depend on shapes and ops only, so the kernels are the same.

The database comes from a real MetaSchedule tuning (a few trials) of ResNet-50's
``stack``+``sum`` tasks (its residual additions), the records that broke
``tvm.compile`` in the field: anchor-block matching applies them to the
``broadcast_to``+``stack``+``sum`` kernels, whose loop nests differ, and the
trace replay fails with ``Check failed: old_outputs.size() == new_outputs.size()``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

MODELS = ("resnet50", "densenet121", "inception_v1")


def _randomized(name: str):
    """The zoo graph ``name``. They ship inside the ``onnx`` package this project requires, so
    a missing one is a broken environment or an onnx release that dropped them: that fails
    (loudly, saying which), it is not a reason to skip the only any-model compile test."""
    from bench.zoo import randomized_light

    try:
        return randomized_light(name)
    except FileNotFoundError as e:
        import onnx

        pytest.fail(f"the model-zoo graph {name!r} is missing: {e} (onnx {onnx.__version__}); pin an onnx "
                    "that ships onnx/backend/test/data/light or give the test another source", pytrace=False)


def _ort(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _run(executable, x: np.ndarray) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    return (out if hasattr(out, "numpy") else out[0]).numpy()


@pytest.fixture(scope="module")
def zoo():
    from cosearch.compile.frontend import from_onnx

    out = {}
    for name in MODELS:
        model = _randomized(name)
        imported = from_onnx(model)
        x = np.random.default_rng(1).standard_normal(imported.inputs[0][1]).astype(np.float32)
        out[name] = (imported, x, _ort(model, x))
    return out


@pytest.fixture(scope="module")
def tuned_db(zoo, tmp_path_factory):
    """A shared database dir holding real records of ResNet-50's stack+sum tasks, tuned
    through the engine (2 trials each, records appended per batch)."""
    from cosearch.compile import engine
    from cosearch.compile.storage.database import open_database
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig

    target = load_target("host")
    plan = engine.plan(zoo["resnet50"][0], target)
    tasks = [t for t in plan.tasks if t.tunable and "stack" in t.name and "sum" in t.name]
    assert tasks, "ResNet-50 has no stack+sum task"
    db_dir = tmp_path_factory.mktemp("zoo-schedules")
    cfg = TuneConfig(trials=2 * len(tasks), trials_per_iter=2, seed=0, population=8, init_min_unmeasured=4,
                     number=2, repeat=1, task_scheduler="round-robin", patience=None)
    out = engine.tune_tasks(tasks, target, database_dir=db_dir, trials=cfg.trials, config=cfg,
                            budgets={t.workload: 2 for t in tasks})
    assert out.records_written > 0
    return target, open_database(db_dir)


def test_stock_tvm_fails_on_this_database(zoo, tuned_db):
    """The database really holds records TVM's own pass cannot apply to ResNet-50."""
    import tvm
    from tvm.relax.transform import MetaScheduleApplyDatabase

    target, db = tuned_db
    with target.tvm_target(), db, tvm.transform.PassContext(opt_level=3):
        with pytest.raises(Exception, match="old_outputs.size"):
            MetaScheduleApplyDatabase(enable_warning=False)(zoo["resnet50"][0].mod)


@pytest.mark.parametrize("name", MODELS)
def test_model_compiles_and_matches_onnxruntime(zoo, tuned_db, name):
    from cosearch.compile.codegen import fallback as fb
    from cosearch.compile.codegen import compile_with_database

    target, db = tuned_db
    imported, x, ref = zoo[name]
    report: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", fb.ScheduleWarning)
        executable = compile_with_database(imported.mod, target, db, report=report)
    got = _run(executable, x)
    assert got.shape == ref.shape
    assert float(np.std(ref)) > 0  # the randomized weights make a non-degenerate output
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))
    sources = {c.source for c in report}
    assert "fallback" in sources  # untuned convs got a fallback, not TVM's serial default
    if name == "resnet50":
        skipped = [c for c in report if c.skipped]
        assert skipped and all(c.source in ("fallback", "default") for c in skipped)
        assert any(c.source == "db" for c in report)  # the records that do replay are used
        msgs = [str(w.message) for w in caught if issubclass(w.category, fb.ScheduleWarning)]
        for c in skipped:
            assert any(c.name in m and c.workload in m for m in msgs) or fb.cache_stats()["verdict_hits"], c
