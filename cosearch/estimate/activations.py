"""Activation patterns of any piecewise-linear activation, found by module type.

An *activation pattern* assigns every unit of every activation module the
*piece* of its activation function its pre-activation ``z`` falls into (an
integer code per unit). Linear-region counting (TE-NAS), the NASWOT kernel and
SWAP all work on these codes, so they apply to every network whose activations
are registered here, not only ``nn.ReLU``.

Built in (``z`` is the activation's input; a value exactly on a breakpoint goes
to the piece on its right, except ReLU-like ``z > 0`` which puts 0 on the left,
as NASWOT/TE-NAS do):

=====================  ======  =========================================
module type            pieces  code
=====================  ======  =========================================
``nn.ReLU``            2       ``z > 0``
``nn.LeakyReLU``       2       ``z > 0`` (slope ``negative_slope`` left)
``nn.PReLU``           2       ``z > 0`` (learned slope left)
``nn.Threshold``       2       ``z > threshold``
``nn.Hardtanh``        3       ``(z > min_val) + (z >= max_val)``
``nn.ReLU6``           3       as Hardtanh(0, 6) (it is a subclass)
``nn.Hardsigmoid``     3       ``(z > -3) + (z >= 3)``
``nn.Hardswish``       3       ``(z > -3) + (z >= 3)``; middle piece is
                               ``z(z+3)/6``: **not affine**
``nn.Hardshrink``,     3       ``(z >= -lambd) + (z > lambd)``
``nn.Softshrink``
=====================  ======  =========================================

Smooth activations (``SMOOTH``: GELU, SiLU, Mish, ELU, CELU, SELU, Softplus,
Sigmoid, Tanh, LogSigmoid, Softsign, Tanhshrink, Softmax, GLU, ...) have no
pieces: a network containing any has no activation pattern, so linear regions,
NASWOT and SWAP are *undefined* on it (``PatternUndefined``, one line naming
the modules) - never a zero. Signals that need no pattern (NTK condition
number, MeCo, synflow, FLOPs) still apply. ``nn.RReLU`` (random slope in train
mode) is rejected the same way.

A plug-in space declares its own activation once, at import::

    from cosearch.estimate.activations import register_activation
    register_activation(MyAct, lambda m, z: (z > m.t).to(torch.uint8), affine=True)

Lookup follows the MRO, so a subclass of a registered type is covered unless it
registers its own function. Only *modules* are seen (forward pre-hooks): a
functional ``F.relu`` inside ``forward``, max-pooling (also piecewise linear)
and multiplicative gates are invisible; document that in your space.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: ``pieces_fn(module, z) -> integer tensor of z's shape`` (piece index per unit, 0..254)
PiecesFn = Callable[["nn.Module", "torch.Tensor"], "torch.Tensor"]


class PatternUndefined(CosearchError):
    """A network has no activation pattern (a smooth or unregistered-random
    activation, or no registered activation at all)."""


@dataclass(frozen=True)
class ActivationSpec:
    cls: type
    pieces_fn: PiecesFn
    #: True when every piece is an affine function (regions are linear regions)
    affine: bool = True


_REGISTRY: dict[type, ActivationSpec] = {}
_SMOOTH: set[type] = set()
_BUILTINS_DONE = False


def register_activation(cls: type, pieces_fn: PiecesFn, *, affine: bool = True) -> None:
    """Declare ``cls`` (an ``nn.Module`` subclass) piecewise: ``pieces_fn(module,
    z)`` returns the piece index (integer tensor, values 0..254) of every unit of
    the pre-activation ``z``. ``affine=False`` when some piece is not affine
    (hard-swish): regions are then activation regions, not linear ones."""
    from torch import nn

    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CosearchError(f"register_activation: cls={cls!r} is invalid; accepted: an nn.Module subclass")
    if not callable(pieces_fn):
        raise CosearchError(f"register_activation: pieces_fn={pieces_fn!r} is not callable")
    _builtins()
    _SMOOTH.discard(cls)
    _REGISTRY[cls] = ActivationSpec(cls, pieces_fn, bool(affine))


def register_smooth(cls: type) -> None:
    """Declare ``cls`` a smooth (non-piecewise) activation: pattern signals are
    undefined on networks containing it."""
    from torch import nn

    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CosearchError(f"register_smooth: cls={cls!r} is invalid; accepted: an nn.Module subclass")
    _builtins()
    _REGISTRY.pop(cls, None)
    _SMOOTH.add(cls)


def _u8(t: "torch.Tensor") -> "torch.Tensor":
    import torch

    return t.to(torch.uint8)


def _builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from torch import nn

    def positive(_m, z):
        return _u8(z > 0)

    def hardtanh(m, z):
        return _u8(z > m.min_val) + _u8(z >= m.max_val)

    def hard3(_m, z):
        return _u8(z > -3.0) + _u8(z >= 3.0)

    def shrink(m, z):
        return _u8(z >= -m.lambd) + _u8(z > m.lambd)

    for cls in (nn.ReLU, nn.LeakyReLU, nn.PReLU):
        _REGISTRY[cls] = ActivationSpec(cls, positive)
    _REGISTRY[nn.Threshold] = ActivationSpec(nn.Threshold, lambda m, z: _u8(z > m.threshold))
    _REGISTRY[nn.Hardtanh] = ActivationSpec(nn.Hardtanh, hardtanh)  # ReLU6 subclasses Hardtanh
    _REGISTRY[nn.Hardsigmoid] = ActivationSpec(nn.Hardsigmoid, hard3)
    _REGISTRY[nn.Hardswish] = ActivationSpec(nn.Hardswish, hard3, affine=False)
    for cls in (nn.Hardshrink, nn.Softshrink):
        _REGISTRY[cls] = ActivationSpec(cls, shrink)
    for name in ("GELU", "SiLU", "Mish", "ELU", "CELU", "SELU", "Softplus", "Sigmoid", "Tanh", "LogSigmoid",
                 "Softsign", "Tanhshrink", "Softmax", "Softmin", "LogSoftmax", "GLU", "RReLU"):
        cls = getattr(nn, name, None)
        if cls is not None:
            _SMOOTH.add(cls)


def lookup(cls: type) -> ActivationSpec | None:
    """The spec registered for ``cls`` or its nearest registered base (None if none);
    a type registered smooth (itself or a nearer base) gives None."""
    _builtins()
    for base in cls.__mro__:
        if base in _REGISTRY:
            return _REGISTRY[base]
        if base in _SMOOTH:
            return None
    return None


def is_smooth(cls: type) -> bool:
    _builtins()
    for base in cls.__mro__:
        if base in _REGISTRY:
            return False
        if base in _SMOOTH:
            return True
    return False


@dataclass(frozen=True)
class ActivationScan:
    """What a network's activation modules are: ``piecewise`` modules in
    registration order of ``net.modules()``, and the type names found of each kind."""

    piecewise: tuple[tuple["nn.Module", ActivationSpec], ...]
    piecewise_types: tuple[str, ...]
    smooth_types: tuple[str, ...]
    net_type: str

    @property
    def defined(self) -> bool:
        """Activation patterns are defined: >= 1 piecewise module and no smooth one."""
        return bool(self.piecewise) and not self.smooth_types

    @property
    def affine(self) -> bool:
        """Every piece of every activation is affine (regions are linear regions)."""
        return all(spec.affine for _, spec in self.piecewise)

    def why_undefined(self, what: str) -> str:
        if self.smooth_types:
            return (f"{self.net_type} has smooth activation(s) {', '.join(self.smooth_types)}: {what} need "
                    f"piecewise-linear activations (ReLU, ReLU6, Hardtanh, LeakyReLU, Hardswish, ...); "
                    f"NTK, meco, synflow, flops still apply")
        return (f"{self.net_type} has no activation module of a registered piecewise type: {what} need one "
                f"(ReLU, ReLU6, Hardtanh, LeakyReLU, Hardswish, ...; declare yours with "
                f"cosearch.estimate.activations.register_activation)")

    def summary(self) -> dict[str, Any]:
        return {"piecewise": list(self.piecewise_types), "smooth": list(self.smooth_types),
                "patterns_defined": self.defined, "affine_pieces": self.affine if self.piecewise else None}


def scan(net: "nn.Module") -> ActivationScan:
    pw, pw_types, smooth_types = [], [], []
    for m in net.modules():
        spec = lookup(type(m))
        if spec is not None:
            pw.append((m, spec))
            if type(m).__name__ not in pw_types:
                pw_types.append(type(m).__name__)
        elif is_smooth(type(m)) and type(m).__name__ not in smooth_types:
            smooth_types.append(type(m).__name__)
    return ActivationScan(tuple(pw), tuple(pw_types), tuple(smooth_types), type(net).__name__)


@contextlib.contextmanager
def pattern_hooks(net: "nn.Module", sink: Callable[[np.ndarray], None], *,
                  what: str = "activation patterns") -> Iterator[ActivationScan]:
    """While active, every forward of ``net`` passes each piecewise module's codes
    (``(batch, units)`` uint8 numpy array, taken from the module's *input* by a
    forward pre-hook, so in-place activations are read correctly) to ``sink``,
    in execution order. Raises ``PatternUndefined`` when patterns are not defined."""
    info = scan(net)
    if not info.defined:
        raise PatternUndefined(info.why_undefined(what))

    def make(spec: ActivationSpec):
        def pre(m, inp):
            z = inp[0].detach()
            codes = spec.pieces_fn(m, z)
            sink(codes.reshape(z.shape[0], -1).to("cpu").numpy().astype(np.uint8, copy=False))
        return pre

    handles = [m.register_forward_pre_hook(make(spec)) for m, spec in info.piecewise]
    try:
        yield info
    finally:
        for h in handles:
            h.remove()


__all__ = ["ActivationScan", "ActivationSpec", "PatternUndefined", "is_smooth", "lookup", "pattern_hooks",
           "register_activation", "register_smooth", "scan"]
