"""Append-only JSON-lines files (one of each): the writer, the lock, the reader.

Every growing file of cosearch is JSON lines appended by this module: the schedule
database's two files and its per-task history, the latency and predictor samples, the
learning curves, the search journal, the benchmark's event logs and the fake
evaluator's trial log. One set of rules holds for all of them:

- **Write**: the new lines go out in one ``write`` and are ``fsync``ed before the call
  returns. A writer killed mid-write leaves at most one *torn* (unterminated) last line;
  the next writer ends it with a newline first (``append_lines``), so its own lines
  stay readable. Files that several processes append to take ``locked(lock_path)``
  (an exclusive ``fcntl.flock`` on a lock file) around the append.
- **Read** (``read``): every line that parses as a JSON object, in file order. A line
  that does not parse is the remains of a killed writer and is skipped; the skipped
  line numbers are returned (``Lines.damaged``) for the caller to report. ``strict=True``
  (the search journal, whose damage must not pass silently) raises ``CosearchError``
  for a damaged line anywhere but last.
- Non-finite floats are written as ``null`` (JSON has no NaN or infinity).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from cosearch.errors import CosearchError


def clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``; tuples become lists; keys become str."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def dumps(obj: Any, *, compact: bool = False, sort_keys: bool = False) -> str:
    """One JSON line (no newline) of ``obj``, non-finite floats as ``null``."""
    seps = (",", ":") if compact else (", ", ": ")
    return json.dumps(clean(obj), separators=seps, sort_keys=sort_keys, allow_nan=False)


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike, *, exclusive: bool = True) -> Iterator[None]:
    """Hold an ``fcntl.flock`` on ``lock_path`` (created if missing) for the block."""
    import fcntl

    fd = os.open(os.fspath(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Append text lines in one write, fsynced; a torn last line is ended first."""
    data = "".join(line + "\n" for line in lines)
    if not data:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.lseek(fd, size - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                data = "\n" + data
        os.write(fd, data.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def append(path: str | os.PathLike, records: Iterable[dict[str, Any]], *, compact: bool = False,
           sort_keys: bool = False, lock: str | os.PathLike | None = None) -> None:
    """Append ``records`` as JSON lines (see the module's rules); under ``locked(lock)`` if given."""
    lines = [dumps(r, compact=compact, sort_keys=sort_keys) for r in records]
    if not lines:
        return
    if lock is None:
        append_lines(path, lines)
        return
    with locked(lock):
        append_lines(path, lines)


@dataclass
class Lines:
    """What ``read`` found: the records, and the 1-based numbers of lines it skipped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[int] = field(default_factory=list)
    torn_tail: bool = False  # the last line was torn (a writer killed mid-write)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def read(path: str | os.PathLike, *, strict: bool = False) -> Lines:
    """Every JSON-object line of ``path`` (a missing file reads as empty); see the module's rules."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return Lines()
    except OSError as e:
        raise CosearchError(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    lines = raw.decode("utf-8", errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    out = Lines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            ok = isinstance(rec, dict)
        except ValueError:
            ok = False
        if ok:
            out.records.append(rec)
            continue
        if i == last:
            out.torn_tail = True
            continue
        if strict:
            raise CosearchError(f"{str(p)!r} line {i + 1} is damaged (not a JSON object)")
        out.damaged.append(i + 1)
    return out
