"""MetaSchedule's logging, owned here.

MetaSchedule's per-task loggers are created here (never through ``create_loggers``,
which crashes under pytest 9.2's logging plugin: it reads ``handler.get_name()`` of
handlers pytest leaves unnamed): everything goes to ``<log_dir>/tune.log`` (or nowhere),
and TVM's C++ warnings printed on fd 2 during tuning are redirected into the same file
(``quiet_native_logs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

LOGGER_NAME = "cosearch.tvm"


def task_loggers(names: Sequence[str], log_file: Path | None) -> list[logging.Logger]:
    """One logger per task under ``cosearch.tvm`` (file handler or silent), and
    MetaSchedule's own module loggers routed the same way."""
    root = logging.getLogger(LOGGER_NAME)
    root.propagate = False
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(fh)
    else:
        root.addHandler(logging.NullHandler())
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_logger.propagate = False
    for h in list(ms_logger.handlers):
        ms_logger.removeHandler(h)
    for h in root.handlers:
        ms_logger.addHandler(h)
    ms_logger.setLevel(logging.INFO if log_file is not None else logging.WARNING)
    out = []
    for i, n in enumerate(names):
        lg = logging.getLogger(f"{LOGGER_NAME}.task_{i:03d}_{n[:80]}")
        lg.setLevel(logging.INFO)
        out.append(lg)
    return out


@contextlib.contextmanager
def quiet_native_logs(log_file: Path | None) -> Iterator[Any]:
    """Send what TVM's C++ side prints on fd 2 to ``log_file`` (or /dev/null) for the
    duration; yields a text stream on the original stderr for progress output."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured stderr without a file descriptor
        yield sys.stderr
        return
    import warnings

    sys.stderr.flush()
    saved = os.dup(fd)
    target = os.open(str(log_file) if log_file is not None else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    old_showwarning = warnings.showwarning
    try:
        os.dup2(target, fd)
        logging.captureWarnings(False)
        yield console
    finally:
        warnings.showwarning = old_showwarning
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(target)
        console.close()
