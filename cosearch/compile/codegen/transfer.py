"""Schedule transfer: a kernel without records starts from the tuned schedule of its nearest
sibling in the database.

A search brings new architectures, and every new architecture brings kernels the database has
never seen; most are near-copies of tuned ones (the same convolution with another channel count
or epilogue). Transfer-tuning (Gibson & Cano, PACT'22) reuses schedules across such kernels
without search. Here, for a kernel whose workload has no record that replays:

1. **Donors**: the database's workloads with the same *structure* -- the same blocks in the same
   order, each with the same number of loops (``signature``) -- ranked by how far their buffer
   shapes are (sum over buffers of ``|log(size / donor size)|``, ``distance``); the nearest
   ``top_k`` are tried, best record of each.
2. **Re-applied**: the donor's trace is replayed on the new kernel with MetaSchedule's
   ``decision_provider`` hook: every ``SamplePerfectTile`` decision is re-fitted to the new loop's
   extent (``refit_tiles``: innermost factors kept where they still divide, the rest moved
   outward), every other decision kept.
3. **Validated**: the replay must succeed and every LLVM postprocessor must accept the result
   (the same bar as the design-space fallback); a donor that fails is skipped.

Nothing is measured: the transferred schedule is used where the alternative is an unmeasured
design-space sample (``fallback``) or TVM's serial default. What it is worth at 0 trials is
measured in ``bench/transfer.py`` (docs/tuning.md).
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

from cosearch.errors import first_line

#: donor workloads tried per kernel, nearest first
TOP_K = 4


def _walk(func) -> tuple[list[tuple[str, int]], dict[str, tuple[int, ...]]]:
    """The kernel's blocks in order (stem of the name, loops around it) and the buffers they read
    and write (name -> shape), in order of first use."""
    from tvm import tirx

    blocks: list[tuple[str, int]] = []
    buffers: dict[str, tuple[int, ...]] = {}
    depth = [0]

    def visit(stmt: Any) -> None:
        if isinstance(stmt, tirx.For):
            depth[0] += 1
            visit(stmt.body)
            depth[0] -= 1
        elif hasattr(stmt, "name_hint") and hasattr(stmt, "iter_vars"):  # SBlock
            if stmt.name_hint != "root":
                blocks.append((_stem(stmt.name_hint), depth[0]))
                for region in list(stmt.reads) + list(stmt.writes):
                    b = region.source
                    buffers.setdefault(str(b.name), tuple(int(d) for d in b.shape))
            visit(stmt.body)
        elif hasattr(stmt, "block"):  # SBlockRealize
            visit(stmt.block)
        elif hasattr(stmt, "seq"):
            for s in stmt.seq:
                visit(s)
        elif hasattr(stmt, "then_case"):
            visit(stmt.then_case)
            if stmt.else_case is not None:
                visit(stmt.else_case)
        elif hasattr(stmt, "body"):
            visit(stmt.body)

    visit(func.body)
    return blocks, buffers


def signature(func) -> tuple:
    """The kernel's structure without its shapes: (block name stem, loops around it) in order,
    and the ranks of the buffers the blocks touch."""
    blocks, buffers = _walk(func)
    return tuple(blocks), tuple(len(s) for s in buffers.values())


def _stem(name: str) -> str:
    """``conv2d_nchw_1`` -> ``conv2d_nchw``, ``T_add1`` -> ``T_add``, ``lv353_red`` -> ``red``:
    numbered copies of a block, and blocks named after a graph variable, are the same block."""
    return re.sub(r"_?\d+$", "", re.sub(r"^lv\d+_", "", name)) or name


def _sizes(func) -> list[float]:
    return [float(math.prod(s)) for s in _walk(func)[1].values()]


def distance(func, donor) -> float:
    """How far two kernels of one signature are: the sum of ``|log|`` buffer-size ratios."""
    return sum(abs(math.log(max(a, 1.0) / max(b, 1.0))) for a, b in zip(_sizes(func), _sizes(donor)))


def refit_tiles(decision: list[int], extent: int) -> list[int]:
    """A tile decision (outer..inner factors) re-fitted to ``extent``: from the innermost factor
    outward each keeps what of it still divides the remaining extent; the outermost takes the rest.
    ``[1, 4, 2, 8]`` for 64 -> ``[1, 4, 2, 8]``; for 48 -> ``[3, 1, 2, 8]``; for 7 -> ``[7, 1, 1, 1]``."""
    rest = int(extent)
    inner: list[int] = []
    for f in reversed(decision[1:]):
        g = math.gcd(int(f), rest)
        inner.append(g)
        rest //= g
    return [rest, *reversed(inner)]


class _Donors:
    """The database's workloads grouped by signature, refreshed when the database grows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[int, tuple[int, dict]] = {}

    def of(self, database) -> dict:
        key, size = id(database), len(database)
        with self.lock:
            hit = self.seen.get(key)
            if hit is not None and hit[0] == size:
                return hit[1]
        recs = list(database.get_all_tuning_records())
        best: dict[Any, Any] = {}
        for r in recs:
            if not r.run_secs:
                continue
            secs = sum(float(s) for s in r.run_secs) / len(r.run_secs)
            w = r.workload
            if w not in best or secs < best[w][0]:
                best[w] = (secs, r)
        groups: dict[tuple, list] = {}
        for w, (_secs, r) in best.items():
            try:
                groups.setdefault(signature(w.mod["main"]), []).append(r)
            except Exception:  # noqa: BLE001 - a workload we cannot read is no donor
                continue
        with self.lock:
            self.seen[key] = (size, groups)
        return groups


