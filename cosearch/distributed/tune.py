"""A tuning call split over the search's workers: one part per board.

A target measured on RPC boards can take one tuning call per board at once. When the search has
workers (``--workers``, ``--ray-address``) and the tracker has more than one board under the
target's key, the driver splits a call's tasks into ``k = min(workers, boards, tasks)`` parts
(``split_budgets``: largest budget first, each to the part with the fewest trials so far) and
each part runs as its own tuning call in a worker (``tune_part``): MetaSchedule's candidate
generation, the builds and the measurements of different tasks proceed side by side, each part
measuring on the boards the tracker hands it (a busy board is never handed out twice).

What the strategy decides is unchanged: the call's tasks and per-task budgets are the driver's,
and the parts' outcomes are merged into the one result the driver journals.

**One writer.** A part never writes the run's schedule database. The driver sends each part a
snapshot of what the database holds for the part's tasks (``snapshot``: their best records, as
plain data, and their tuning history); the worker tunes from it in a private scratch database
and sends back what the call added (its new records and history events); the driver appends
them to the one database under its exclusive lock (``absorb``:
``compile.storage.database.append_pairs``, ``storage.history.append``). So no record is lost or
torn by concurrent parts, and a worker on another machine needs no shared filesystem for
tuning. A part whose worker is lost for good (after Ray's retries) gives its tasks no trials in
this call and writes nothing: the merged result says the call ended early, so the driver does
not take that for tasks out of candidates.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Sequence


def split_budgets(budgets: dict[str, int], k: int) -> list[dict[str, int]]:
    """``budgets`` (workload -> trials) in at most ``k`` parts of about equal trials: largest budget
    first, each to the lightest part (ties: the lower part). Deterministic."""
    k = max(1, min(int(k), len(budgets)))
    parts: list[dict[str, int]] = [{} for _ in range(k)]
    loads = [0] * k
    for w, n in sorted(budgets.items(), key=lambda kv: (-kv[1], kv[0])):
        i = min(range(k), key=lambda j: (loads[j], j))
        parts[i][w] = int(n)
        loads[i] += int(n)
    return [p for p in parts if p]


def task_payload(task: Any) -> tuple[Any, str]:
    """A planned task as plain data a worker can rebuild it from: (features, the kernel's
    IRModule as TVM JSON)."""
    import tvm

    return task.features, tvm.ir.save_json(task.mod)


def _rebuild(payload: tuple[Any, str], target: Any) -> Any:
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from cosearch.compile.plan import PlannedTask

    features, mod_json = payload
    mod = tvm.ir.load_json(mod_json)
    return PlannedTask(features, True, ms.ExtractedTask(features.name, mod, target.tvm_target(), [mod],
                                                        int(features.weight)))


def snapshot(database_dir: Any, tasks: Sequence[Any], keep: int | None) -> dict[str, Any]:
    """What the database holds for ``tasks`` (planned tasks) as plain data: their ``keep`` best
    records (``storage.database.record_pairs``) and their history events."""
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage import history as hist

    db = dbmod.open_database(database_dir)
    wanted = {t.workload for t in tasks}
    return {"records": dbmod.record_pairs(db, [t.mod for t in tasks], keep),
            "history": [e for e in hist.read(database_dir) if e.get("workload") in wanted]}


def absorb(database_dir: Any, parts: Sequence[dict[str, Any] | None]) -> int:
    """Append what the parts added (records, history) to the one database; -> records written."""
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage import history as hist

    n = 0
    for p in parts:
        if p is None:
            continue
        n += dbmod.append_pairs(database_dir, p.get("new_records") or [])
        hist.append(database_dir, p.get("new_history") or [])
    return n


def tune_part(spec: dict[str, Any], tasks: Sequence[tuple[Any, str]], budgets: dict[str, int],
              config: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """One part of a split tuning call, in a worker: the driver's evaluator rebuilt from ``spec``
    (``screen.worker_spec``) tunes ``tasks`` with ``budgets`` in a scratch database holding
    ``start`` (``snapshot``); returns, besides the outcome, what the call added
    (``new_records``, ``new_history``) for the driver to append (``absorb``)."""
    import shutil
    import tempfile

    from cosearch.compile import engine
    from cosearch.compile.storage import database as dbmod
    from cosearch.compile.storage import history as hist
    from cosearch.compile.tuning.config import TuneConfig
    from cosearch.distributed.screen import evaluator_for

    ev = evaluator_for(spec)
    pts = [_rebuild(p, ev.target) for p in tasks]
    total = int(sum(budgets.values()))
    scratch = tempfile.mkdtemp(prefix="cosearch-part-")
    try:
        n_rec = dbmod.append_pairs(scratch, start["records"])  # the scratch database was empty
        hist.append(scratch, start["history"])
        n_hist = len(start["history"])
        out = engine.tune_tasks(pts, ev.target, database_dir=scratch, trials=total,
                                config=TuneConfig(**{**config, "trials": total}), budgets=dict(budgets))
        new_records = dbmod.pairs_since(scratch, n_rec)
        new_history = list(hist.read(scratch))[n_hist:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"new_records": new_records, "new_history": new_history,
            "trials": int(out.trials_run), "seconds": float(out.seconds), "records": int(out.records_written),
            "best_us": {w: o.best_us for w, o in out.tasks.items()},
            "trials_per_task": {w: int(o.trials) for w, o in out.tasks.items()},
            "ended_early": bool(out.scheduler_race), "builds": out.builds, "measure": out.measure,
            "pid": os.getpid(), "host": socket.gethostname()}


def merge(parts: Sequence[dict[str, Any] | None], errors: Sequence[str | None], seconds: float) -> dict[str, Any]:
    """The parts' outcomes as one call's: trials and per-task results added up, ``seconds`` the
    call's wall time, ``ended_early`` when any part ended early or was lost (``errors``)."""
    done = [p for p in parts if p is not None]
    measured = [p["measure"] for p in done if p.get("measure")]
    return {"measure": {"retried": sum(m["retried"] for m in measured), "failed": sum(m["failed"] for m in measured),
                        "errors": [e for m in measured for e in m["errors"]][:3]} if measured else None,
            "trials": sum(p["trials"] for p in done), "seconds": seconds,
            "best_us": {w: v for p in done for w, v in p["best_us"].items()},
            "trials_per_task": {w: n for p in done for w, n in p["trials_per_task"].items()},
            "ended_early": any(p["ended_early"] for p in done) or any(errors),
            "builds": {"where": "split", "parts": len(parts), "built": sum((p["builds"] or {}).get("built", 0) for p in done),
                       "part_seconds": [round(p["seconds"], 3) for p in done],
                       "processes": sorted({p["pid"] for p in done}),
                       **({"lost": [e for e in errors if e]} if any(errors) else {})}}


__all__ = ["absorb", "merge", "snapshot", "split_budgets", "task_payload", "tune_part"]
