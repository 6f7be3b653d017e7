"""Model import: torch / ONNX -> a lowered, fused Relax module ready for task extraction.

One path for everything: torch modules go through the legacy TorchScript ONNX
exporter (``torch.onnx.export(..., dynamo=False)``) and then the Relax ONNX
frontend. That is much faster than ``torch.export`` (seconds per network; see the
report in ``schedules/README.md``) and gives the same graph. The ONNX model is
kept on the result because the artifact stores it next to the compiled library.

Lowering uses the pipeline that fuses well (TVM-NOTES): FoldBatchnormToConv2D,
DecomposeOpsForInference, CanonicalizeBindings, LegalizeOps, AnnotateTIROpPattern,
FoldConstant, FuseOps, FuseTIR, plus a numpy pre-fold of constant shape ops and
arithmetic (TVM's FoldConstant compiles each with LLVM: 5.6 s of 7 s on an
NAS-Bench-201 net). Weights are bound as constants, so workloads
(and therefore database keys) depend on shapes and ops only.
"""

from __future__ import annotations

import functools
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosearch.compile.frontend.ops import NUMPY_BINARY, NUMPY_UNARY
from cosearch.compile.storage.database import MODULE_EQUALITY
from cosearch.errors import CosearchError, first_line

if TYPE_CHECKING:
    import onnx
    import torch
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.target import TargetSpec

@dataclass
class ImportedModel:
    mod: "tvm.IRModule"
    inputs: list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype)
    onnx_model: "onnx.ModelProto"
    seconds: dict[str, float] = field(default_factory=dict)  # export, import, lower
    layout: str = "NCHW"  # conv data layout in effect (cosearch.compile.frontend.layout, "auto" resolved); part of every workload


