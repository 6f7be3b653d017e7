"""Every bench network is tuned into a correct module: a few real trials each, compiled with
the database, output equal to ONNX Runtime's. The networks and inputs are the benches' own
(``bench/common.load_net``): ResNet-50 and Inception v1 (the onnx package's model-zoo graphs,
seeded weights), mbv2-small and the NB201 net; SqueezeNet and ShuffleNet are tuned and
compared the same way in ``tests/test_layout.py``. Layout "auto": the zoo graphs' convs are
blocked (NCHW8c), the small nets stay NCHW."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

NETS = ("resnet50", "inception_v1", "mbv2-small", "nb201")


def _bench_common():
    spec = importlib.util.spec_from_file_location(
        "cosearch_bench_common", Path(__file__).resolve().parents[1] / "bench" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _logits(model):
    """The model without a final Softmax: with random weights a 1000-way softmax saturates to
    one-hot, which would match almost anything."""
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        model.graph.output[0].name = last.input[0]
        model.graph.node.remove(last)
    return model


@pytest.mark.parametrize("name", NETS)
def test_tuned_bench_network_equals_onnxruntime(name, tmp_path):
    import onnxruntime as ort
    import tvm

    from cosearch.compile.frontend import from_onnx
    from cosearch.compile.target import load_target
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.compile.pipeline import tune_and_compile

    common = _bench_common()
    assert name in list(common.LIGHT_MODELS) + list(common.MODELS)  # still a bench network
    model, x, _ = common.load_net(name)
    model = _logits(model)
    imported = from_onnx(model, layout="auto")
    assert imported.layout == ("NCHW8c" if name in common.LIGHT_MODELS else "NCHW")
    res = tune_and_compile(imported, load_target("host"), database_dir=tmp_path / "db",
                           config=TuneConfig(trials=4, trials_per_iter=2, seed=0, patience=None))
    assert res.trials_run > 0 and any(t.source == "tuned" for t in res.tasks)
    out = tvm.relax.VirtualMachine(res.executable, tvm.cpu())["main"](tvm.runtime.tensor(x))
    out = (out if hasattr(out, "numpy") else out[0]).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape == ref.shape and float(np.std(ref)) > 0
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))
