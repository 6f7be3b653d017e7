import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_space_nb201 import onnx_tvm_matches_torch  # noqa: E402

from cosearch.errors import CosearchError  # noqa: E402
from cosearch.space import create_space, parse_model_spec  # noqa: E402
from cosearch.space.mbv2 import DEPTHS, EXPANSIONS, KERNELS, STAGES, WIDTHS  # noqa: E402

EXAMPLE = "w0.5-k3e6d2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d1"
MOBILENET_V2 = "w1.0-k3e6d2-k3e6d3-k3e6d4-k3e6d3-k3e6d3-k3e6d1"  # the original network


@pytest.fixture(scope="module")
def space():
    return create_space("mbv2")


def test_canonical_forms(space):
    assert space.canonical(EXAMPLE) == EXAMPLE
    assert space.canonical(" W.5 - K3E6D2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d1\n") == EXAMPLE
    assert space.canonical(MOBILENET_V2.replace("w1.0", "w1")) == MOBILENET_V2
    assert space.canonical(EXAMPLE.replace("w0.5", "w0.350")) == EXAMPLE.replace("w0.5", "w0.35")
    assert parse_model_spec("mbv2:" + EXAMPLE)[1] == EXAMPLE


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("w0.5-k3e6d2", "a width and 6 stages"),
        (EXAMPLE + "-k3e3d1", "got 8 part(s)"),
        (EXAMPLE.replace("w0.5", "w0.6"), "mbv2 width: bad value 'w0.6'; accepted: w0.35, w0.5, w0.75, w1.0"),
        (EXAMPLE.replace("w0.5", "x0.5"), "mbv2 width: bad value 'x0.5'"),
        (EXAMPLE.replace("k7e6d4", "k4e6d4"), "mbv2 stage 3 (64 ch, stride 2): kernel 4 not accepted; accepted: 3, 5, 7"),
        (EXAMPLE.replace("k3e6d2", "k3e5d2"), "mbv2 stage 1 (24 ch, stride 2): expansion 5 not accepted; accepted: 3, 4, 6"),
        (EXAMPLE.replace("k5e4d3", "k5e4d5"), "mbv2 stage 2 (32 ch, stride 2): depth 5 not accepted; accepted: 1, 2, 3, 4"),
        (EXAMPLE.replace("k7e4d1", "k7e4d3"), "mbv2 stage 6 (320 ch, stride 1): depth 3 not accepted; accepted: 1, 2"),
        (EXAMPLE.replace("k3e3d3", "k3d3e3"), "mbv2 stage 4 (96 ch, stride 1): malformed 'k3d3e3'"),
    ],
)
def test_parse_errors_name_stage_and_value(space, bad, needle):
    with pytest.raises(CosearchError) as e:
        space.canonical(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kw",
    [{"resolution": 48}, {"resolution": 0}, {"resolution": 544}, {"resolution": "64"}, {"resolution": True},
     {"num_classes": 0}, {"num_classes": 2.0}],
)
def test_settings_out_of_range(kw):
    with pytest.raises(CosearchError, match="mbv2 settings out of range") as e:
        create_space("mbv2", **kw)
    assert next(iter(kw)) in str(e.value) and "accepted" in str(e.value)


def test_size_formula(space):
    expected = len(WIDTHS)
    for depths in DEPTHS:
        expected *= len(KERNELS) * len(EXPANSIONS) * len(depths)
    assert space.size() == expected == 4 * 36**5 * 18 == 4_353_564_672


