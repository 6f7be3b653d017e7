"""Conv data layout chosen at import (``cosearch.compile.frontend.layout``): validated, recorded,
part of every workload, and tuned outputs still equal ONNX Runtime's on real graphs.

SqueezeNet and ShuffleNet are the onnx package's model-zoo light graphs with seeded
random weights (``bench.zoo.randomized_light``, as in tests/test_model_zoo.py),
1x3x224x224, tuned with a few real MetaSchedule trials.
With the "auto" layout ShuffleNet keeps NCHW (only grouped convs besides
its 3-channel stem: ConvertLayout is not run on it); SqueezeNet goes NCHW8c. Small
search-space networks stay NCHW under "auto" and are checked in NCHW8c explicitly.
"""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.errors import CosearchError


def test_bad_layout_is_one_line_error():
    from cosearch.compile.frontend.layout import check_layout

    with pytest.raises(CosearchError, match="layout must be auto or one of NCHW, NHWC, NCHW8c, NCHW16c, got 'NCHW4c'"):
        check_layout("NCHW4c")


def test_first_round_validated_and_fits_batch():
    from cosearch.compile.tuning.config import TuneConfig

    for bad in (0, 1.5, True, "half"):
        with pytest.raises(CosearchError, match="first_round"):
            TuneConfig(first_round=bad)
    assert TuneConfig(trials=128, trials_per_iter=16).batch_for(31) == 4
    assert TuneConfig(trials=128, trials_per_iter=16, first_round=0.5).batch_for(31) == 2
    assert TuneConfig(first_round=0.5).to_dict()["first_round"] == 0.5


def test_allocate_gives_the_rest_to_the_flops():
    """New tasks: one batch each, then the remainder to the kernel expected to cost most."""
    from cosearch.compile.tuning.stop import TaskFeatures
    from cosearch.compile.engine import PlannedTask, TaskStatus, allocate

    tasks = [PlannedTask(TaskFeatures(name=n, workload=n, weight=1, flops=f), True)
             for n, f in (("pool", 1e5), ("conv", 2e8), ("small_conv", 2e6))]
    st = {t.workload: TaskStatus(False, None, 0) for t in tasks}
    b = allocate(tasks, st, trials=64, batch=4)
    assert sum(b.values()) == 64 and min(b.values()) == 4
    assert b["conv"] > b["small_conv"] >= b["pool"]


def _ort(model, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.tvm
def test_workloads_differ_by_layout_and_nchw8c_matches_ort_untuned():
    """The layout is part of the workload (databases of two layouts never share a key);
    the converted graph computes the same thing (seeded fallback schedules, no records)."""
    from cosearch.compile import engine
    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_onnx
    from bench.zoo import randomized_light
    from cosearch.compile.target import load_target

    import tvm

    target = load_target("host")
    model = randomized_light("squeezenet")
    a, b = from_onnx(model, layout="NCHW"), from_onnx(model, layout="NCHW8c")
    assert (a.layout, b.layout) == ("NCHW", "NCHW8c")
    pa, pb = engine.plan(a, target), engine.plan(b, target)
    convs_a = {t.workload for t in pa.tasks if t.features.op_kind == "conv2d"}
    convs_b = {t.workload for t in pb.tasks if t.features.op_kind == "conv2d"}
    assert len(convs_b) >= 10 and len(convs_b - convs_a) >= len(convs_b) - 1  # the stem (3 channels) stays
    assert any(len(s) == 5 and s[-1] == 8 for t in pb.tasks for s in t.features.shapes)
    x = np.random.default_rng(1).standard_normal(b.inputs[0][1]).astype(np.float32)
    ex = compile_with_database(b.mod, target, None)
    out = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    np.testing.assert_allclose(out, _ort(model, x), rtol=1e-3, atol=1e-3)


@pytest.mark.tvm
def test_resnet50_nchw8c_blocked_and_matches_ort_untuned():
    """ResNet-50 (batch norm folded into its convs) in NCHW8c. FoldBatchnormToConv2D leaves
    ``add(running_var, 1e-5)`` with a scalar (FloatImm) operand in every conv's weight chain;
    ConvertLayout 0.27 segfaulted on it (the whole process died). Now: imported in NCHW8c
    (also under "auto"), convs blocked, weights folded to constants, and the logits (its
    final Softmax removed: with random weights it saturates to one-hot) equal ORT's."""
    import tvm

    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from bench.zoo import randomized_light

    model = randomized_light("resnet50")
    softmax = model.graph.node[-1]
    assert softmax.op_type == "Softmax"
    model.graph.output[0].name = softmax.input[0]
    model.graph.node.remove(softmax)
    imported = from_onnx(model, layout="NCHW8c")
    assert imported.layout == "NCHW8c"
    names = [gv.name_hint for gv, f in imported.mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    blocked = [n for n in names if "NCHWc" in n]
    assert len(blocked) >= 20, names  # 53 convs (the 3-channel stem stays NCHW), ~22 distinct
    assert not any("stack" in n or "sum" in n for n in names)  # residuals are adds, fused into the convs
    assert not any("multiply" in n or "sqrt" in n for n in names)  # batch-norm weight chains folded
    x = np.random.default_rng(1).standard_normal(imported.inputs[0][1]).astype(np.float32)
    ex = compile_with_database(imported.mod, load_target("host"), None)
    out = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    np.testing.assert_allclose(out, _ort(model, x), rtol=1e-3, atol=1e-3)


@pytest.mark.tvm
@pytest.mark.parametrize("name,layout", [("squeezenet", "NCHW8c"), ("shufflenet", "NCHW")])
def test_tuned_equals_ort(name, layout, tmp_path):
    """A few real trials ("auto" layout), compiled with the database: equal to ORT (1e-3)."""
    from cosearch.compile.frontend import from_onnx
    from bench.zoo import randomized_light
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    import tvm

    model = randomized_light(name)
    imported = from_onnx(model, layout="auto")
    assert imported.layout == layout  # auto: ShuffleNet's convs are grouped (or its 3-channel stem)
    x = np.random.default_rng(1).standard_normal(imported.inputs[0][1]).astype(np.float32)
    res = tune_and_compile(imported, load_target("host"), database_dir=tmp_path / "db",
                           config=TuneConfig(trials=6, trials_per_iter=2, seed=0, patience=None))
    assert res.trials_run > 0 and sum(t.source == "tuned" for t in res.tasks) >= 1
    out = tvm.relax.VirtualMachine(res.executable, tvm.cpu())["main"](tvm.runtime.tensor(x))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    np.testing.assert_allclose(out, _ort(model, x), rtol=1e-3, atol=1e-3)


@pytest.mark.tvm
@pytest.mark.parametrize("spec,settings", [
    ("nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|", {}),
    ("mbv2:w0.35-k3e3d1-k3e3d2-k3e3d2-k3e3d1-k3e3d1-k3e3d1", {"resolution": 64}),
])
def test_search_space_networks_compile_in_nchw8c(spec, settings):
    """The search spaces go through the same import: they compile in NCHW8c and match torch."""
    import torch

    from cosearch.compile.codegen import compile_with_database
    from cosearch.compile.frontend import from_torch
    from cosearch.compile.target import load_target
    from cosearch.space import parse_model_spec

    import tvm

    space, arch = parse_model_spec(spec, **settings)
    torch.manual_seed(0)
    net = space.build(arch, seed=0).eval()
    x = torch.randn(tuple(space.input_shape(arch)), generator=torch.Generator().manual_seed(0))
    imported = from_torch(net, (x,), layout="NCHW8c")
    ex = compile_with_database(imported.mod, load_target("host"), None)
    out = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)
