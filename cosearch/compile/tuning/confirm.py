"""Confirming what tuning found: the best records timed again on their own."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cosearch.compile.plan import PlannedTask, trials_spent
from cosearch.compile.storage import history as hist
from cosearch.compile.tuning import runner as runners

if TYPE_CHECKING:
    import tvm

    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tuning.config import TuneConfig


def confirm(tasks: Sequence[PlannedTask], target: "TargetSpec", *, database_dir: Path | str,
            config: "TuneConfig | None" = None, repeat: int = 10) -> dict[str, float]:
    """Time each task's best record again on its own and append a ``confirm`` event to the
    history (``repeat`` measurements of ``config.number`` runs; their median). A tuning-time
    best is the minimum over many noisy measurements, biased low the more candidates a task
    saw; predictions (``predict_latency``, ``latency_model``) use the confirmed value while
    that record stays the best. Records confirmed already are skipped; a record that fails
    to build or run is skipped (failures are data: nothing is written for it).
    Returns workload -> confirmed µs of this call."""
    import tvm

    from cosearch.compile.codegen.fallback import replay_record
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.tuning.config import TuneConfig

    config = config or TuneConfig()
    if target.measure == "none":
        return {}
    database_dir = Path(database_dir)
    db = dbmod.open_database(database_dir)
    h = trials_spent(database_dir)
    tgt = target.tvm_target()
    todo = []  # (workload, record µs, record, scheduled module)
    seen: set[str] = set()
    for t in tasks:
        if not t.tunable or t.workload in seen or not db.has_workload(t.mod):
            continue
        seen.add(t.workload)
        top = db.get_top_k(db.commit_workload(t.mod), 1)
        rec_us = dbmod.best_us(db, t.mod)
        if not top or rec_us is None or (t.workload in h and hist.num(rec_us) in h[t.workload].confirmed):
            continue
        func, _err = replay_record(t.mod, top[0], tgt)
        if func is not None:
            todo.append((t.workload, rec_us, top[0], tvm.IRModule({"main": func})))
    if not todo:
        return {}
    run = secrets.token_hex(6)
    timed = time_kernels([m for *_, m in todo], target, config=config, repeat=repeat,
                         args_info=[rec.args_info for _w, _us, rec, _m in todo])
    out, events = {}, []
    for (w, rec_us, _rec, _m), samples in zip(todo, timed):
        if samples is None:
            continue
        us = sorted(samples)[len(samples) // 2]
        out[w] = us
        events.append(hist.event("confirm", w, run=run, record_us=hist.num(rec_us), us=hist.num(us),
                                 samples=[hist.num(x) for x in samples]))
    hist.append(database_dir, events)
    return out


def time_kernels(mods: Sequence["tvm.IRModule"], target: "TargetSpec", *, config: "TuneConfig | None" = None,
                 repeat: int = 10, args_info: Sequence[Any] | None = None) -> list[list[float] | None]:
    """Build each scheduled one-kernel module (``main``) and time it with the target's tuning
    runner (``repeat`` measurements of ``config.number`` runs): per module its samples in µs,
    or ``None`` where the build or the run failed (failures are data)."""
    import dataclasses

    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.tuning.builder import InProcessBuilder
    from cosearch.compile.tuning.config import TuneConfig

    config = config or TuneConfig()
    if not mods:
        return []
    if args_info is None:
        args_info = [ms.arg_info.ArgInfo.from_prim_func(m["main"]) for m in mods]
    tgt = target.tvm_target()
    scratch = tempfile.mkdtemp(prefix="cosearch-time-")
    runner = runners.acquire_runner(target, dataclasses.replace(config, repeat=repeat))
    try:
        builder = InProcessBuilder(tmp_root=scratch, workers=config.resolved_build_workers())
        built = builder.build([ms.builder.BuilderInput(m, tgt) for m in mods])
        device = {"llvm": "cpu"}.get(tgt.kind.name, tgt.kind.name)
        ok = [i for i, b in enumerate(built) if b.error_msg is None]
        futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, device, args_info[i]) for i in ok])
        out: list[list[float] | None] = [None] * len(mods)
        for i, f in zip(ok, futures):
            r = f.result()
            secs = dbmod.valid_secs(r.run_secs) if r.error_msg is None else None
            if secs is not None:
                out[i] = [1e6 * x for x in secs]
        return out
    finally:
        runners.release_runner(runner)
        shutil.rmtree(scratch, ignore_errors=True)
