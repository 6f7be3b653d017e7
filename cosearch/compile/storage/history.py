"""Per-task tuning history, kept beside a schedule database: ``<db>/tasks.jsonl``.

Append-only JSON lines (one event per line, ``"v": 1``), written under the
database's exclusive lock with ``fsync``; a torn last line (a writer killed
mid-write) is skipped by the reader. Events:

``{"v":1, "event":"task", "workload":W, "name":..., "op":..., "shapes":[[...],...],
"flops":F, "weight":N, "target":KEY, "t":UNIX}``
    features of a workload, written the first time a run tunes it;
``{"v":1, "event":"batch", "workload":W, "run":RUN, "trials":n, "errors":e,
"batch_best_us":b|null, "best_us":B|null, "prior_trials":P, "t":UNIX}``
    one measured batch: ``trials``/``errors`` of the batch, ``batch_best_us`` its
    best candidate, ``best_us`` the workload's best after it (database best
    included), ``prior_trials`` the workload's trials before this batch;
``{"v":1, "event":"stop", "workload":W, "run":RUN, "rule":{...}, "before_first_batch":bool,
"trials":n, "best_us":B|null, "t":UNIX}``
    an early-stop decision (``rule`` ``{"kind": "deadline"}``: the tuning call's clock ran out);
``{"v":1, "event":"confirm", "workload":W, "run":RUN, "record_us":B, "us":U, "samples":[...], "t":UNIX}``
    the workload's best record (``record_us``: its tuning-time mean, as ``best_us`` reports it)
    timed again on its own, many repeats: ``us`` is their median. A tuning-time best is the
    minimum over many noisy measurements and so biased low; the confirmed value is not.

``W`` is the workload key of the database (anchor-block structural hash, hex):
the same in every model that contains the kernel. ``RUN`` identifies one tuning
call (random hex). Summaries (trials spent per workload, best after each batch)
are derived by replaying the file; nothing else is stored.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from cosearch import jsonl

HISTORY_FILE = "tasks.jsonl"
VERSION = 1


class HistoryWarning(UserWarning):
    """A line of a task history file was skipped."""


def num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def event(kind: str, workload: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "event": kind, "workload": workload, **fields, "t": round(time.time(), 3)}


def append(database_dir: Path | str, events: Iterable[dict[str, Any]]) -> None:
    """Append events under the database's exclusive lock, fsynced."""
    from cosearch.compile.storage.database import locked, prepare_dir

    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    if not lines:
        return
    d = prepare_dir(database_dir)
    with locked(d, exclusive=True):
        jsonl.append_lines(d / HISTORY_FILE, lines)


def read(database_dir: Path | str) -> Iterator[dict[str, Any]]:
    """Every valid event, in file order (torn / corrupt lines skipped with a warning)."""
    path = Path(database_dir) / HISTORY_FILE
    lines = jsonl.read(path)
    for n in lines.damaged:
        warnings.warn(f"{path}:{n}: skipped corrupt line (not a JSON object)", HistoryWarning, stacklevel=2)
    if lines.torn_tail:
        warnings.warn(f"{path}: skipped incomplete last line (torn write)", HistoryWarning, stacklevel=2)
    for obj in lines:
        if isinstance(obj.get("event"), str) and isinstance(obj.get("workload"), str):
            yield obj
        else:
            warnings.warn(f"{path}: skipped a line without 'event' and 'workload'", HistoryWarning, stacklevel=2)


@dataclass
class WorkloadHistory:
    workload: str
    features: dict[str, Any] = field(default_factory=dict)  # the "task" event (minus bookkeeping)
    trials: int = 0
    errors: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)  # "batch" events in order
    stops: int = 0
    confirmed: dict[float, float] = field(default_factory=dict)  # record_us -> confirmed µs (latest)

    @property
    def best_us(self) -> float | None:
        vals = [b["best_us"] for b in self.batches if b.get("best_us") is not None]
        return min(vals) if vals else None

    def curve(self) -> list[tuple[int, float]]:
        """(cumulative trials, best µs) after each batch with a finite best."""
        out, total, best = [], 0, math.inf
        for b in self.batches:
            total += int(b.get("trials", 0))
            if b.get("best_us") is not None:
                best = min(best, float(b["best_us"]))
            if math.isfinite(best):
                out.append((total, best))
        return out


def summarize(database_dir: Path | str) -> dict[str, WorkloadHistory]:
    """Per-workload summary replayed from the history file."""
    out: dict[str, WorkloadHistory] = {}
    for e in read(database_dir):
        h = out.setdefault(e["workload"], WorkloadHistory(e["workload"]))
        kind = e["event"]
        if kind == "task":
            h.features = {k: v for k, v in e.items() if k not in ("v", "event", "workload", "t")}
        elif kind == "batch":
            h.trials += int(e.get("trials", 0) or 0)
            h.errors += int(e.get("errors", 0) or 0)
            h.batches.append(e)
        elif kind == "stop":
            h.stops += 1
        elif kind == "confirm" and e.get("record_us") is not None and e.get("us") is not None:
            h.confirmed[float(e["record_us"])] = float(e["us"])
    return out
