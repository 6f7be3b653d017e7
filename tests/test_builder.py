"""The in-process MetaSchedule builder: threaded builds keep order, failures are data."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir.meta_schedule.builder import BuilderInput

from cosearch.compile.tuning.builder import InProcessBuilder


def _add_one(n: int) -> tvm.IRModule:
    a = te.placeholder((n,), "float32", name="a")
    b = te.compute((n,), lambda i: a[i] + 1.0, name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


@pytest.mark.parametrize("workers", [1, 2])
def test_builds_in_order_and_records_failures(workers, tmp_path):
    target = tvm.target.Target({"kind": "llvm"})
    sizes = [8, 16, None, 32, 64]
    no_llvm_backend = tvm.target.Target({"kind": "llvm", "mtriple": "nonexistent-arch-none"})
    inputs = [BuilderInput(_add_one(n or 8), target if n else no_llvm_backend) for n in sizes]
    results = InProcessBuilder(tmp_root=str(tmp_path), workers=workers).build(inputs)
    assert len(results) == len(sizes)
    for n, r in zip(sizes, results):
        if n is None:
            assert r.artifact_path is None and "InProcessBuilder" in r.error_msg
            continue
        assert r.error_msg is None and os.path.exists(r.artifact_path), r.error_msg
        lib = tvm.runtime.load_module(r.artifact_path)  # the runner links the object on load
        a = tvm.runtime.tensor(np.arange(n, dtype="float32"))
        b = tvm.runtime.tensor(np.zeros(n, dtype="float32"))
        lib["main"](a, b)
        np.testing.assert_array_equal(b.numpy(), np.arange(n, dtype="float32") + 1)  # right kernel, right slot
