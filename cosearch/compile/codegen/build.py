"""Compiling a lowered model with a schedule database applied.

``compile_with_database(mod, target, database)``: ``tvm.compile`` of an already
lowered + fused Relax module with the database's schedules applied kernel by kernel
(``fallback.apply_schedules``: records that do not replay are skipped, kernels
without a usable record get a fallback schedule on CPU targets); on LLVM targets
every scheduled kernel is built on its own through ``KernelCache`` (reused across
architectures within a process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError
from cosearch.compile.codegen.serial import SERIAL_BELOW_US

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.codegen.fallback import KernelChoice
    from cosearch.compile.target import TargetSpec


class KernelCache:
    """Compiled CPU kernels, reused across architectures within a process.

    ``tvm.compile`` spends most of its time in LLVM (TIR pipeline, codegen and, when
    the VM loads the module, JIT to machine code) for every kernel of every
    architecture, although a co-search compiles the same scheduled kernels again
    and again (same workload, same database record). Here each scheduled PrimFunc
    is built on its own, named after its structural hash (``cs_k<hex>``), and kept;
    the VM executable links the kernel modules it needs. The key is the target plus
    the scheduled function, so a new database record or a different target is a
    miss, never a stale kernel. The oldest entries are dropped beyond
    ``max_kernels``."""

    def __init__(self, max_kernels: int = 2048) -> None:
        if isinstance(max_kernels, bool) or not isinstance(max_kernels, int) or max_kernels <= 0:
            raise CosearchError(f"KernelCache max_kernels must be a positive integer, got {max_kernels!r}")
        from collections import OrderedDict

        self.max_kernels = max_kernels
        self._mods: "OrderedDict[tuple[str, str], tuple[Any, Any]]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._mods)

    def clear(self) -> None:
        self._mods.clear()
        self.hits = self.misses = 0

    def build(self, kernel_mod: "tvm.IRModule", target: "tvm.target.Target", name: str):
        """The runtime module of ``kernel_mod`` (one PrimFunc called ``name``)."""
        import tvm
        import tvm_ffi

        key = (str(target), name)
        hit = self._mods.get(key)
        if hit is not None and tvm_ffi.structural_equal(hit[0], kernel_mod):
            self._mods.move_to_end(key)
            self.hits += 1
            return hit[1]
        self.misses += 1
        lib = tvm.tirx.build(kernel_mod, target=target, pipeline="default")
        self._mods[key] = (kernel_mod, lib)
        while len(self._mods) > self.max_kernels:
            self._mods.popitem(last=False)
        return lib


KERNEL_CACHE = KernelCache()


def _canonical_kernel_names(mod: "tvm.IRModule") -> "tvm.IRModule":
    """Rename every PrimFunc to ``cs_k<structural hash>`` (equal kernels share one)."""
    import tvm
    import tvm_ffi
    from tvm import relax, tirx
    from tvm.relax.expr_functor import PyExprMutator, mutator

    funcs: dict[str, Any] = {}  # canonical name -> function
    names: dict[Any, str] = {}  # old GlobalVar -> canonical name
    for gv, f in mod.functions.items():
        if isinstance(f, tirx.PrimFunc):
            bare = f.without_attr("global_symbol") if f.attrs and "global_symbol" in f.attrs else f
            name = "cs_k%016x" % (tvm_ffi.structural_hash(bare) & (2**64 - 1))
            funcs.setdefault(name, bare.with_attr("global_symbol", name))
            names[gv] = name
    bb = relax.BlockBuilder()
    new_gvs = {name: bb.add_func(f, name) for name, f in funcs.items()}  # GlobalVars with struct info
    mapping = {gv: new_gvs[name] for gv, name in names.items()}

    @mutator
    class Rename(PyExprMutator):
        def visit_global_var_(self, op):
            return mapping.get(op, op)

    out = {gv: f for gv, f in bb.get().functions.items()}
    for gv, f in mod.functions.items():
        if isinstance(f, relax.Function):
            out[gv] = Rename().visit_expr(f)
        elif not isinstance(f, tirx.PrimFunc):
            out[gv] = f
    return tvm.IRModule(out, attrs=mod.attrs)


def _lower_and_finalize(tgt) -> tuple[list, list]:
    """The Relax passes after scheduling: the target's registered pipeline helpers, or (0.27's
    plain ``llvm`` has none) the same passes listed here."""
    from tvm import relax
    from tvm.relax import pipeline as rp

    try:
        return list(rp.dataflow_lower_passes(tgt)), list(rp.finalize_passes(tgt))
    except (ValueError, AttributeError):  # targets without registered pipeline helpers (0.27: plain llvm)
        lower = [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
        ]
        finalize = [
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
        return lower, finalize


def compile_with_database(
    mod: "tvm.IRModule",
    target: "TargetSpec",
    database,
    *,
    kernel_cache: "KernelCache | None" = KERNEL_CACHE,
    fallback: str = "auto",
    report: "list[KernelChoice] | None" = None,
    transfer: bool = True,
    serial_below_us: float = SERIAL_BELOW_US,
) -> "tvm.runtime.Executable":
    """``tvm.compile`` of an already lowered+fused module, with ``database`` applied.

    Schedules come from ``fallback.apply_schedules``: per kernel the best database
    record that replays on it (a record that does not is skipped with a
    ``ScheduleWarning``, never fatal), else on CPU targets with ``fallback="auto"``
    an unmeasured MetaSchedule design-space sample (parallel + vectorised), else
    TVM's default. ``report``, when given, is extended with one ``KernelChoice``
    per kernel (``source`` "db" / "transfer" / "fallback" / "default"; ``transfer=False`` skips
    schedule transfer, ``codegen.transfer``). ``database`` may be
    ``None`` (no records). On CPU targets, kernels estimated under ``serial_below_us`` µs run
    without a parallel loop (``codegen.serial``; 0 turns it off; ``KernelChoice.serial``).

    On LLVM (CPU) targets the kernels are built one by one through ``kernel_cache``
    (see ``KernelCache``; ``None`` compiles everything with plain ``tvm.compile``)."""
    import contextlib

    import tvm
    from tvm.relax import pipeline as rp
    from tvm.s_tir import dlight as dl

    from cosearch.compile.codegen.fallback import FALLBACKS, apply_schedules
    from cosearch.compile.codegen.serial import serialize_small

    if fallback not in FALLBACKS:
        raise CosearchError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")

    tgt = target.tvm_target()
    is_gpu = rp.BackendDispatcher.is_gpu_target(tgt)
    lower, finalize = _lower_and_finalize(tgt)
    host = tgt.host if tgt.host is not None else tgt
    cached = kernel_cache is not None and not is_gpu and tgt.kind.name == "llvm" and host.kind.name == "llvm"
    if cached and "wasm" in str(host.attrs.get("mtriple", "")):
        cached = False  # system-lib targets: keep TVM's own path

    @tvm.transform.module_pass(opt_level=3)
    def pipeline(m: tvm.IRModule, _ctx) -> tvm.IRModule:
        scheduled, choices = apply_schedules(m, tgt, database, fallback=fallback, transfer=transfer)
        if not is_gpu and tgt.kind.name == "llvm":
            scheduled, choices = serialize_small(scheduled, choices, serial_below_us, originals=m)
        m = scheduled
        if report is not None:
            report.extend(choices)
        if is_gpu:
            m = dl.ApplyDefaultSchedule(
                dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()
            )(m)
        if cached:
            m = _canonical_kernel_names(m)
        return tvm.transform.Sequential(list(lower) + list(finalize))(m)

    db_scope = database if database is not None else contextlib.nullcontext()
    with tgt, db_scope, tvm.transform.PassContext(opt_level=3):
        if not cached:
            return tvm.compile(mod, target=tgt, relax_pipeline=pipeline)
        return _build_cached(pipeline(mod), tgt, kernel_cache)


def _build_cached(mod: "tvm.IRModule", tgt, kernel_cache: KernelCache) -> "tvm.runtime.Executable":
    """``relax.build`` after the Relax pipeline, with per-kernel cached TIR builds."""
    import tvm
    from tvm import relax, tirx
    from tvm.relax import vm_build

    attrs = dict(mod.attrs) if mod.attrs else {}
    ext_libs = list(attrs.get("external_mods", []))
    params = dict(attrs.get("const_name_to_constant", {}))
    builder = relax.ExecBuilder()
    leftover = vm_build._vmcodegen(builder, mod, "bytecode")
    kernels = []
    for gv, f in leftover.functions.items():
        if isinstance(f, tirx.PrimFunc):
            kernels.append(kernel_cache.build(tvm.IRModule({gv: f}, attrs=leftover.attrs), tgt, gv.name_hint))
    # a fresh (empty) host module imports the cached kernels: VMLink would otherwise
    # add a C-source stub, which makes the VM export + link the whole library with gcc
    host = tvm.tirx.build(tvm.IRModule({}, attrs=leftover.attrs), target=tgt, pipeline="default")
    lib = vm_build._ffi_api.VMLink(builder, tgt, host, kernels + ext_libs, params)
    return relax.VMExecutable(lib)
