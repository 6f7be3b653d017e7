"""Selective tensor-intrinsic import: a fresh process tuning for x86 gets the
x86 intrinsics but not the other backends', and can still add them later."""

import subprocess
import sys
import textwrap


def test_x86_target_imports_only_x86_intrinsics_then_arm_on_demand():
    code = textwrap.dedent(
        """
        import sys, tvm
        from tvm.s_tir import TensorIntrin
        from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics
        got = ensure_tensor_intrinsics(tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu"}))
        assert got == {"x86"}, got
        assert "tvm.s_tir.tensor_intrin.rocm" not in sys.modules
        assert "tvm.s_tir.tensor_intrin.cuda" not in sys.modules
        assert TensorIntrin.get("dot_16x4_vnni") is not None
        try:
            TensorIntrin.get("dot_4x4_i8i8s32_neon")
            raise SystemExit("neon intrinsics should not be registered yet")
        except Exception as e:
            if isinstance(e, SystemExit):
                raise
        import tvm.s_tir.tensor_intrin  # what TuneContext does: now a no-op
        got = ensure_tensor_intrinsics(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}))
        assert got == {"arm_cpu"}, got
        assert TensorIntrin.get("dot_4x4_i8i8s32_neon") is not None
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


def test_needed_backends_by_target_kind():
    import tvm

    from cosearch.compile.codegen.intrin import needed_backends

    assert needed_backends(tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})) == {"arm_cpu"}
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_90"}, host={"kind": "llvm", "mtriple": "x86_64-linux-gnu"})
    assert needed_backends(cuda) == {"cuda", "x86"}
