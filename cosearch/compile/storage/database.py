"""The per-target schedule database: MetaSchedule's own JSON files, shared safely.

On disk (``schedules/<target>/`` by default) a database is exactly what
MetaSchedule's ``JSONDatabase`` writes, so any TVM user can apply it::

    database_workload.json        one line per workload:  ["<shash>", "<base64 IRModule JSON>"]
    database_tuning_record.json   one line per record:    [<workload line index>, [trace, run_secs, target, args_info]]

(the workload index counts non-empty lines of the workload file, from 0).

Reading (``open_database``): our own tolerant reader parses both files line by
line; a torn or garbage line is skipped with a ``DatabaseWarning`` naming the
file and line number, and so is a record pointing to a missing workload. Records
of failed runs are dropped. Valid records are loaded into an in-memory
MetaSchedule database with ``module_equality="anchor-block"`` (TVM-NOTES: it
reuses 18/23 tasks across architectures where "structural" reused 8/23). Only
workloads that have at least one valid record are loaded, so ``has_workload``
means "a usable schedule exists". By default only records that improve on the
best loaded one are parsed (MetaSchedule replays a trace to parse it, ~10 ms
each), and within a process the loaded database is cached and refreshed with
just the lines appended since (the files are append-only).

Writing (``merge_records``): tuning happens in a private scratch database; new
records are then appended to the shared files under an exclusive ``fcntl.flock``
on ``<dir>/.lock``: re-read the workload file, append the workloads it does not
hold yet, re-map the records' workload indices to line numbers of the shared
file, append, ``fsync``. Readers take a shared lock. Files are append-only, so
two processes tuning into the same directory at once both keep all their records,
and a crash can at worst leave a torn last line (skipped by the reader; a
newline is added before the next append).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cosearch import jsonl
from cosearch.errors import CosearchError, first_line

if TYPE_CHECKING:
    from tvm.s_tir import meta_schedule as ms

MODULE_EQUALITY = "anchor-block"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
LOCK_FILE = ".lock"
FAILED_RUN_SECS = 1e9  # MetaSchedule stores failed candidates with run_secs = [1e10]


class DatabaseWarning(UserWarning):
    """A line of a schedule database file was skipped."""


def locked(database_dir: Path, exclusive: bool):
    """The database's lock (``.lock`` in it): exclusive for writers, shared for readers."""
    return jsonl.locked(Path(database_dir) / LOCK_FILE, exclusive=exclusive)


def prepare_dir(database_dir: Path | str) -> Path:
    d = Path(database_dir)
    if d.exists() and not d.is_dir():
        raise CosearchError(f"schedule database path {str(d)!r} is a file; expected a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CosearchError(f"cannot create schedule database directory {str(d)!r}: {e}") from e
    return d


def valid_secs(run_secs: Any) -> list[float] | None:
    try:
        secs = [float(s) for s in run_secs]
    except (TypeError, ValueError):
        return None
    if not secs or max(secs) >= FAILED_RUN_SECS or min(secs) <= 0:
        return None
    return secs


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based physical line number, text) of every non-empty line (used by the writer)."""
    if not path.exists():
        return []
    data = path.read_bytes().decode("utf-8", errors="replace")
    return [(n, line) for n, line in enumerate(data.split("\n"), start=1) if line.strip()]


class _Tail:
    """Reads the complete lines appended to one file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # bytes consumed (always just after a newline)
        self.line_no = 0  # physical lines consumed
        self.warned_partial_at = -1

    def new_lines(self) -> list[tuple[int, str]] | None:
        """Complete new lines as (line number, text), or ``None`` if the file shrank."""
        if not self.path.exists():
            return None if self.offset else []
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < self.offset:
                return None
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # only complete lines; a torn tail waits for its newline
        out = []
        for raw in data[:end].split(b"\n")[:-1] if end else []:
            self.line_no += 1
            out.append((self.line_no, raw.decode("utf-8", errors="replace")))
        self.offset += end
        if data[end:].strip() and self.warned_partial_at != self.offset:
            self.warned_partial_at = self.offset
            warnings.warn(
                f"{self.path}:{self.line_no + 1}: skipped incomplete last line (torn write)", DatabaseWarning, stacklevel=4
            )
        return out


