"""A new task's tuning starts from its nearest tuned sibling: the transferred schedule
(``codegen.transfer``) timed as the task's first trial and kept as its first record.

Without it MetaSchedule's evolutionary search starts a new task from random design-space
samples, and the transferred schedule is only what the compiler uses while the task has no
record. With it (``TuneConfig.transfer``, on by default):

1. for each task of the call without a record, the schedule is transferred from the database's
   nearest same-structure workload (nothing happens for a task without a donor);
2. all transferred kernels are built and timed together with the target's tuning runner (the
   same ``number`` x ``repeat`` as a trial); one that fails to build or run is dropped;
3. each timed one is a tuning record of the task: appended to the shared database under its
   lock, logged as the task's first ``batch`` in the history (``source: "transfer"``, one
   trial: it is paid from the task's budget), and put into the tuning call's own database,
   where the evolutionary search picks its initial population's measured share from -- so the
   first batch mutates the transferred schedule instead of starting over.

What it is worth at 8 and 32 trials against a cold start: ``bench/transfer.py``
(``seeded`` columns), docs/tuning.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cosearch.compile.storage import history as hist

if TYPE_CHECKING:
    from cosearch.compile.plan import PlannedTask
    from cosearch.compile.target import TargetSpec
    from cosearch.compile.tuning.config import TuneConfig


@dataclass
class Seeds:
    """What seeding gave one tuning call: per workload the timed record and its µs."""

    records: dict[str, Any] = field(default_factory=dict)  # workload -> TuningRecord
    us: dict[str, float] = field(default_factory=dict)
    written: int = 0  # records appended to the shared database
    failed: int = 0  # transferred but failed to build or run
    not_transferred: dict[str, str] = field(default_factory=dict)  # workload -> why (no donor fits)
    seconds: float = 0.0


def seed_new_tasks(tasks: Sequence["PlannedTask"], database, target: "TargetSpec", *, database_dir: Path,
                   config: "TuneConfig", run: str) -> Seeds:
    """Transfer, time and commit a first record for each of ``tasks`` (tasks without a record
    in ``database``) that has a donor. Returns the seeds; never raises for a task that fails."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.codegen.transfer import transfer_trace
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.tuning.confirm import time_kernels
    from cosearch.errors import first_line

    t0 = time.perf_counter()
    seeds = Seeds()
    tgt = target.tvm_target()
    if tgt.kind.name != "llvm" or not tasks:
        return seeds
    found: list[tuple["PlannedTask", Any]] = []
    for t in tasks:
        try:
            sch, why = transfer_trace(t.mod, database, tgt)
        except Exception as e:  # noqa: BLE001 - transfer is an optimisation: the task starts cold
            sch, why = None, first_line(e)
        if sch is not None:
            found.append((t, sch))
        else:
            seeds.not_transferred[t.workload] = why
    if found:
        args = [ms.arg_info.ArgInfo.from_prim_func(t.mod["main"]) for t, _ in found]
        timed = time_kernels([tvm.IRModule({"main": sch.mod["main"]}) for _, sch in found], target,
                             config=config, repeat=config.repeat, args_info=args)
        events = []
        for (t, sch), info, samples in zip(found, args, timed):
            if samples is None:
                seeds.failed += 1
                continue
            secs = [1e-6 * x for x in samples]
            rec = ms.database.TuningRecord(sch.trace, ms.database.Workload(t.mod), secs, tgt, info)
            us = sum(samples) / len(samples)
            seeds.records[t.workload], seeds.us[t.workload] = rec, us
            events.append(hist.event("batch", t.workload, run=run, name=t.name, trials=1, errors=0,
                                     batch_best_us=hist.num(us), best_us=hist.num(us), prior_trials=0,
                                     source="transfer"))
        if seeds.records:
            seeds.written = dbmod.merge_records(database_dir, list(seeds.records.values()))
        hist.append(database_dir, events)
    seeds.seconds = time.perf_counter() - t0
    return seeds


__all__ = ["Seeds", "seed_new_tasks"]
