"""Data layout of convolutions, chosen at import (before task extraction).

``convert(mod, layout)`` rewrites every ``relax.nn.conv2d`` of an imported,
not yet legalized Relax module to ``layout`` with Relax's own
``ConvertLayout`` (which propagates the layout through elementwise ops, pools,
concatenations and reductions and inserts ``layout_transform`` only where an
op cannot follow), then folds the weight transforms: weights are constants,
so each ``layout_transform`` of a constant becomes a constant in the new
layout (numpy, no LLVM compile).

Layouts (``LAYOUTS``):

- ``auto``: ``NCHW8c`` for ImageNet-size graphs, else ``NCHW`` (see ``DEFAULT_LAYOUT``).
- ``NCHW`` (default): the ONNX layout, no rewrite.
- ``NHWC``: channels last, weights ``OHWI`` (TVM's own legalization; not measured).
- ``NCHW8c`` / ``NCHW16c``: channel-blocked, as ONNX Runtime's MLAS does on
  x86 (8 floats = one AVX2 register, 16 = one AVX-512 register); weights
  ``OIHW8i8o`` / ``OIHW16i16o``.

The layout changes the kernels, so it changes workload keys: a database never
mixes layouts by accident (different PrimFuncs), and the layout is a recorded
import setting (``ImportedModel.layout``, the layout in effect; ``engine.load_model``
puts it into the run config). Grouped / depthwise convs always keep ``NCHW``
(legalized before ConvertLayout, which crashed the process on ShuffleNet's), and
so do convs whose channels are not whole blocks (ConvertLayout leaves them); a
model with no conv that can take the layout is not rewritten at all and reports
``NCHW``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosearch.compile.frontend.ops import NUMPY_BINARY, NUMPY_UNARY
from cosearch.errors import CosearchError

if TYPE_CHECKING:
    import tvm

#: data layout -> kernel layout given to ConvertLayout
LAYOUTS: dict[str, str] = {"NCHW": "OIHW", "NHWC": "OHWI", "NCHW8c": "OIHW8i8o", "NCHW16c": "OIHW16i16o"}
#: "auto": NCHW8c when the model has a convertible conv with an output of at least
#: ``AUTO_MIN_PIXELS`` (ImageNet-size graphs), else NCHW (small search-space networks keep
#: their databases). Measured on SqueezeNet vs NCHW, same budget and seed, interleaved
#: end-to-end timing (bench/gap.py; bench/results/gap_squeezenet_*.json): 128 trials
#: 0.61x on a loaded machine (load 4-8), 256 trials 1.33x (loaded), 128 trials seed 1
#: 1.02x on a quiet machine -- no gain established, so the default stays NCHW. (It
#: also must: "auto" rewrites ResNet-50's ``sum(stack(...))`` residuals into adds, and
#: tests/test_model_zoo.py builds its replay-failure database from those kernels.)
DEFAULT_LAYOUT = "NCHW"
AUTO_MIN_PIXELS = 48 * 48  # SqueezeNet: 55x55; NB201 (32x32) and mbv2 at 64x64 stay NCHW


def check_layout(layout: str) -> str:
    if layout != "auto" and layout not in LAYOUTS:
        raise CosearchError(f"layout must be auto or one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def _block(layout: str) -> int:
    if layout.startswith("NCHW") and layout.endswith("c") and layout[4:-1].isdigit():
        return int(layout[4:-1])
    return 1


#: binary elementwise ops (ConvertLayout 0.27's binary layout inference): a scalar operand crashes it
_BINARY_EWISE = frozenset("relax." + n for n in (
    "add", "subtract", "multiply", "divide", "floor_divide", "power", "mod", "floor_mod", "maximum", "minimum",
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and", "logical_or",
    "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift", "log_add_exp"))


_PREPARE_DOC = """What ConvertLayout 0.27 cannot take, made so it can:

- ``nn.dropout`` is the identity at inference (its mask, all ones, is never read
  by the exported graphs); its tuple output stops ConvertLayout
  (``Expected nested to match tuple``).
- ONNX ``Sum(a, b, ...)`` arrives as ``sum(stack([a, b, ...]), axis=0)``: a
  5-D tensor whose layout inference crashes (``Invalid SLayout``) and a
  kernel per residual; it becomes ``a + b + ...``.