class _Loader:
    """An in-memory MetaSchedule database kept in step with one database folder.

    The files are append-only, so each ``refresh`` parses only the lines added
    since the previous one (a joint search opens the same database once per
    architecture; re-parsing every IRModule each time cost 12 s for 800 records).
    If a file shrank (replaced by hand), everything is re-read."""

    def __init__(self, d: Path, best_only: bool) -> None:
        from tvm.s_tir import meta_schedule as ms

        self.dir = d
        self.best_only = best_only
        self.best_mean: dict[int, float] = {}  # workload index -> mean run secs of the best record loaded
        self.db = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
        self.wtail, self.rtail = _Tail(d / WORKLOAD_FILE), _Tail(d / RECORD_FILE)
        self.workloads: list[Any] = []  # JSON object per workload index, None for bad lines
        self.parsed: dict[int, Any] = {}  # index -> canonical Workload in self.db (None: unparsable)

    def refresh(self) -> bool:
        """Read what was appended. False if the files shrank (caller starts over)."""
        with locked(self.dir, exclusive=False):
            wlines, rlines = self.wtail.new_lines(), self.rtail.new_lines()
        if wlines is None or rlines is None:
            return False
        wpath, rpath = self.wtail.path, self.rtail.path
        for n, line in wlines:
            if not line.strip():
                continue  # blank lines take no index (as in MetaSchedule's reader)
            try:
                obj = json.loads(line)
                if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(x, str) for x in obj)):
                    raise ValueError("expected [shash, base64 module]")
            except ValueError as e:
                warnings.warn(f"{wpath}:{n}: skipped corrupt workload line ({e})", DatabaseWarning, stacklevel=3)
                obj = None
            self.workloads.append(obj)
        for n, line in rlines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and isinstance(obj[1], list)):
                    raise ValueError("expected [workload index, record]")
                if not 0 <= obj[0] < len(self.workloads) or self.workloads[obj[0]] is None:
                    raise ValueError(f"workload index {obj[0]} refers to no valid line of {WORKLOAD_FILE}")
            except ValueError as e:
                warnings.warn(f"{rpath}:{n}: skipped corrupt tuning-record line ({e})", DatabaseWarning, stacklevel=3)
                continue
            self._add(n, obj[0], obj[1])
        return True

    def _add(self, n: int, idx: int, rec_json: list) -> None:
        from tvm.s_tir import meta_schedule as ms

        secs = valid_secs(rec_json[1] if len(rec_json) > 1 else None)
        if secs is None:
            return  # failed run: not a usable schedule
        mean = sum(secs) / len(secs)
        if self.best_only and mean >= self.best_mean.get(idx, float("inf")):
            return  # not better than what is loaded: skip parsing (replaying a trace costs ~10 ms)
        where = f"{self.rtail.path}:{n}"
        try:
            if idx not in self.parsed:
                where = f"{self.wtail.path} (workload line index {idx})"
                self.parsed[idx] = None
                wl = ms.database.Workload.from_json(self.workloads[idx])
                self.parsed[idx] = wl
                where = f"{self.rtail.path}:{n}"
            wl = self.parsed[idx]
            if wl is None:
                return
            rec = ms.database.TuningRecord.from_json(rec_json, wl)
        except Exception as e:  # TVM parse errors: base64 / IR JSON / trace
            warnings.warn(f"{where}: skipped unparsable entry ({first_line(e, 200)})", DatabaseWarning, stacklevel=4)
            return
        if not isinstance(self.parsed.get(("canon", idx)), ms.database.Workload):
            self.parsed[("canon", idx)] = self.db.commit_workload(wl.mod)  # hash each workload once
        canon = self.parsed[("canon", idx)]
        self.best_mean[idx] = min(mean, self.best_mean.get(idx, float("inf")))
        self.db.commit_tuning_record(ms.database.TuningRecord(rec.trace, canon, rec.run_secs, rec.target, rec.args_info))


@functools.lru_cache(maxsize=64)
def _loader(resolved_dir: str, best_only: bool) -> _Loader:
    return _Loader(Path(resolved_dir), best_only)


def open_database(database_dir: Path | str, *, best_only: bool = True) -> "ms.database.Database":
    """The database in ``database_dir`` (created if missing) as an in-memory MetaSchedule
    database (anchor-block equality), up to date with the files.

    ``best_only`` (default): load only records that beat the best one already loaded
    for their workload -- enough for ``has_workload``, best latency and compilation,
    and much faster (MetaSchedule replays each trace while parsing it: ~10 ms per
    record). ``best_only=False`` loads every valid record.

    Within one process the same object is returned and refreshed incrementally (only
    appended lines are parsed): treat it as read-only, persist with ``merge_records``."""
    d = prepare_dir(database_dir)
    key = str(d.resolve())
    loader = _loader(key, best_only)
    if not loader.refresh():
        _loader.cache_clear()
        loader = _loader(key, best_only)
        loader.refresh()
    return loader.db


def add_records(database: "ms.database.Database", records: Iterable["ms.database.TuningRecord"]) -> None:
    """Commit records (with their workloads) into an in-memory ``database``."""
    from tvm.s_tir import meta_schedule as ms

    for rec in records:
        canon = database.commit_workload(rec.workload.mod)
        database.commit_tuning_record(ms.database.TuningRecord(rec.trace, canon, rec.run_secs, rec.target, rec.args_info))