def test_decisions_read_the_params_journals_hold(space):
    """The proposer's trial parameters are the decisions: a ``propose`` event's params (here
    one written by a search) must keep meaning the same arch, or a resume replays other trials."""
    params = {"w": 0.5, "s1_k": 5, "s1_e": 4, "s1_d": 4, "s2_k": 5, "s2_e": 6, "s2_d": 1, "s3_k": 5, "s3_e": 3,
              "s3_d": 2, "s4_k": 5, "s4_e": 4, "s4_d": 3, "s5_k": 5, "s5_e": 6, "s5_d": 3, "s6_k": 7, "s6_e": 4,
              "s6_d": 1}
    assert space.from_decisions(params) == "w0.5-k5e4d4-k5e6d1-k5e3d2-k5e4d3-k5e6d3-k7e4d1"
    assert [d.name for d in space.decisions()] == list(params)
    last = space.decisions()[-1]
    assert last.name == "s6_d" and last.choices == DEPTHS[-1] == (1, 2)  # the 320-channel stage's depths
    with pytest.raises(CosearchError, match="decision 's6_d': 3 is not one of its choices"):
        space.from_decisions(params | {"s6_d": 3})


def test_skeleton_matches_mobilenet_v2():
    # torchvision's mobilenet_v2() has 3,504,872 parameters (1000 classes)
    m = create_space("mbv2", num_classes=1000).build(MOBILENET_V2)
    assert sum(p.numel() for p in m.parameters()) == 3_504_872


def test_blocks_channels_and_strides(space):
    plan = space.blocks(EXAMPLE)
    assert plan["stem"] == 16 and plan["last"] == 640
    blocks = plan["blocks"]
    assert len(blocks) == 1 + 2 + 3 + 4 + 3 + 3 + 1
    assert all(c_out % 8 == 0 for _, c_out, *_ in blocks)
    assert [b[1] for b in blocks][:3] == [8, 16, 16]  # 16*0.5 -> 8, 24*0.5=12 -> 16
    assert np.prod([b[4] for b in blocks]) * 2 == 32  # total stride 32 with the stem
    assert [b[2] for b in blocks[-4:]] == [5, 5, 5, 7]
    assert all(blocks[i][0] == blocks[i - 1][1] for i in range(1, len(blocks)))


def test_encode_and_mutate_one_decision(space):
    code = space.encode(EXAMPLE)
    assert code.shape == (19,) and code.min() >= 0 and code.max() <= 1
    assert code[0] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    changed_fields = set()
    for _ in range(200):
        b = space.mutate(EXAMPLE, rng)
        diff = np.flatnonzero(space.encode(b) != code)
        assert len(diff) == 1
        changed_fields.add(int(diff[0]))
    assert changed_fields == set(range(19))  # every decision can mutate


@pytest.mark.parametrize("resolution", [32, 128])
def test_build_at_two_resolutions(resolution):
    import torch

    sp = create_space("mbv2", resolution=resolution, num_classes=7)
    shape = sp.input_shape(EXAMPLE, 2)
    assert shape == (2, 3, resolution, resolution)
    with torch.no_grad():
        assert sp.build(EXAMPLE, seed=0).eval()(torch.randn(shape)).shape == (2, 7)


@pytest.mark.tvm
def test_onnx_export_tvm_compile_matches_torch(space):
    import tvm
    from tvm import relax

    ref, out, op_types, mod = onnx_tvm_matches_torch(space, "w0.35-k3e3d1-k5e4d2-k7e6d1-k3e3d1-k5e6d1-k7e3d1")
    assert out.shape == ref.shape == (1, 10)
    assert "Clip" in op_types  # ReLU6
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-3
    # ReLU6 (Clip -> maximum/minimum) fuses into its convolution: no stand-alone clip kernels
    passes = [relax.transform.FoldBatchnormToConv2D(), relax.transform.DecomposeOpsForInference(),
              relax.transform.CanonicalizeBindings(), relax.transform.LegalizeOps(),
              relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
              relax.transform.FuseOps(), relax.transform.FuseTIR()]
    with tvm.target.Target({"kind": "llvm"}):
        fused = tvm.transform.Sequential(passes)(mod)
    kernels = [gv.name_hint for gv in fused.get_global_vars() if gv.name_hint != "main"]
    clipped = [k for k in kernels if "minimum" in k]
    # stem + stage 0's depthwise + (expand, depthwise) in each of the 7 searched blocks + head
    assert len(clipped) == 1 + 1 + 2 * 7 + 1
    assert all("conv2d" in k for k in clipped), kernels
