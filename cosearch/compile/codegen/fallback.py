"""A schedule for every kernel: database records that replay, else a fallback.

TVM's ``MetaScheduleApplyDatabase`` takes, for every PrimFunc of a lowered
module, the single best record the database matches and replays its trace;
any failure is fatal to the whole ``tvm.compile``. With anchor-block equality a
match does not mean the trace replays: a kernel whose anchor block (conv, matmul,
reduction) equals the record's gets the record's trace through
``ScheduleUsingAnchorTrace``, and that trace also holds instructions about the
*other* blocks of the kernel it was tuned on (``compute_at`` of a producer, and
after ``enter_postproc`` ``get_child_blocks(root)`` / ``get_loops`` over the
whole function). Measured: model-zoo ResNet-50's ``stack``+``sum`` residual
kernels share their anchor (the sum) with ``broadcast_to``+``stack``+``sum``
kernels, whose extra block changes those counts: ``Check failed:
old_outputs.size() == new_outputs.size() (5 vs. 4)`` ("Output size mismatch");
NAS-Bench-201 networks sharing a database: ``Check failed:
(unscheduled_blocks.size() <= 1) ... All blocks should have been scheduled``.

``apply_schedules(mod, target, database)`` does the pass's job per PrimFunc and
never lets one kernel end the compile:

1. query the database's ``top_k`` records of the kernel's workload; replay each
   the way TVM does (on the record's workload module when structurally equal,
   else with ``schedule_using_anchor_trace`` on the kernel) and, when a direct
   replay fails, once more with the anchor-trace path; the first record that
   replays is used (``source="db"``). A record that does not replay is skipped
   with a ``ScheduleWarning`` naming the kernel and its workload hash;
2. otherwise, on CPU (LLVM) targets with ``fallback="auto"``: the tuned schedule of the
   nearest kernel of the same structure in the database, re-fitted to this kernel's loop
   extents and accepted by every postprocessor (``codegen.transfer``, ``source="transfer"``);
3. otherwise, on CPU (LLVM) targets with ``fallback="auto"``, for kernels whose
   anchor is a multiply-accumulate reduction (conv, matmul; ``is_heavy``): one sample of
   MetaSchedule's own design space for the kernel (the LLVM default rules:
   multi-level tiling, auto-inline, parallelise / vectorise / unroll), drawn with
   a fixed seed and accepted only if every LLVM postprocessor passes; nothing
   is measured (``source="fallback"``). Without this a kernel keeps TVM's default
   schedule: serial and unvectorised (Inception v1 with 10 of 79 kernels
   untuned ran 18.7x slower than ONNX Runtime). Every other kernel (pools, adds,
   means, softmax, concatenations) gets ``light_schedule``: its elementwise producers
   inlined and its loops parallelised and vectorised, nothing tiled, unrolled or
   rfactored (a design-space sample did that and ran SqueezeNet's softmax at 8 ms
   against 0.004 ms). ``fallback="mac"`` is the rule before that: MAC kernels only,
   kept to measure the difference (``bench/fallback.py``);
4. otherwise the kernel is left as is (``source="default"``; GPU targets then
   get DLight's defaults in ``codegen``).

Verdicts are cached in-process, keyed by target, the kernel's structural hash
and the record (the cache holds the record, so its handle stays unique), and
fallback schedules by target, kernel hash and seed: a joint search compiling
thousands of architectures replays each (kernel, record) pair once.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError, first_line

if TYPE_CHECKING:
    import tvm
    from tvm.s_tir import meta_schedule as ms

SOURCES = ("db", "transfer", "fallback", "default")
FALLBACKS = ("auto", "mac", "none")
#: ``light_schedule``'s parallelism: MetaSchedule's jobs per core (-1: no parallel loop)
LIGHT_JOBS_PER_CORE = 16


class ScheduleWarning(UserWarning):
    """A database record could not be applied to a kernel (it was skipped)."""


@dataclass(frozen=True)
class KernelChoice:
    """Where one kernel's schedule came from."""

    name: str  # the PrimFunc's name in the lowered module
    source: str  # "db" | "transfer" | "fallback" | "default"
    workload: str  # structural hash (hex) of the kernel as MetaSchedule normalises it
    skipped: int = 0  # database records that matched but did not replay
    reason: str = ""  # why not "db" (first line of the last replay error, "no record", ...)
    us: float | None = None  # "db": the record's tuning-time mean, µs
    serial: bool = False  # its parallel loops made serial (``codegen.serial``)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "workload": self.workload,
                "skipped": self.skipped, "reason": self.reason, "us": self.us, "serial": self.serial}


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: "OrderedDict[Any, Any]" = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                self.hits += 1
                return self.data[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.hits = self.misses = 0


#: (target, kernel hash, record handle) -> (record, scheduled PrimFunc | None, error line)
_VERDICTS = _LRU(16384)
#: (target, kernel hash, seed) -> (scheduled PrimFunc | None, error line)
_FALLBACKS = _LRU(8192)
_TRANSFERS = _LRU(8192)


def clear_caches() -> None:
    """Forget every cached replay verdict and fallback schedule (tests, benchmarks)."""
    _VERDICTS.clear()
    _FALLBACKS.clear()


def cache_stats() -> dict[str, int]:
    return {"verdict_hits": _VERDICTS.hits, "verdict_misses": _VERDICTS.misses,
            "fallback_hits": _FALLBACKS.hits, "fallback_misses": _FALLBACKS.misses}


def _with_attrs_of(scheduled: "tvm.tirx.PrimFunc", original: "tvm.tirx.PrimFunc") -> "tvm.tirx.PrimFunc":
    """``scheduled`` with exactly the attributes of ``original``, plus ``tirx.is_scheduled``
    (what ``MetaScheduleApplyDatabase`` does)."""
    f = scheduled
    keep = dict(original.attrs) if original.attrs else {}
    for k in list(dict(f.attrs).keys()) if f.attrs else []:
        if k not in keep:
            f = f.without_attr(k)
    for k, v in keep.items():
        f = f.with_attr(k, v)
    return f.with_attr("tirx.is_scheduled", True)


def replay_record(task_mod: "tvm.IRModule", record: "ms.database.TuningRecord", target) -> "tuple[Any, str]":
    """A database record applied to a task: (scheduled ``main`` PrimFunc, "") or (None, first
    line of the error). The record's own workload replays its trace directly; another
    (anchor-equal) workload goes through MetaSchedule's anchor-trace application. Used by
    the compile path (``compile_with_database``) and by ``engine.confirm``."""
    import tvm_ffi
    from tvm import s_tir
    from tvm.s_tir.meta_schedule.trace_apply import schedule_using_anchor_trace

    err = ""
    if tvm_ffi.structural_equal(task_mod, record.workload.mod):
        try:
            sch = s_tir.Schedule(record.workload.mod, debug_mask=0)
            record.trace.apply_to_schedule(sch, remove_postproc=False)
            return sch.mod["main"], ""
        except Exception as e:  # TVM raises InternalError / ValueError / TVMError
            err = first_line(e)
    try:
        sch = s_tir.Schedule(task_mod, debug_mask=0)
        schedule_using_anchor_trace(sch, record.trace, target)
        return sch.mod["main"], ""
    except Exception as e:
        return None, err or first_line(e)


def fallback_schedule(task_mod: "tvm.IRModule", target, *, seed: int = 0, tries: int = 3):
    """One unmeasured sample of MetaSchedule's design space for ``task_mod``
    (normalised: one PrimFunc ``main``) that every postprocessor accepts, as the
    scheduled ``main`` PrimFunc; ``None`` when no sample passes in ``tries`` seeds.
    Deterministic for a given ``seed``."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics

    ensure_tensor_intrinsics(target)  # TuneContext imports every backend's intrinsics otherwise
    for s in range(seed, seed + tries):
        ctx = ms.TuneContext(mod=task_mod, target=target, space_generator="post-order-apply",
                             task_name="fallback", num_threads=1, rand_state=s)
        for space in ctx.generate_design_space():
            sch = space.copy()
            if all(p.apply(sch) for p in ctx.space_generator.postprocs):
                return sch.mod["main"]
    return None


def light_schedule(task_mod: "tvm.IRModule", target) -> "tvm.tirx.PrimFunc | None":
    """The schedule of a kernel that is not a multiply-accumulate (pool, add, mean, softmax,
    concatenation): LLVM's default inlining rules, then the outer loops parallelised and the
    innermost vectorised (``ParallelizeVectorizeUnroll`` without unrolling), every
    postprocessor passing; nothing tiled, rfactored or moved. Deterministic: the one design
    space this gives has no random decision. ``None`` when the postprocessors reject it."""
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.intrin import ensure_tensor_intrinsics

    ensure_tensor_intrinsics(target)
    keep = ("InlineConstantScalars", "AutoInline")
    rules = [r for r in ms.schedule_rule.ScheduleRule.create("llvm") if type(r).__name__ in keep]
    rules.append(ms.schedule_rule.ParallelizeVectorizeUnroll(
        max_jobs_per_core=LIGHT_JOBS_PER_CORE, max_vectorize_extent=64, unroll_max_steps=[0], unroll_explicit=True))
    gen = ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="from-target", mutator_probs={})
    ctx = ms.TuneContext(mod=task_mod, target=target, space_generator=gen, task_name="light", num_threads=1,
                         rand_state=0)
    for space in ctx.generate_design_space():
        sch = space.copy()
        if all(p.apply(sch) for p in ctx.space_generator.postprocs):
            return sch.mod["main"]
    return None


def is_heavy(task_mod: "tvm.IRModule") -> bool:
    """Whether the kernel's anchor block is a multiply-accumulate reduction (conv,
    matmul, dense: a reduction reading at least two operands besides its accumulator).
    Only those get a design-space sample as fallback; the others get ``light_schedule``
    (a sample ran SqueezeNet's softmax at 8 ms against TVM's default 0.004 ms, 1 thread;
    docs/tuning.md)."""
    from tvm.s_tir.analysis import find_anchor_sblock

    block = find_anchor_sblock(task_mod)
    if block is None or not any(int(iv.iter_type) == 2 for iv in block.iter_vars):  # 2: CommReduce
        return False
    reads = {r.source.name for r in block.reads}
    writes = {w.source.name for w in block.writes}
    return len(reads - writes) >= 2


def _from_database(task_mod, database, target, tkey: str, khash: int, top_k: int, name: str,
                   workload: str) -> tuple[Any, int, str, Any]:
    """The first of the kernel's ``top_k`` database records that replays on it: (scheduled
    PrimFunc or None, records skipped, why none was used, the record used). Verdicts are cached."""
    scheduled, skipped, reason, used = None, 0, "no record", None
    records = []
    if database is not None and database.has_workload(task_mod):
        records = list(database.get_top_k(database.commit_workload(task_mod), top_k))
    for rec in records:
        key = (tkey, khash, rec.__chandle__())
        verdict = _VERDICTS.get(key)
        if verdict is None:
            prim, err = replay_record(task_mod, rec, target)
            verdict = (rec, prim, err)
            _VERDICTS.put(key, verdict)
            if prim is None:
                warnings.warn(
                    f"kernel {name!r} (workload {workload}): skipped a database record that does not "
                    f"replay on it: {err}",
                    ScheduleWarning,
                    stacklevel=3,
                )
        if verdict[1] is not None:
            scheduled, used = verdict[1], rec
            break
        skipped += 1
        reason = f"{skipped} record(s) did not replay: {verdict[2]}"
    return scheduled, skipped, reason, used


def _mean_us(rec) -> float | None:
    """A record's tuning-time mean run time, µs (``None`` without valid run times)."""
    from cosearch.compile.storage.database import valid_secs

    secs = valid_secs(rec.run_secs) if rec is not None and rec.run_secs is not None else None
    return sum(secs) / len(secs) * 1e6 if secs else None


