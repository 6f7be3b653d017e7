"""Parsing helpers shared by the CLI verbs (one of each)."""

from __future__ import annotations

import re

from cosearch.errors import CosearchError


def positive_int(name: str, text: str | int | None, *, minimum: int = 1) -> int:
    """``text`` as an integer >= ``minimum`` or a one-line ``CosearchError`` naming ``name``."""
    try:
        v = int(str(text))
    except ValueError:
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
    if v < minimum:
        raise CosearchError(f"{name} must be an integer >= {minimum}, got {v}")
    return v


def nonneg_float(name: str, text: str | float | None) -> float:
    try:
        v = float(str(text))
    except ValueError:
        raise CosearchError(f"{name} must be a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise CosearchError(f"{name} must be a finite number >= 0, got {text!r}")
    return v


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration_s(name: str, text: str | None) -> float:
    """'90', '90s', '30m', '1.5h' -> seconds (> 0), or a one-line error."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h)?\s*", str(text or ""))
    if not m:
        raise CosearchError(f"{name} must be a duration such as 90s, 30m or 1.5h, got {text!r}")
    v = float(m.group(1)) * _UNITS[m.group(2) or ""]
    if v <= 0:
        raise CosearchError(f"{name} must be a positive duration, got {text!r}")
    return v


def space_settings(items: list[str]) -> dict:
    """``--space-opt K=V`` items -> {K: int(V)}, or a one-line error."""
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise CosearchError(f"--space-opt must be KEY=VALUE, got {it!r}")
        try:
            out[k] = int(v)
        except ValueError:
            raise CosearchError(f"--space-opt {it!r}: value must be an integer") from None
    return out


def add_schedule_options(p, *, default: str) -> None:
    """``--schedules DIR`` and ``--accept-foreign-schedules``, alike in every verb that compiles."""
    p.add_argument("--schedules", default=None, metavar="DIR", help=f"schedule database (default: {default})")
    p.add_argument("--accept-foreign-schedules", action="store_true",
                   help="use a --schedules database tuned for another resolved target (CPU) with a warning")
