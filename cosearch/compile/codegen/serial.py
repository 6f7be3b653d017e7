"""Small kernels run serial: no parallel loop where a kernel is too small to pay for it.

A parallel loop hands its iterations to TVM's thread pool and waits for every worker: a
hand-off and a join on each call, as long as the smallest kernels of the search's own networks
take (NB201 cells at 32x32, mbv2 at 64x64: 30-120 calls per inference, many of 1-4 µs).
MetaSchedule parallelises every kernel it tunes, however small, and the tuner times each kernel
alone, hot, in a loop that keeps the pool's workers spinning; inside a module the same kernel
pays the hand-off. So after the schedules are applied (``fallback.apply_schedules``) every
kernel estimated under ``below_us`` has its parallel loops made serial:

- a kernel with a database record: the record's tuning-time mean (``KernelChoice.us``);
- a kernel without one that is not a multiply-accumulate (``fallback.is_heavy``: pools, adds,
  concatenations, means): its bytes moved (every buffer once) at ``LIGHT_BYTES_PER_US``;
- a multiply-accumulate kernel without a record keeps its schedule (its time is unknown).

Measured (``bench/serial_small.py``, ``bench/results/serial_small.json`` and
``serial_small_larger.json``, docs/tuning.md), end to end at 2 threads against the all-parallel
build in the same run: at 2 µs mbv2-small 9-30 % faster (13 of its kernels serial), the NB201
networks within 2.5 % either way (3-6 kernels); at 4 µs and above the NB201 networks lose 3-13 %
(a 2-4 µs kernel takes twice that serial, more than the hand-off it saves), hence 2 µs.

The rewrite goes through TVMScript (print, ``T.parallel`` -> ``T.serial``, parse): a kernel it
cannot round-trip keeps its parallel loops (``choice.serial`` stays False); it never fails a
compile. ``below_us <= 0`` turns it off.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.codegen.fallback import KernelChoice

#: kernels estimated faster than this (µs, 2-thread tuning-time mean) run serial
SERIAL_BELOW_US = 2.0
#: what a light kernel (no multiply-accumulate) is assumed to move per µs on one core, bytes
#: (32 GB/s: vectorised elementwise ops on L2-resident tensors; at 2 µs: up to 64 KB moved)
LIGHT_BYTES_PER_US = 32e3


def bytes_moved(func: "tvm.tirx.PrimFunc") -> int:
    """Every parameter buffer once, in bytes (0 for symbolic shapes)."""
    import numpy as np
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    total = 0
    try:
        for a in ArgInfo.from_prim_func(func):
            total += math.prod(int(d) for d in a.shape) * np.dtype(str(a.dtype)).itemsize
    except Exception:  # noqa: BLE001 - symbolic shapes, scalar arguments
        return 0
    return total


def serialize(func: "tvm.tirx.PrimFunc") -> "tvm.tirx.PrimFunc | None":
    """``func`` with every parallel loop serial, or ``None`` when it has none or the
    TVMScript round trip fails."""
    import tvm

    try:
        text = func.script()
        if "T.parallel(" not in text:
            return None
        out = tvm.script.from_source(text.replace("T.parallel(", "T.serial("))
    except Exception:  # noqa: BLE001 - any parser/printer failure: keep the parallel kernel
        return None
    return out if isinstance(out, tvm.tirx.PrimFunc) else None


def is_small(choice: "KernelChoice", func: "tvm.tirx.PrimFunc", below_us: float) -> bool:
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    from cosearch.compile.codegen.fallback import is_heavy

    if choice.us is not None:
        return choice.us < below_us
    try:
        heavy = is_heavy(_normalize_mod(func))
    except Exception:  # noqa: BLE001 - no anchor block to judge: leave it alone
        return False
    return not heavy and 0 < bytes_moved(func) <= below_us * LIGHT_BYTES_PER_US


def serialize_small(mod: "tvm.IRModule", choices: Sequence["KernelChoice"], below_us: float,
                    originals: "tvm.IRModule | None" = None) -> tuple["tvm.IRModule", list["KernelChoice"]]:
    """``mod`` (scheduled) with the kernels under ``below_us`` made serial, and ``choices``
    with ``serial`` set on those. ``originals``: the module before scheduling (for
    ``is_heavy``, which needs the unscheduled blocks); default ``mod``."""
    import dataclasses

    import tvm
    from tvm import tirx

    if not below_us > 0:
        return mod, list(choices)
    by_name = {c.name: c for c in choices}
    before = {gv.name_hint: f for gv, f in (originals if originals is not None else mod).functions.items()}
    out: dict[Any, Any] = {}
    changed: set[str] = set()
    for gv, func in mod.functions.items():
        c, orig = by_name.get(gv.name_hint), before.get(gv.name_hint)
        if isinstance(func, tirx.PrimFunc) and c is not None and isinstance(orig, tirx.PrimFunc) \
                and is_small(c, orig, below_us):
            s = serialize(func)
            if s is not None:
                out[gv] = s.with_attr("tirx.is_scheduled", True)
                changed.add(gv.name_hint)
                continue
        out[gv] = func
    if not changed:
        return mod, list(choices)
    return (tvm.IRModule(out, attrs=mod.attrs),
            [dataclasses.replace(c, serial=True) if c.name in changed else c for c in choices])
