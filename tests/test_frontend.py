"""Import: torch and ONNX paths compile (untuned) to a Relax VM that matches torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosearch.compile.frontend import extract_tasks, from_onnx, from_torch, torch_to_onnx
from cosearch.compile.target import load_target
from cosearch.errors import CosearchError


class TinyConvNet(torch.nn.Module):
    """conv-bn-relu, conv-relu + residual, global pool, linear."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, c, 3, padding=1)
        self.b1 = torch.nn.BatchNorm2d(c)
        self.c2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.fc = torch.nn.Linear(c, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.c2(x)) + x
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def net_and_input():
    torch.manual_seed(0)
    net = TinyConvNet().eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        net.b1.running_mean.uniform_(-0.5, 0.5)
        net.b1.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = net(x).numpy()
    return net, x, ref


def _run_untuned(imported, x):
    import tvm
    from tvm import relax

    ex = tvm.compile(imported.mod, target=load_target("host").tvm_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x.numpy())).numpy()


def test_torch_import_matches_torch(net_and_input):
    net, x, ref = net_and_input
    imported = from_torch(net, (x,))
    assert imported.inputs == [("input", (1, 3, 16, 16), "float32")]
    assert set(imported.seconds) == {"export", "import", "lower"}
    assert len(imported.onnx_model.graph.node) > 0
    np.testing.assert_allclose(_run_untuned(imported, x), ref, rtol=1e-4, atol=1e-5)
    assert net.training is False


def test_onnx_file_import_matches_torch(net_and_input, tmp_path):
    import onnx

    net, x, ref = net_and_input
    p = tmp_path / "tiny.onnx"
    onnx.save(torch_to_onnx(net, (x,)), str(p))
    imported = from_onnx(p)
    np.testing.assert_allclose(_run_untuned(imported, x), ref, rtol=1e-4, atol=1e-5)
    # also straight from a ModelProto and from bytes
    assert from_onnx(onnx.load(str(p))).inputs == imported.inputs
    assert from_onnx(p.read_bytes()).inputs == imported.inputs


def test_extract_tasks_fuses_epilogues(net_and_input):
    net, x, _ = net_and_input
    tasks = extract_tasks(from_torch(net, (x,)), load_target("host"))
    names = [t.task_name for t in tasks]
    # BN folded + bias/relu/residual fused into the two convs: exactly two conv tasks
    assert sum("conv2d" in n for n in names) == 2, names
    assert all("batch_norm" not in n for n in names), names
    assert any("relu" in n for n in names if "conv2d" in n), names


@pytest.mark.parametrize("payload", [b"this is not an onnx model", b""])
def test_malformed_onnx_bytes_file(tmp_path, payload):
    p = tmp_path / "bad.onnx"
    p.write_bytes(payload)
    with pytest.raises(CosearchError) as e:
        from_onnx(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_invalid_onnx_graph_and_missing_file(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["missing_input"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CosearchError, match="not a valid ONNX model"):
        from_onnx(model)
    with pytest.raises(CosearchError, match="does not exist"):
        from_onnx(tmp_path / "absent.onnx")
    with pytest.raises(CosearchError, match="accepted: a path, bytes or an onnx.ModelProto"):
        from_onnx(42)


def test_nb201_network_imports_exactly():
    """A NAS-Bench-201 cell network (the co-search's main space): the numpy constant
    pre-fold and BN folding keep outputs equal to torch."""
    from cosearch.space import create_space

    space = create_space("nb201", C=8, N=1)
    arch = space.canonical("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    net = space.build(arch, seed=0).eval()
    x = torch.randn(*space.input_shape(arch, 1), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x).numpy()
    imported = from_torch(net, (x,))
    np.testing.assert_allclose(_run_untuned(imported, x), ref, rtol=1e-4, atol=1e-4)


class ThreadsSeen(torch.nn.Module):
    """Runs ``net``, noting torch's thread count each time the exporter traces it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.threads: list[int] = []

    def forward(self, x):
        self.threads.append(torch.get_num_threads())
        return self.net(x)


def test_export_uses_one_thread_and_restores_torch_threads(net_and_input):
    """The exporter's trace runs single-threaded (much faster on a loaded machine);
    the caller's torch thread count is restored afterwards, also when the export fails."""
    net, x = net_and_input[:2]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = ThreadsSeen(net)
        imported = from_torch(seen, (x,))
        assert seen.threads and set(seen.threads) == {1}, seen.threads  # traced, single-threaded
        assert torch.get_num_threads() == 2 and len(imported.onnx_model.graph.node) > 0
        with pytest.raises(CosearchError, match="torch.onnx.export failed"):
            torch_to_onnx(seen, ("not a tensor",))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_memoised_legalization_gives_the_same_module(net_and_input):
    """Lowering the same import again reuses legalized PrimFuncs and yields a
    structurally equal module (same kernels, same graph); outputs stay exact."""
    import tvm_ffi
    from tvm.relax.frontend.onnx import from_onnx as relax_from_onnx

    from cosearch.compile.frontend import importer as frontend

    net, x, ref = net_and_input
    imported = from_torch(net, (x,))
    raw = relax_from_onnx(imported.onnx_model, shape_dict={"input": [1, 3, 16, 16]},
                          keep_params_in_input=False, sanitize_input_names=False)
    cache = frontend._LEGALIZE_CACHE
    saved, limit = cache.entries, cache.max_entries
    try:
        cache.entries, cache.max_entries = {}, 0  # plain LegalizeOps
        plain = frontend.lower(raw)
        cache.max_entries = limit
        first = frontend.lower(raw)
        hits = cache.hits
        assert cache.entries  # remembered
        second = frontend.lower(raw)
        assert cache.hits > hits
    finally:
        cache.entries, cache.max_entries = saved, limit
    assert tvm_ffi.structural_equal(plain, first) and tvm_ffi.structural_equal(first, second)
    np.testing.assert_allclose(_run_untuned(frontend.ImportedModel(second, imported.inputs, imported.onnx_model), x),
                               ref, rtol=1e-4, atol=1e-5)
