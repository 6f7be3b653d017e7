"""Import only the tensor intrinsics a target can use.

MetaSchedule's ``TuneContext.__init__`` runs ``import tvm.s_tir.tensor_intrin``,
which parses the TVMScript of every backend's tensorization intrinsics: CUDA,
ROCm, Hexagon, Arm, x86, RISC-V. Measured here (2 cores, shared): 23 s, of
which ROCm 10.7 s, Hexagon 4.6 s, Arm 3.9 s (+2.8 s shared dot-product
helpers), CUDA most of the rest on a quiet machine; the x86 part is cheap.
A CPU target can only ever tensorize with its own ISA's intrinsics, so the
others are pointless start-up cost for every process that tunes.

``ensure_tensor_intrinsics(target)`` imports the package with placeholder
modules standing in for the other backends, then removes the placeholders from
``sys.modules``: a later explicit import of a skipped backend (say a CUDA
target tuned in the same process) imports and registers the real one. Calling
it again is cheap; it adds only backends not yet imported.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_PKG = "tvm.s_tir.tensor_intrin"
#: backend module -> the ISA families (LLVM mtriple prefixes / target kinds) that can use it
_BACKENDS: dict[str, tuple[str, ...]] = {
    "x86": ("x86_64", "i386", "i686", "x86"),
    "arm_cpu": ("aarch64", "arm", "thumb"),
    "riscv_cpu": ("riscv",),
    "hexagon": ("hexagon",),
    "cuda": ("cuda", "nvptx"),
    "rocm": ("rocm", "amdgcn"),
    "metal": ("metal",),
}


def _families(target: Any) -> set[str]:
    """The ISA families of a ``tvm.target.Target`` (and its host)."""
    import platform

    found: set[str] = set()
    for t in (target, getattr(target, "host", None)):
        if t is None:
            continue
        kind = str(t.kind.name)
        if kind != "llvm":
            found.add(kind)
            continue
        triple = str(t.attrs.get("mtriple", "") or "") or platform.machine()
        found.add(triple.split("-")[0].lower())
    return found


def needed_backends(target: Any) -> set[str]:
    fams = _families(target)
    return {mod for mod, prefixes in _BACKENDS.items() if any(f.startswith(p) for f in fams for p in prefixes)}


def ensure_tensor_intrinsics(target: Any) -> set[str]:
    """Make ``import tvm.s_tir.tensor_intrin`` cheap for ``target``; returns the
    backends imported for real."""
    needed = needed_backends(target)
    if _PKG not in sys.modules:
        stubs = {f"{_PKG}.{m}" for m in _BACKENDS if m not in needed and f"{_PKG}.{m}" not in sys.modules}
        for name in stubs:
            sys.modules[name] = types.ModuleType(name)
        try:
            importlib.import_module(_PKG)
        finally:
            pkg = sys.modules.get(_PKG)
            for name in stubs:
                sys.modules.pop(name, None)
                if pkg is not None and hasattr(pkg, name.rsplit(".", 1)[1]):
                    delattr(pkg, name.rsplit(".", 1)[1])
    for m in needed:
        importlib.import_module(f"{_PKG}.{m}")
    return needed