- A scalar operand (``FloatImm`` / ``IntImm``, e.g. the batch-norm epsilon in
  ``add(running_var, 1e-5)`` that ``FoldBatchnormToConv2D`` leaves in every
  ResNet-50 conv's weight chain) of a binary elementwise op: ConvertLayout 0.27's
  binary layout inference dereferences it as a tensor and crashes the process
  (segfault). It becomes a rank-0 constant (same broadcasting); a symbolic one
  (not a number) makes the op a layout barrier instead (below).
- Arithmetic on constants only (that weight chain: ``add``, ``sqrt``, ``divide``,
  ``reshape``, ``multiply``) is folded with numpy (``CanonicalizeBindings`` then
  inlines the constants), so the conv weights are constants again and their
  ``layout_transform`` folds (TVM's ``FoldConstant`` would compile each op with LLVM).
- ``broadcast_to(x, shape of x)`` (ONNX ``Sum``'s operands) is ``x``.
- Any other op on a tensor of rank 5 or more (ShuffleNet's channel shuffle,
  Inception's LRN as avg_pool3d), and grouped / depthwise convs (ConvertLayout
  0.27 crashed the process on ShuffleNet's), are legalized here to a
  ``call_tir`` in the original layout, which ConvertLayout treats as a layout
  barrier (the second pass, ``barriers = True``)."""

_FOLDABLE = frozenset(NUMPY_BINARY) | frozenset(NUMPY_UNARY) | {"relax.rsqrt", "relax.reshape"}


def _ndim(e) -> int:
    try:
        return int(e.ty.ndim)
    except Exception:  # noqa: BLE001 - tuples, shapes, unknown rank
        return -1


def _const_of(m, e):
    """numpy value of ``e`` when it is a constant or a variable bound to one, else None."""
    from tvm import relax
    from tvm.ir.expr import GenericConst

    if isinstance(e, relax.Var):
        e = m.lookup_binding(e)
    return e.value.numpy() if isinstance(e, GenericConst) else None


def _scalars_to_consts(m, call):
    """A binary elementwise op's scalar (number) operands as rank-0 constants."""
    import numpy as np
    import tvm
    from tvm import relax

    args = list(call.args)
    for i, a in enumerate(args):
        ty = getattr(a, "ty", None)
        if isinstance(ty, tvm.ir.PrimType) and isinstance(getattr(a, "value", None), (int, float)):
            args[i] = relax.const(np.array(a.value, dtype=str(ty.dtype)), str(ty.dtype))
    if any(a is not b for a, b in zip(args, call.args)):
        call = m.builder_.normalize(relax.Call(call.op, args, call.attrs, call.ty_args))
    return call


def _fold(m, call, name):
    """``call`` computed with numpy when all its tensor operands are constants, else None."""
    import numpy as np
    from tvm import relax

    a = _const_of(m, call.args[0])
    if a is None:
        return None
    if name == "relax.reshape":
        try:
            out = a.reshape([int(v) for v in call.args[1].values])
        except Exception:  # noqa: BLE001 - symbolic shape
            return None
    elif name in NUMPY_UNARY:
        out = getattr(np, NUMPY_UNARY[name])(a)
    elif name == "relax.rsqrt":
        out = 1 / np.sqrt(a)
    else:
        b = _const_of(m, call.args[1])
        if b is None or a.dtype != b.dtype:
            return None
        out = getattr(np, NUMPY_BINARY[name])(a, b)
    return relax.const(np.ascontiguousarray(np.asarray(out).astype(a.dtype, copy=False)), str(a.dtype))


def _same_shape_broadcast(call):
    """``x`` of ``broadcast_to(x, shape of x)``, else None."""
    x = call.args[0]
    try:
        same = [int(d) for d in x.ty.shape] == [int(d) for d in call.args[1].values]
    except Exception:  # noqa: BLE001 - symbolic or unknown shapes
        same = False
    return x if same else None


def _stacked_sum(m, call):
    """``a + b + ...`` for ``sum(stack([a, b, ...]), axis=0)``, else None."""
    import tvm
    from tvm import relax

    if not isinstance(call.args[0], relax.Var):
        return None
    src = m.lookup_binding(call.args[0])
    axis = call.attrs.axis
    if not (src is not None and isinstance(src, relax.Call) and isinstance(src.op, tvm.ir.Op)
            and src.op.name == "relax.stack" and int(src.attrs.axis) == 0 and axis is not None
            and [int(a) for a in axis] == [0] and not call.attrs.keepdims and isinstance(src.args[0], relax.Tuple)):
        return None
    xs = list(src.args[0].fields)
    out = xs[0]
    for x in xs[1:]:
        out = relax.op.add(out, x)
    return out


def _barrier(m, call, name):
    """Rank >= 5 ops, grouped convs and ops with a symbolic scalar: legalized in place."""
    import tvm

    ranks = [_ndim(a) for a in call.args] + [_ndim(call)]
    grouped = name == "relax.nn.conv2d" and int(call.attrs.groups) != 1
    scalar = name in _BINARY_EWISE and any(isinstance(getattr(a, "ty", None), tvm.ir.PrimType)
                                           for a in call.args)  # symbolic: left in NCHW
    if max(ranks) >= 5 or grouped or scalar:
        leg = call.op.get_attr("FLegalize")
        if leg is not None:
            return leg(m.builder_, call)
    return call


def _rewrite(m, call):
    """One call through the prepare rewrites (``_PREPARE_DOC``), in order."""
    import tvm
    from tvm import relax

    if not isinstance(call.op, tvm.ir.Op):
        return call
    name = call.op.name
    if not m.barriers:
        if name in _BINARY_EWISE and len(call.args) == 2:
            call = _scalars_to_consts(m, call)
        if name in _FOLDABLE:
            folded = _fold(m, call, name)
            if folded is not None:
                return folded
        if name == "relax.broadcast_to":
            x = _same_shape_broadcast(call)
            if x is not None:
                return x
    if name == "relax.nn.dropout":
        x = call.args[0]
        return relax.Tuple([x, relax.op.ones_like(x)])
    if name == "relax.sum":
        out = _stacked_sum(m, call)
        if out is not None:
            return out
    if not m.barriers or name in ("relax.layout_transform", "relax.stack"):
        return call
    return _barrier(m, call, name)


def _fold_transform(call):
    """A ``layout_transform`` of a constant, computed at import."""
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.ir.expr import GenericConst

    if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.layout_transform"):
        return call
    a = call.args[0]
    if not isinstance(a, GenericConst) or call.attrs.pad_value is not None:
        return call
    out = _map_tensor(call.attrs.index_map, a.value.numpy())
    if out is None:
        out = call.attrs.index_map.map_tensor(a.value).numpy()
    return relax.const(np.ascontiguousarray(out), str(out.dtype))


def _as_pass(m, name):
    """A module pass running mutator class ``m`` over every Relax function."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def p(mod, _ctx):
        for gv, f in list(mod.functions.items()):
            if isinstance(f, relax.Function):
                mut = m(mod)
                new = mut.visit_expr(f)
                mod = mut.builder_.get()  # with any PrimFunc the mutator added
                mod[gv] = new
        return mod

    return p


def _passes():
    """(prepare passes, fold-constant-layout-transform pass), created once."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    class _Prepare(PyExprMutator):
        __doc__ = _PREPARE_DOC
        barriers = False  # first pass: rewrites only; second pass (Barriers): rank >= 5 ops too

        def visit_call_(self, call):
            return _rewrite(self, super().visit_call_(call))

    class _Barriers(_Prepare):
        barriers = True

    class _FoldTransform(PyExprMutator):
        def visit_call_(self, call):
            return _fold_transform(super().visit_call_(call))

    prepare, barriers, fold = mutator(_Prepare), mutator(_Barriers), mutator(_FoldTransform)
    return (tvm.transform.Sequential([_as_pass(prepare, "CosearchLayoutPrepare"), relax.transform.CanonicalizeBindings(),
                                      relax.transform.DeadCodeElimination(), _as_pass(barriers, "CosearchLayoutBarriers")]),
            _as_pass(fold, "CosearchFoldLayoutTransform"))


def _map_tensor(index_map, a):
    """``index_map.map_tensor(a)`` in numpy (a scatter through the index expressions evaluated on
    index grids); None when the map is not a plain bijection of +, -, *, //, % (then TVM's
    ``map_tensor`` is used: element by element, ~80 s for ResNet-50's 25M weights)."""
    import numpy as np
    from tvm import tirx

    ops = {tirx.Add: np.add, tirx.Sub: np.subtract, tirx.Mul: np.multiply,
           tirx.FloorDiv: np.floor_divide, tirx.FloorMod: np.mod}
    grids = np.indices(a.shape, sparse=True)
    env = list(zip(index_map.initial_indices, grids))

    def ev(e):
        for v, g in env:
            if e.same_as(v):
                return g
        if isinstance(e, tirx.IntImm):
            return np.int64(e.value)
        f = ops.get(type(e))
        if f is None:
            raise ValueError(type(e).__name__)
        return f(ev(e.a), ev(e.b))

    try:
        shape = [int(d) for d in index_map.map_shape(list(a.shape))]
        idx = [ev(e) for e in index_map.final_indices]
    except Exception:  # noqa: BLE001 - symbolic or unsupported expression
        return None
    if len(shape) != len(idx) or int(np.prod(shape)) != a.size:
        return None  # padding: not a bijection
    out = np.zeros(shape, a.dtype)
    out[tuple(np.broadcast_arrays(*idx))] = a
    return out


_PASSES = None


def convert(mod: "tvm.IRModule", layout: str) -> "tuple[tvm.IRModule, str]":
    """(``mod`` with its convolutions in ``layout`` and weight transforms folded, the layout
    in effect: ``NCHW`` when no conv could take it; ``auto`` resolved, see ``DEFAULT_LAYOUT``)."""
    global _PASSES
    import tvm
    from tvm import relax

    check_layout(layout)
    if layout == "NCHW":
        return mod, layout
    if _PASSES is None:
        _PASSES = _passes()
    prepare, fold = _PASSES
    with tvm.transform.PassContext(opt_level=3):
        prepared = prepare(mod)
    pixels = _convertible(prepared, "NCHW8c" if layout == "auto" else layout)
    if layout == "auto":
        layout = "NCHW8c" if pixels >= AUTO_MIN_PIXELS else "NCHW"
    if layout == "NCHW" or not pixels:
        return mod, "NCHW"  # nothing to convert (e.g. ShuffleNet: grouped convs only); ConvertLayout not risked
    seq = tvm.transform.Sequential(
        [
            relax.transform.ConvertLayout({"relax.nn.conv2d": [layout, LAYOUTS[layout]]}),
            fold,
            relax.transform.CanonicalizeBindings(),
            relax.transform.DeadCodeElimination(),
        ]
    )
    with tvm.transform.PassContext(opt_level=3):
        return seq(prepared), layout


def _convertible(mod: "tvm.IRModule", layout: str) -> int:
    """The largest output (H x W) of a conv2d of ``mod`` that can take ``layout`` (groups 1,
    channels whole blocks); 0 when none can."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprVisitor, visitor

    block = _block(layout)
    found = []

    @visitor
    class Find(PyExprVisitor):
        def visit_call_(self, call):
            super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d" and int(call.attrs.groups) == 1:
                try:
                    cin = int(call.args[0].ty.shape[1])
                    cout = int(call.args[1].ty.shape[0])
                    pixels = int(call.ty.shape[2]) * int(call.ty.shape[3])
                except Exception:  # noqa: BLE001 - symbolic shapes: not ours to convert
                    return
                if cin % block == 0 and cout % block == 0:
                    found.append(pixels)

    for f in mod.functions.values():
        if isinstance(f, relax.Function):
            Find().visit_expr(f)
    return max(found, default=0)


def _blocked_conv2d(default):
    """``relax.nn.conv2d`` legalization for ``NCHW{n}c`` data / ``OIHW{n}i{m}o`` weights
    (Relax 0.27's own legalization leaves those calls unlowered) through TOPI's
    ``conv2d_NCHWc``; every other conv goes to ``default``."""
    import re

    def legalize(bb, call):
        a = call.attrs
        dl, kl, ol = str(a.data_layout), str(a.kernel_layout), str(a.out_layout or a.data_layout)
        if (int(a.groups) != 1 or not re.fullmatch(r"NCHW\d+c", dl) or not re.fullmatch(r"OIHW\d+i\d+o", kl)
                or not re.fullmatch(r"NCHW\d+c", ol)):
            return default(bb, call)
        import tvm
        from tvm import topi

        out_dtype = str(a.out_dtype) if a.out_dtype is not None and str(a.out_dtype) else ""
        if not out_dtype or out_dtype == "void":
            out_dtype = str(call.args[0].ty.dtype)
        # TOPI asks for a current target (its compute does not depend on it)
        tgt = tvm.target.Target.current(allow_none=True) or tvm.target.Target({"kind": "llvm"})
        with tgt:
            return bb.call_te(topi.nn.conv2d_NCHWc, call.args[0], call.args[1], [int(s) for s in a.strides],
                              [int(p) for p in a.padding], [int(d) for d in a.dilation], dl, ol, out_dtype,
                              primfunc_name_hint="conv2d_NCHWc")

    return legalize


def legalize_overrides() -> dict:
    """Op name -> FLegalize replacing TVM's for the blocked layouts."""
    import tvm

    return {"relax.nn.conv2d": _blocked_conv2d(tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize"))}
