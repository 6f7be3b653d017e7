"""Atomic file writes (one of each): a temp file in the target's directory, fsync, rename.
A reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=p.name, dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """``data`` as indented JSON (values JSON lacks written as ``str``), then a newline."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def creatable(path: str | os.PathLike) -> tuple[bool, Path]:
    """Can ``path`` be created (or written, if it exists)? Returns (ok, the nearest existing
    ancestor that decided it): that ancestor must be a writable, searchable directory."""
    probe = Path(path).absolute()
    while not probe.exists():
        if probe.parent == probe:
            return False, probe
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK), probe
