"""The search journal: ``DIR/journal.jsonl``, append-only JSON lines, fsynced per event.

Format (version 1, documented in ``docs/search.md`` and the search contract): every
line is one JSON object ``{"v": 1, "event": E, "t": seconds since the run started,
...}``; ``t`` is monotonic across resumes (a resumed run continues from the last
``t`` written). The journal is the single source of truth of a run: ``--resume``
replays it to rebuild the archive, the front and the proposer.

A process killed mid-write leaves at most one torn last line. ``read_journal``
skips a line that does not parse *only* when it is the last one (anything else is
a damaged file: ``CosearchError``); ``Journal.open`` truncates such a torn tail
before appending, so a resumed journal stays valid JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from cosearch import jsonl
from cosearch.errors import CosearchError

VERSION = 1
FILE = "journal.jsonl"


def read_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All events of a journal file; a torn (unparsable) *last* line is ignored, a damaged
    line anywhere else is a ``CosearchError`` (``jsonl.read(strict=True)``)."""
    events = jsonl.read(path, strict=True).records
    for i, ev in enumerate(events):
        if "event" not in ev:
            raise CosearchError(f"journal {str(path)!r}: entry {i + 1} is not an event (no 'event' field)")
    return events


def _valid_prefix_length(raw: bytes) -> int:
    """Byte length of the part of ``raw`` made of complete, parsable lines."""
    end = 0
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        if nl < 0:
            break  # no newline: torn
        line = raw[pos:nl]
        if line.strip():
            try:
                json.loads(line)
            except (ValueError, UnicodeDecodeError):
                break
        end = pos = nl + 1
    return end


class Journal:
    """Appends events to ``DIR/journal.jsonl`` (``jsonl.append``: one ``write`` + ``fsync`` per event).

    ``t0_offset`` is the last ``t`` of an earlier session (resume), so ``t`` keeps
    growing; ``extra_time`` is a callable adding simulated seconds (the
    ``FakeEvaluator``'s simulated compiler time), ``None`` for real runs; ``wall=False``
    leaves the wall clock out (``ReplayEvaluator``: time is the recorded costs alone).
    """

    def __init__(self, run_dir: str | os.PathLike, *, t0_offset: float = 0.0, extra_time=None,
                 wall: bool = True) -> None:
        self.path = Path(run_dir) / FILE
        raw = self.path.read_bytes() if self.path.exists() else b""
        keep = _valid_prefix_length(raw)
        if keep != len(raw):  # drop a torn tail before appending
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        self.closed = False
        self._start = time.monotonic()
        self._offset = float(t0_offset)
        self._extra = extra_time
        self._wall = bool(wall)

    def now(self) -> float:
        """Seconds since the run started (monotonic across resumes)."""
        extra = float(self._extra()) if self._extra is not None else 0.0
        wall = time.monotonic() - self._start if self._wall else 0.0
        return self._offset + wall + extra

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        if self.closed:
            raise ValueError(f"journal {str(self.path)!r} is closed")
        ev = {"v": VERSION, "event": event, "t": round(self.now(), 4), **fields}
        jsonl.append(self.path, [ev])
        return ev

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_events(events: list[dict[str, Any]], *kinds: str) -> Iterator[dict[str, Any]]:
    for ev in events:
        if not kinds or ev.get("event") in kinds:
            yield ev
