import csv
import io
from pathlib import Path

import numpy as np
import pytest

from cosearch.errors import CosearchError
from cosearch.space import create_space, parse_model_spec
from cosearch.space.nb201 import EDGES, OPS, benchmark_unique_str, cell_expression, parse_ops

CSV = Path("/work/shared/data/nb201_subset725.csv")
EXAMPLE = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return create_space("nb201")


def test_canonical_round_trip_and_whitespace(space):
    assert space.canonical(EXAMPLE) == EXAMPLE
    messy = " |nor_conv_3x3 ~ 0|\n+ | skip_connect~1 | none~0 |+|nor_conv_3x3~2|avg_pool_3x3~0|nor_conv_1x1~1| "
    assert space.canonical(messy) == EXAMPLE
    assert parse_model_spec("nb201:" + EXAMPLE)[1] == EXAMPLE
    assert space.size() == 15625 == len(set(space.all_archs()))


@pytest.mark.parametrize(
    "bad, needle",
    [
        (EXAMPLE.replace("nor_conv_3x3~2", "conv5x5~2"), "edge 2->3 (position 6): unknown op 'conv5x5'"),
        (EXAMPLE.replace("|none~0|", "|nonee~0|"), "edge 0->2 (position 2): unknown op 'nonee'"),
        ("|nor_conv_3x3~0|+|none~0|skip_connect~1|", "3 nodes"),
        (EXAMPLE + "+|none~0|", "3 nodes"),
        ("|nor_conv_3x3~0|+|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|", "node 2 must have 2 incoming"),
        (EXAMPLE.replace("skip_connect~1", "skip_connect~2"), "source 2; valid sources are 0..1"),
        (EXAMPLE.replace("skip_connect~1", "skip_connect~0"), "edge 0->2 (position 2): given twice"),
        (EXAMPLE.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3|+"), "malformed edge 'nor_conv_3x3'"),
        ("", "3 nodes"),
    ],
)
def test_parse_errors_name_the_edge(space, bad, needle):
    with pytest.raises(CosearchError) as e:
        space.canonical(bad)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg
    if "unknown op" in needle:
        assert all(op in msg for op in OPS)


@pytest.mark.parametrize("kw", [{"C": 0}, {"N": 2.5}, {"num_classes": -1}, {"resolution": 30}, {"C": True}])
def test_bad_settings(kw):
    with pytest.raises(CosearchError, match="nb201 settings out of range"):
        create_space("nb201", **kw)


def cell(e01, e02, e12, e03, e13, e23):
    ops = dict(zip(EDGES, (e01, e02, e12, e03, e13, e23)))
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{i}" for i in range(j)) + "|" for j in (1, 2, 3))


S, N, C1, C3, P = "skip_connect", "none", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"

SAME = [
    # dead edge: node 1 reaches the output only through 'none', so its input op is irrelevant
    (cell(C3, C1, N, S, N, C3), cell(P, C1, N, S, N, C3)),
    # edges out of a node that receives only 'none' do nothing
    (cell(N, C3, C1, S, C3, N), cell(N, C3, N, S, N, N)),
    # swapping the two intermediate nodes (node 2 not reading node 1)
    (cell(C3, C1, N, N, S, C3), cell(C1, C3, N, N, C3, S)),
    # skip passes its input through: conv(skip(x)) == conv(x)
    (cell(S, N, C3, N, N, S), cell(N, C3, N, N, N, S)),
    # adding zero: node 2 is zero, so pooling it adds nothing (the benchmark's hash keeps a '#' term)
    (cell(C3, N, N, N, C1, N), cell(C3, N, N, N, C1, P)),
    # avg pool is linear: pool(x + conv(x)) == pool(x) + pool(conv(x))
    (cell(C3, S, S, N, N, P), cell(C3, N, N, P, P, N)),
    # everything zero
    (cell(N, N, N, N, N, N), cell(C3, C1, P, N, N, N)),
]
DIFFERENT = [
    (cell(C3, N, N, N, C1, N), cell(C1, N, N, N, C3, N)),  # conv order matters
    (cell(S, N, N, S, S, N), cell(S, N, N, S, N, N)),  # x + x != x
    (cell(C3, N, N, N, C3, N), cell(C3, N, N, C3, N, N)),  # conv(conv(x)) != conv(x)
    (cell(C3, C3, N, N, S, S), cell(C3, N, N, N, S, N)),  # two convs vs one
    (cell(N, N, N, N, N, N), cell(N, N, N, S, N, N)),  # zero vs identity
]


@pytest.mark.parametrize("a, b", SAME)
def test_isomorphic_pairs_share_key(space, a, b):
    assert space.key(a) == space.key(b)


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_different_functions_have_different_keys(space, a, b):
    assert space.key(a) != space.key(b)


def test_distinct_key_counts_over_all_cells(space):
    archs = space.all_archs()
    # the benchmark's own procedure (CellStructure.to_unique_str(consider_zero=True)) -> paper's 6,466
    assert len({benchmark_unique_str(parse_ops(a)) for a in archs}) == 6466
    # ours also drops zero summands, flattens sums through skips, and distributes the linear pool
    assert len({space.key(a) for a in archs}) == 4660
    assert len({cell_expression(parse_ops(a), linear_pool=False) for a in archs}) == 4930


def test_encode_is_one_hot_per_edge(space):
    code = space.encode(EXAMPLE)
    assert code.shape == (30,) and code.dtype == np.float32
    assert np.array_equal(code.reshape(6, 5).sum(1), np.ones(6))
    assert code.reshape(6, 5)[5, OPS.index("nor_conv_3x3")] == 1.0


def test_decisions_are_the_edges_in_position_order(space):
    """``e1..e6`` are the edges in ``EDGES`` order (the order of the error messages and of
    ``encode``), the names the proposer's journalled params use."""
    ops = ("skip_connect", "nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1")
    params = {f"e{i}": op for i, op in enumerate(ops, start=1)}
    assert space.from_decisions(params) == \
        "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    assert [d.name for d in space.decisions()] == list(params)
    assert all(d.choices == OPS for d in space.decisions())


def test_mutate_changes_exactly_one_edge(space):
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = space.sample(rng)
        b = space.mutate(a, rng)
        assert sum(x != y for x, y in zip(parse_ops(a), parse_ops(b))) == 1


def _csv_rows():
    with CSV.open() as f:
        return list(csv.DictReader(f))


def test_params_match_benchmark_csv():
    """One row per distinct (#conv1x1, #conv3x3) - params depend only on those - plus CIFAR-100 and
    ImageNet16-120 rows with their class counts: the skeleton must match NAS-Bench-201 exactly."""
    rows = _csv_rows()
    classes = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
    picked: dict[tuple, dict] = {}
    for r in rows:
        ops = parse_ops(r["arch"])
        k = (r["dataset"], ops.count(C1), ops.count(C3))
        if r["dataset"] == "cifar10" or len([p for p in picked if p[0] == r["dataset"]]) < 2:
            picked.setdefault(k, r)
    assert len(picked) >= 20
    spaces = {d: create_space("nb201", num_classes=n) for d, n in classes.items()}
    for (dataset, _, _), r in picked.items():
        m = spaces[dataset].build(r["arch"], seed=0)
        n = sum(p.numel() for p in m.parameters()) / 1e6
        assert n == pytest.approx(float(r["params"]), abs=1e-6), (dataset, r["arch"])


def test_build_forward_and_zero_node(space):
    import torch

    arch = cell(N, C3, C1, S, C3, N)  # node 1 receives only 'none' but feeds a conv
    m = space.build(arch, seed=0).eval()
    x = torch.randn(space.input_shape(arch, 2))
    assert m(x).shape == (2, 10)
    small = create_space("nb201", C=8, N=1, num_classes=3, resolution=16)
    assert small.build(arch, seed=0)(torch.randn(small.input_shape(arch, 1))).shape == (1, 3)


def _randomise_bn(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return model


def onnx_tvm_matches_torch(space, arch, seed=0):
    """Export with the legacy exporter, import with TVM's ONNX frontend, untuned
    compile for llvm, run on the Relax VM; return (torch out, tvm out, onnx op types,
    imported Relax module)."""
    import onnx
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    model = _randomise_bn(space.build(arch, seed=seed).eval(), seed)
    x = torch.randn(space.input_shape(arch, 1), generator=torch.Generator().manual_seed(seed))
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["input"], output_names=["logits"])
    proto = onnx.load_from_string(buf.getvalue())
    mod = from_onnx(proto, shape_dict={"input": list(x.shape)})
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    with torch.no_grad():
        ref = model(x).numpy()
    return ref, out.numpy(), {n.op_type for n in proto.graph.node}, mod


@pytest.mark.tvm
def test_onnx_export_tvm_compile_matches_torch(space):
    # uses every op, including a node fed only by 'none' that feeds a conv (x * 0)
    arch = cell(N, C3, C1, P, C3, S)
    ref, out, op_types, _ = onnx_tvm_matches_torch(space, arch)
    assert out.shape == ref.shape == (1, 10)
    assert {"Conv", "AveragePool", "Mul"} <= op_types
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-3  # a real signal, not zeros compared with zeros
