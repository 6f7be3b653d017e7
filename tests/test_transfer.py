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