_DONORS = _Donors()


def transfer_schedule(task_mod, database, target, *, top_k: int = TOP_K) -> tuple[Any, str]:
    """(scheduled ``main`` PrimFunc, donor description) for ``task_mod`` from the nearest donor
    whose trace re-applies and passes the postprocessors, or (None, why not)."""
    sch, why = transfer_trace(task_mod, database, target, top_k=top_k)
    return (None if sch is None else sch.mod["main"]), why


def transfer_trace(task_mod, database, target, *, top_k: int = TOP_K) -> tuple[Any, str]:
    """(the transferred ``Schedule``, donor description), or (None, why not). The schedule's
    trace is a tuning record's: the donor's instructions with re-fitted decisions, then
    ``EnterPostproc`` and the postprocessors (a replay with ``remove_postproc`` drops those),
    so it can seed MetaSchedule's evolutionary search (``tuning.seed``)."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics

    if database is None:
        return None, "no database"
    func = task_mod["main"]
    donors = _DONORS.of(database).get(signature(func), [])
    if not donors:
        return None, "no tuned kernel of the same structure"
    ranked = sorted(donors, key=lambda r: distance(func, r.workload.mod["main"]))[:top_k]
    ensure_tensor_intrinsics(target)
    ctx = ms.TuneContext(mod=task_mod, target=target, space_generator="post-order-apply", task_name="transfer",
                         num_threads=1, rand_state=0)
    postprocs = ctx.space_generator.postprocs
    why = ""
    for rec in ranked:
        sch = s_tir.Schedule(task_mod, debug_mask=0)

        def provide(inst, inputs, attrs, decision, sch=sch):
            if inst.kind.name == "SamplePerfectTile" and decision is not None:
                return refit_tiles([int(d) for d in decision], int(sch.get(inputs[0]).extent))
            return decision

        try:
            rec.trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=provide)
            sch.enter_postproc()
            if all(p.apply(sch) for p in postprocs):
                return sch, f"transferred from workload {_hash(rec.workload.mod)}"
            why = "a postprocessor rejected the transferred schedule"
        except Exception as e:  # noqa: BLE001 - a donor that does not fit is skipped
            why = first_line(e)
    return None, f"no donor fits ({len(ranked)} tried): {why}"


def _hash(mod) -> str:
    import tvm_ffi

    return "%016x" % (tvm_ffi.structural_hash(mod) & (2**64 - 1))


__all__ = ["TOP_K", "distance", "refit_tiles", "signature", "transfer_schedule", "transfer_trace"]