def best_us(database: "ms.database.Database", mod) -> float | None:
    """Mean latency (µs) of the best record for ``mod``'s workload, or ``None``."""
    if not database.has_workload(mod):
        return None
    top = database.get_top_k(database.commit_workload(mod), 1)
    if not top:
        return None
    secs = valid_secs(top[0].run_secs)
    return None if secs is None else 1e6 * sum(secs) / len(secs)


def best_records(database: "ms.database.Database", keep: int | None) -> list["ms.database.TuningRecord"]:
    """The ``keep`` fastest valid records of every workload in ``database`` (all if ``None``).
    Only the best schedule is ever applied; a few more keep the file useful as a
    warm start without letting it grow by every measured candidate."""
    valid = [r for r in database.get_all_tuning_records() if valid_secs(r.run_secs) is not None]
    if keep is None:
        return valid
    by_workload: dict[int, list] = {}
    for r in valid:
        by_workload.setdefault(r.workload.__chandle__(), []).append(r)
    out = []
    for recs in by_workload.values():
        recs.sort(key=lambda r: sum(valid_secs(r.run_secs)) / len(r.run_secs))
        out.extend(recs[:keep])
    return out


def merge_records(database_dir: Path | str, records: Iterable["ms.database.TuningRecord"]) -> int:
    """Append the valid ``records`` to the shared files under an exclusive lock.
    Returns the number of records written."""
    pending: list[tuple[tuple[str, str], Any]] = []
    keys: dict[int, tuple[str, str]] = {}  # by C handle: records share Workload objects
    alive = []  # keep the objects alive so handles are not reused while we key by them
    for rec in records:
        if valid_secs(rec.run_secs) is None:
            continue
        wl = rec.workload
        alive.append(wl)
        k = wl.__chandle__()
        if k not in keys:
            keys[k] = tuple(wl.as_json())  # type: ignore[assignment]
        pending.append((keys[k], rec.as_json()))
    return append_pairs(database_dir, pending)


def append_pairs(database_dir: Path | str, pairs: Iterable[tuple[Any, Any]]) -> int:
    """Append records given as plain data, ``(workload line [shash, module], record [trace,
    run_secs, target, args_info])`` -- what ``record_pairs`` / ``pairs_since`` return, and what
    crosses processes -- under the exclusive lock: the workloads the file lacks are appended and
    the records' indices mapped to the file's lines. Returns the number of records written."""
    d = prepare_dir(database_dir)
    pending = [(tuple(k), rec) for k, rec in pairs]
    if not pending:
        return 0
    with locked(d, exclusive=True):
        index: dict[tuple[str, str], int] = {}
        lines = _read_lines(d / WORKLOAD_FILE)
        for i, (_, line) in enumerate(lines):
            try:
                obj = json.loads(line)
                index.setdefault((obj[0], obj[1]), i)
            except (ValueError, TypeError, IndexError, KeyError):
                pass  # counted for indexing, never matched
        next_idx = len(lines)
        new_workloads: list[str] = []
        rec_lines: list[str] = []
        for key, rec_json in pending:
            if key not in index:
                index[key] = next_idx
                next_idx += 1
                new_workloads.append(json.dumps(list(key)))
            rec_lines.append(json.dumps([index[key], rec_json]))
        # A torn last workload line gets a newline in jsonl.append_lines and keeps its index slot,
        # exactly as counted above.
        jsonl.append_lines(d / WORKLOAD_FILE, new_workloads)
        jsonl.append_lines(d / RECORD_FILE, rec_lines)
    return len(rec_lines)


def record_pairs(database: "ms.database.Database", mods: Iterable[Any], keep: int | None) -> list[tuple[Any, Any]]:
    """The ``keep`` best records (all if ``None``) of each of ``mods``' workloads in ``database``,
    as plain data for ``append_pairs`` (a snapshot a worker tunes from)."""
    out = []
    for mod in mods:
        if not database.has_workload(mod):
            continue
        for rec in database.get_top_k(database.commit_workload(mod), keep if keep is not None else 1 << 30):
            if valid_secs(rec.run_secs) is not None:
                out.append((list(rec.workload.as_json()), rec.as_json()))
    return out


def record_count(database_dir: Path | str) -> int:
    """Record lines in the database (``pairs_since``'s start)."""
    return len(_read_lines(Path(database_dir) / RECORD_FILE))


def pairs_since(database_dir: Path | str, start: int) -> list[tuple[Any, Any]]:
    """The records after the first ``start`` record lines, as ``append_pairs`` takes them (torn or
    dangling lines skipped)."""
    d = Path(database_dir)
    with locked(d, exclusive=False):
        workloads = [line for _, line in _read_lines(d / WORKLOAD_FILE)]
        records = [line for _, line in _read_lines(d / RECORD_FILE)][start:]
    out = []
    for line in records:
        try:
            idx, rec = json.loads(line)
            out.append((json.loads(workloads[idx]), rec))
        except (ValueError, TypeError, IndexError):
            continue
    return out