def _transfer_for(task_mod, database, target, tkey: tuple) -> tuple[Any, str]:
    """(a schedule transferred from the nearest tuned sibling or None, why), cached per
    (target, kernel, database state)."""
    from cosearch.compile.codegen.transfer import transfer_schedule

    tr = _TRANSFERS.get(tkey)
    if tr is None:
        try:
            tr = transfer_schedule(task_mod, database, target)
        except Exception as e:  # noqa: BLE001 - transfer is an optimisation, never fatal
            tr = (None, f"transfer failed: {first_line(e)}")
        _TRANSFERS.put(tkey, tr)
    return tr


def _fallback_for(task_mod, target, fkey: tuple) -> tuple[Any, str]:
    """(the fallback schedule or None, why none), cached per (target, kernel, seed, mode)."""
    fb = _FALLBACKS.get(fkey)
    if fb is None:
        heavy = is_heavy(task_mod)
        if not heavy and fkey[3] == "mac":
            fb = (None, "kept TVM's default (not a multiply-accumulate kernel)")
        else:
            try:
                fb = ((fallback_schedule(task_mod, target, seed=fkey[2]) if heavy else light_schedule(task_mod, target)),
                      "fallback failed: no design-space sample passed the postprocessors")
            except Exception as e:  # a rule or postprocessor raising: keep TVM's default
                fb = (None, f"fallback failed: {first_line(e)}")
        _FALLBACKS.put(fkey, fb)
    return fb


