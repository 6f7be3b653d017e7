"""Code generation: ``tvm.compile`` of a lowered model with a schedule database applied
(``build``), a schedule for every kernel (``fallback``: records that replay, else a seeded
fallback) and the tensor intrinsics a target can use (``intrin``)."""

from cosearch.compile.codegen.build import KERNEL_CACHE, KernelCache, compile_with_database

__all__ = ["KERNEL_CACHE", "KernelCache", "compile_with_database"]
