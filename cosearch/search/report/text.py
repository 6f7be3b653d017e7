"""How the reports write numbers, durations and architectures as text (HTML-escaped where said).

Shared by the plots (titles, labels) and the pages. A value that is not a finite
number is written ``—``.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from cosearch.search.report.data import num


def esc(v: Any) -> str:
    """``v`` as HTML text (quotes escaped too)."""
    return html.escape(str(v), quote=True)


def arch_text(arch: Any) -> str:
    """An architecture as one line: a string as is, anything else as compact sorted JSON."""
    if isinstance(arch, str):
        return arch
    if arch is None:
        return "—"
    try:
        return json.dumps(arch, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return str(arch)


def fnum(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; thousands and above as ``12,345``."""
    x = num(v)
    if not math.isfinite(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def pct(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{100 * v:.1f} %"


def dur(s: Any) -> str:
    """Seconds as ``12.3 s``, ``4.5 min`` or ``1.25 h``."""
    x = num(s)
    if not math.isfinite(x):
        return "—"
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"


def short(v: Any, n: int = 160) -> str:
    """``v`` (a dict or list as JSON) on one line, cut to ``n`` characters with ``…``."""
    if isinstance(v, (dict, list)):
        try:
            v = json.dumps(v, separators=(", ", ": "), sort_keys=True)
        except (TypeError, ValueError):
            v = str(v)
    s = " ".join(str(v).split())
    return s if len(s) <= n else s[: n - 1] + "…"