def apply_schedules(
    mod: "tvm.IRModule",
    target: "tvm.target.Target",
    database: "ms.database.Database | None",
    *,
    fallback: str = "auto",
    top_k: int = 4,
    seed: int = 0,
    transfer: bool = True,
) -> "tuple[tvm.IRModule, list[KernelChoice]]":
    """``mod`` with every PrimFunc scheduled (see the module docstring), and where each
    kernel's schedule came from, in module order."""
    import tvm
    import tvm_ffi
    from tvm import tirx
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    if fallback not in FALLBACKS:
        raise CosearchError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise CosearchError(f"top_k must be a positive integer, got {top_k!r}")
    tkey = str(target)
    cpu = target.kind.name == "llvm"
    out: dict[Any, Any] = {}
    choices: list[KernelChoice] = []
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            out[gv] = func
            continue
        name = gv.name_hint
        if func.attrs and bool(func.attrs.get("tirx.is_scheduled", False)):
            out[gv] = func
            choices.append(KernelChoice(name, "default", "", reason="scheduled before compilation"))
            continue
        task_mod = _normalize_mod(func)
        khash = tvm_ffi.structural_hash(task_mod) & (2**64 - 1)
        workload = "%016x" % khash
        scheduled, skipped, reason, rec = _from_database(task_mod, database, target, tkey, khash, top_k, name, workload)
        if scheduled is not None:
            out[gv] = _with_attrs_of(scheduled, func)
            choices.append(KernelChoice(name, "db", workload, skipped, us=_mean_us(rec)))
            continue
        if transfer and fallback != "none" and cpu and database is not None:
            tr = _transfer_for(task_mod, database, target, (tkey, khash, id(database), len(database)))
            if tr[0] is not None:
                out[gv] = _with_attrs_of(tr[0], func)
                choices.append(KernelChoice(name, "transfer", workload, skipped, tr[1]))
                continue
            reason = f"{reason}; {tr[1]}"
        if fallback != "none" and cpu:
            fb = _fallback_for(task_mod, target, (tkey, khash, seed, fallback))
            if fb[0] is not None:
                out[gv] = _with_attrs_of(fb[0], func)
                choices.append(KernelChoice(name, "fallback", workload, skipped, reason))
                continue
            reason = f"{reason}; {fb[1]}"
        out[gv] = func
        choices.append(KernelChoice(name, "default", workload, skipped, reason))
    return tvm.IRModule(out, attrs=mod.attrs), choices