@functools.lru_cache(maxsize=None)
def _numpy_folder():
    """A Relax mutator that folds shape ops and elementwise arithmetic on constants
    with numpy. TVM's ``FoldConstant`` compiles every such op with LLVM first: on a
    NAS-Bench-201 net (a bias reshape per conv) that took 5.6 s of a 7 s import;
    with this pre-pass ``FoldConstant`` finds (almost) nothing left to compile."""
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.ir.expr import GenericConst
    from tvm.relax.expr_functor import PyExprMutator, mutator

    def const(call, i):
        a = call.args[i] if i < len(call.args) else None
        return a.value.numpy() if isinstance(a, GenericConst) else None

    @mutator
    class NumpyFold(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            op = call.op
            if not isinstance(op, tvm.ir.Op):
                return call
            name = op.name
            a = const(call, 0)
            if a is None:
                return call
            out = None
            if name == "relax.reshape":
                out = a.reshape([int(v) for v in call.args[1].values])
            elif name == "relax.permute_dims":
                axes = call.attrs.axes
                out = a.transpose([int(i) for i in axes]) if axes is not None else a.T
            elif name == "relax.expand_dims":
                out = np.expand_dims(a, tuple(int(i) for i in call.attrs.axis))
            elif name in NUMPY_UNARY:
                out = getattr(np, NUMPY_UNARY[name])(a)
            elif name == "relax.rsqrt":
                out = (1 / np.sqrt(a)).astype(a.dtype)
            elif name in NUMPY_BINARY:
                b = const(call, 1)
                if b is None or a.dtype != b.dtype:
                    return call
                out = getattr(np, NUMPY_BINARY[name])(a, b)
            if out is None:
                return call
            return relax.const(np.ascontiguousarray(out.astype(a.dtype, copy=False)), str(a.dtype))

    @tvm.transform.module_pass(opt_level=0, name="CosearchNumpyFold")
    def fold(mod, _ctx):
        m = NumpyFold()
        for gv, f in list(mod.functions.items()):
            if isinstance(f, relax.Function):
                mod[gv] = m.visit_expr(f)
        return mod

    return fold


class _LegalizeCache:
    """Memoised ``LegalizeOps``: an op with the same attributes and argument types
    legalizes to the same PrimFunc, so it is generated (TE + ``create_prim_func``,
    1.6 s of a 2 s lowering on an NAS-Bench-201 net) once per process. Only results
    of the plain form ``call_tir(f, args)`` that pass every constant argument
    through (nothing inlined from values) are reused; anything else is legalized
    normally each time."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self.entries: dict[tuple, tuple] = {}
        self.hits = 0

    def wrap(self, name: str, default):
        from tvm import relax

        def legalize(bb, call):
            import tvm

            tgt = tvm.target.Target.current(allow_none=True)
            key = (name, str(call.attrs), tuple(str(a.ty) for a in call.args), str(tgt))
            hit = self.entries.get(key)
            if hit is not None:
                func, fname, idx, sinfo = hit
                gv = bb.add_func(func, fname)
                self.hits += 1
                return relax.call_tir(gv, [call.args[i] for i in idx], sinfo)
            out = default(bb, call)
            self._remember(bb, call, out, key)
            return out

        return legalize

    def _remember(self, bb, call, out, key) -> None:
        import tvm
        from tvm import relax, tirx
        from tvm.ir.expr import GenericConst

        if len(self.entries) >= self.max_entries or not isinstance(out, relax.Call):
            return
        if not (isinstance(out.op, tvm.ir.Op) and out.op.name == "relax.call_tir") or len(out.args) != 2:
            return
        gv, args = out.args
        if not isinstance(args, relax.Tuple) or not isinstance(gv, tvm.ir.GlobalVar):
            return
        idx = []
        for a in args.fields:
            pos = [i for i, c in enumerate(call.args) if c.same_as(a)]
            if not pos:
                return  # an argument that is not one of the call's: do not reuse
            idx.append(pos[0])
        if any(isinstance(c, GenericConst) and i not in idx for i, c in enumerate(call.args)):
            return  # a constant was folded into the function: value-dependent
        func = bb.get()[gv]
        if not isinstance(func, tirx.PrimFunc):
            return
        if len(out.ty_args) != 1 or not isinstance(out.ty_args[0], relax.TensorType):
            return  # tuple outputs (nn.dropout): call_tir takes a list of tensor types; not reused
        self.entries[key] = (func, gv.name_hint, tuple(idx), out.ty_args[0])

    def legalize_map(self, mod: "tvm.IRModule", overrides: dict | None = None) -> dict:
        import tvm
        from tvm import relax
        from tvm.relax.expr_functor import PyExprVisitor, visitor

        names: set[str] = set()

        @visitor
        class Ops(PyExprVisitor):
            def visit_call_(self, call):
                super().visit_call_(call)
                if isinstance(call.op, tvm.ir.Op):
                    names.add(call.op.name)

        for f in mod.functions.values():
            if isinstance(f, relax.Function):
                Ops().visit_expr(f)
        out = {}
        for n in sorted(names):
            default = (overrides or {}).get(n) or tvm.ir.Op.get(n).get_attr("FLegalize")
            if default is not None:
                out[n] = self.wrap(n, default)
        return out


_LEGALIZE_CACHE = _LegalizeCache()


def lower(mod: "tvm.IRModule", layout: str = "NCHW") -> "tvm.IRModule":
    """The fusing pipeline applied to an imported Relax module, convolutions converted
    to ``layout`` first (``cosearch.compile.frontend.layout``; weight transforms folded)."""
    return lower_with_layout(mod, layout)[0]


def lower_with_layout(mod: "tvm.IRModule", layout: str) -> "tuple[tvm.IRModule, str]":
    """``lower`` returning the layout in effect too (``auto`` resolved)."""
    from cosearch.compile.frontend.layout import check_layout

    check_layout(layout)
    return _lower(mod, layout)


def _lower(mod: "tvm.IRModule", layout: str) -> "tuple[tvm.IRModule, str]":
    import tvm
    from tvm import relax

    from cosearch.compile.frontend.layout import convert, legalize_overrides

    fold = _numpy_folder()
    first = tvm.transform.Sequential(
        [
            fold,
            relax.transform.FoldBatchnormToConv2D(),
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            fold,
        ]
    )
    with tvm.transform.PassContext(opt_level=3):
        mod = first(mod)
    mod, layout = convert(mod, layout)
    with tvm.transform.PassContext(opt_level=3):
        rest = tvm.transform.Sequential(
            [
                relax.transform.LegalizeOps(_LEGALIZE_CACHE.legalize_map(mod, legalize_overrides())),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FoldConstant(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
            ]
        )
        return rest(mod), layout


def _load_onnx(path_or_model: Any) -> "onnx.ModelProto":
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
        where = "the given ONNX model"
    elif isinstance(path_or_model, (bytes, bytearray)):
        where = "the given ONNX bytes"
        try:
            model = onnx.load_from_string(bytes(path_or_model))
        except Exception as e:
            raise CosearchError(f"{where} could not be parsed as ONNX ({type(e).__name__}); expected a serialized onnx.ModelProto") from e
    elif isinstance(path_or_model, (str, Path)):
        where = f"ONNX file {str(path_or_model)!r}"
        p = Path(path_or_model)
        if not p.is_file():
            raise CosearchError(f"{where} does not exist; expected a path to a .onnx file")
        try:
            model = onnx.load(str(p))
        except Exception as e:
            raise CosearchError(f"{where} could not be parsed as ONNX ({type(e).__name__}: {first_line(e, 10**6) if str(e).strip() else ''})") from e
    else:
        raise CosearchError(f"from_onnx got {type(path_or_model).__name__}; accepted: a path, bytes or an onnx.ModelProto")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        first = first_line(e)
        raise CosearchError(f"{where} is not a valid ONNX model: {first}") from e
    if not model.graph.node:
        raise CosearchError(f"{where} has an empty graph; expected at least one node")
    return model


def _graph_inputs(model: "onnx.ModelProto") -> list[tuple[str, tuple[int, ...], str]]:
    import onnx

    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if not d.HasField("dim_value"):
                raise CosearchError(
                    f"ONNX input {vi.name!r} has a symbolic dimension {d.dim_param!r}; only static shapes are accepted"
                )
            dims.append(int(d.dim_value))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        out.append((vi.name, tuple(dims), dtype))
    return out


def from_onnx(path_or_model: Any, *, layout: str | None = None) -> ImportedModel:
    """ONNX (path, bytes or ModelProto) -> ``ImportedModel``. Malformed input -> ``CosearchError``.
    ``layout``: conv data layout (``cosearch.compile.frontend.layout.LAYOUTS``; None: ``DEFAULT_LAYOUT``)."""
    from cosearch.compile.frontend.layout import DEFAULT_LAYOUT, check_layout

    layout = check_layout(DEFAULT_LAYOUT if layout is None else layout)  # before any work
    model = _load_onnx(path_or_model)
    inputs = _graph_inputs(model)
    from tvm.relax.frontend.onnx import from_onnx as relax_from_onnx

    t0 = time.perf_counter()
    try:
        mod = relax_from_onnx(
            model,
            shape_dict={n: list(s) for n, s, _ in inputs},
            dtype_dict={n: d for n, _, d in inputs},
            keep_params_in_input=False,
            sanitize_input_names=False,
        )
    except Exception as e:
        first = first_line(e)
        raise CosearchError(f"TVM's ONNX frontend could not import the model: {first}") from e
    t1 = time.perf_counter()
    mod, layout = _lower(mod, layout)
    t2 = time.perf_counter()
    return ImportedModel(mod=mod, inputs=inputs, onnx_model=model, seconds={"import": t1 - t0, "lower": t2 - t1},
                         layout=layout)


def torch_to_onnx(module: "torch.nn.Module", example_inputs: tuple, *, opset: int = 17) -> "onnx.ModelProto":
    """Legacy (TorchScript) exporter in eval mode; BN is folded into convs."""
    import onnx
    import torch

    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    names = [f"input{i}" if len(example_inputs) > 1 else "input" for i in range(len(example_inputs))]
    buf = io.BytesIO()
    was_training = module.training
    threads = torch.get_num_threads()
    module.eval()
    # the exporter traces one forward pass of a tiny batch-1 net: one thread is
    # enough, and on a loaded 2-core machine torch's 2-thread conv spun ~100x
    # slower (NB201 C=16: forward 2.9 s with 2 threads vs 0.02 s with 1)
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the legacy exporter is a deliberate choice (speed): silence its deprecation notes
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                example_inputs,
                buf,
                input_names=names,
                output_names=["output"],
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:
        first = first_line(e)
        raise CosearchError(f"torch.onnx.export failed for {type(module).__name__}: {first}") from e
    finally:
        torch.set_num_threads(threads)
        module.train(was_training)
    return onnx.load_from_string(buf.getvalue())


def from_torch(module: "torch.nn.Module", example_inputs: tuple, *, layout: str | None = None) -> ImportedModel:
    """torch module + example inputs -> ``ImportedModel`` (via ONNX, see module doc)."""
    t0 = time.perf_counter()
    model = torch_to_onnx(module, example_inputs)
    t1 = time.perf_counter()
    imported = from_onnx(model, layout=layout)
    imported.seconds = {"export": t1 - t0, **imported.seconds}
    return imported


def from_torch_exported(module: "torch.nn.Module", example_inputs: tuple) -> "tvm.IRModule":
    """The ``torch.export`` path, kept for comparison (slower; see module doc)."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    module.eval()
    with torch.no_grad():
        ep = torch.export.export(module, example_inputs)
    return lower(from_exported_program(ep, keep_params_as_input=False))


def extract_tasks(imported: ImportedModel, target: "TargetSpec") -> list["ms.ExtractedTask"]:
    """MetaSchedule tasks of the lowered module, keyed by anchor-block equality."""
    from tvm.s_tir import meta_schedule as ms

    return list(ms.relax_integration.extract_tasks(imported.mod, target.tvm_target(), module_equality=MODULE_EQUALITY))
