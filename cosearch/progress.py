"""Progress display for long commands (``cosearch tune``, ``cosearch search``).

    with ProgressDisplay("search", total=1800, unit="s") as progress:
        progress.update(done=elapsed, proposed=12, evaluated=10, stopped=2, hv=0.61)
        progress.log("arch 12 failed to compile: ...")

On a terminal (``stream.isatty()``) a live ``rich`` display: title, a bar when
``total`` is known, ``done/total unit``, the labelled fields and the elapsed
time, redrawn in place; ``log`` prints above it. Otherwise (a pipe, a log file,
CI) plain lines ``[  12.3s] title: 10/40 proposed=12 ...`` are written at most
every ``plain_every_s`` seconds (the first update at once) and once more at
exit, and ``log`` lines are written at once. ``rich`` is only imported on a
terminal. Field values are shown as given (numbers compactly); odd values never
raise, and a closed or broken stream is ignored: the display must never end a run.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["ProgressDisplay"]

_now = time.monotonic  # module-level so tests can substitute a clock
_MAX_VALUE_CHARS = 40


def _fmt(value: Any) -> str:
    """A short text for a field value; never raises."""
    try:
        if isinstance(value, bool) or value is None:
            text = str(value)
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                text = str(value)
            elif value.is_integer() and abs(value) < 1e12:
                text = str(int(value))
            elif abs(value) >= 1e4:
                text = f"{value:.0f}"
            else:
                text = f"{value:.4g}"
        else:
            text = str(value)
    except Exception:
        try:
            text = repr(value)
        except Exception:
            text = "?"
    text = " ".join(text.split())  # one line
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 1] + "…"
    return text


def _fmt_amount(value: float) -> str:
    """``done``/``total``: whole numbers as such, others with one decimal (seconds of a budget)."""
    if float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


class ProgressDisplay:
    """Live progress on a terminal, rate-limited plain lines elsewhere (see module doc)."""

    def __init__(
        self,
        title: str,
        *,
        total: float | None = None,
        unit: str = "",
        stream: TextIO | None = None,
        plain_every_s: float = 10.0,
    ) -> None:
        self.title = str(title)
        t = _as_number(total)
        self.total = t if t is not None and t > 0 else None
        self.unit = str(unit or "")
        self.stream = stream if stream is not None else sys.stderr
        self.plain_every_s = max(0.0, float(plain_every_s))
        self.done: float | None = None
        self.fields: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._start = _now()
        self._last_plain: float | None = None  # time of the last plain status line
        self._progress = None  # rich.progress.Progress while live
        self._task = None
        self._closed = False
        try:
            self._tty = bool(self.stream.isatty())
        except Exception:
            self._tty = False

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "ProgressDisplay":
        self._start = _now()
        if self._tty:
            try:
                self._start_rich()
            except Exception:  # rich missing or unusable: plain lines instead
                self._progress = None
                self._tty = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            suffix = "done"
        elif issubclass(exc_type, KeyboardInterrupt):
            suffix = "interrupted"
        else:
            suffix = f"stopped by {exc_type.__name__}"
        self.close(suffix)

    def close(self, suffix: str = "done") -> None:
        """Stop the live display (leaving its last state on screen) or write the final plain line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._progress is not None:
                try:
                    self._refresh_rich()
                    self._progress.stop()
                except Exception:
                    pass
                self._progress = None
            else:
                self._write(f"{self._status()} ({suffix})")

    # ------------------------------------------------------------------ API
    def update(self, done: float | None = None, **fields: Any) -> None:
        """Set the amount done (``None`` keeps the last one) and/or labelled fields
        (kept until changed)."""
        with self._lock:
            d = _as_number(done)
            if d is not None:
                self.done = d
            self.fields.update(fields)
            if self._closed:
                return
            if self._progress is not None:
                try:
                    self._refresh_rich()
                except Exception:
                    pass
                return
            now = _now()
            if self._last_plain is None or now - self._last_plain >= self.plain_every_s:
                self._last_plain = now
                self._write(self._status())

    def log(self, msg: str) -> None:
        """A line above the live display (or a plain line at once)."""
        with self._lock:
            line = f"{self._stamp()} {msg}"
            if self._progress is not None:
                try:
                    from rich.text import Text

                    self._progress.console.print(Text(line))
                    return
                except Exception:
                    pass
            self._write(line)

    # ------------------------------------------------------------------ text
    def _stamp(self) -> str:
        return f"[{_now() - self._start:6.1f}s]"

    def _count(self) -> str:
        if self.done is None and self.total is None:
            return ""
        done = _fmt_amount(self.done if self.done is not None else 0.0)
        text = done if self.total is None else f"{done}/{_fmt_amount(self.total)}"
        return f"{text} {self.unit}" if self.unit else text

    def _fields_text(self) -> str:
        parts = []
        for k, v in list(self.fields.items()):
            parts.append(f"{k}={_fmt(v)}")
        return " ".join(parts)

    def _status(self) -> str:
        body = " ".join(p for p in (self._count(), self._fields_text()) if p)
        return f"{self._stamp()} {self.title}: {body}".rstrip()

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:  # a closed/broken stream must not end the run
            pass

    # ------------------------------------------------------------------ rich
    def _start_rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream)
        columns: list[Any] = [TextColumn("[bold cyan]{task.description}")]
        if self.total is not None:
            columns.append(BarColumn(bar_width=30))
        columns += [
            TextColumn("{task.fields[count]}", markup=False),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
        ]
        progress = Progress(*columns, console=console, refresh_per_second=4)
        self._task = progress.add_task(self.title, total=self.total, count="", info="")
        progress.start()
        self._progress = progress

    def _refresh_rich(self) -> None:
        self._progress.update(
            self._task,
            completed=self.done if self.done is not None else 0,
            count=self._count(),
            info=self._fields_text(),
        )
