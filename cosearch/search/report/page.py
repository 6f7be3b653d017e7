"""The reports' HTML building blocks: a self-contained page (inline CSS, PNGs embedded as
base64, no scripts, nothing fetched), tables, cards, figures, and the atomic writes."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import Any

from cosearch.fsio import atomic_write_bytes
from cosearch.search.pareto import Objectives
from cosearch.search.report.data import num
from cosearch.search.report.text import esc, fnum, short

CSS = """
body{
  font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;
  color:#1d2430}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6em;margin:0 0 4px}
h2{font-size:1.2em;margin:32px 0 10px;border-bottom:2px solid #e1e4e8;padding-bottom:4px}
.sub{color:#5a6472;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{
  background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);
  min-width:110px}
.card .v{font-size:1.4em;font-weight:600}
.card .l{color:#5a6472;font-size:.8em;text-transform:uppercase;letter-spacing:.04em}
table{
  border-collapse:collapse;background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.08);border-radius:6px;
  overflow:hidden;font-size:.9em;margin:6px 0}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#eef1f5;padding:1px 5px;border-radius:4px;font-size:.88em;word-break:break-all}
.plots{display:flex;flex-wrap:wrap;gap:14px}
figure{background:#fff;margin:0;padding:8px;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
figure img{display:block;max-width:100%}
figcaption{color:#5a6472;font-size:.8em;padding:4px 2px 0;max-width:760px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;margin:6px 0;border-radius:4px}
.empty{
  background:#fdecea;border-left:4px solid #d62728;padding:12px 14px;margin:12px 0;border-radius:4px;
  font-weight:600}
.muted{color:#5a6472}
"""


def write_page(path: Path, title: str, body: list[str]) -> Path:
    """Write the page atomically; return its path."""
    text = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def write_png(path: Path, data: bytes | None) -> None:
    """Write a plot atomically, or remove a stale one when there is nothing to plot."""
    if data is not None:
        atomic_write_bytes(path, data)
    elif path.exists():
        path.unlink()


def table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escape before)."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"n\">{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def cards(items: list[tuple[str, str]]) -> str:
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><div class=\"v\">{esc(v)}</div><div class=\"l\">{esc(l)}</div></div>" for l, v in items
    ) + "</div>"


def figure(data: bytes, caption: str, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return (f"<figure><img alt=\"{esc(alt)}\" src=\"data:image/png;base64,{b64}\">"
            f"<figcaption>{caption}</figcaption></figure>")


def notes(items: list[str]) -> str:
    return "<h2>Notes</h2>" + "".join(f"<div class=\"note\">{esc(n)}</div>" for n in items)


def run_cmd(base: Path, artifact: Any) -> str:
    """The ``cosearch run`` command of an artifact (HTML)."""
    if not artifact:
        return "—"
    return "<code>" + esc("cosearch run " + shlex.quote(str(base / str(artifact)))) + "</code>"


def by_latency(points: list[dict]) -> list[dict]:
    """Front points in the order of the report's tables (and the front plot's numbers)."""
    return sorted(points, key=lambda p: (num(p.get("latency_ms")), -num(p.get("accuracy"))))


def objectives_table(obj: Objectives) -> str:
    """The reference point and the normalisation scale, in the objectives' own units."""
    return table(["objective", "reference point (hypervolume 0)", "normalisation scale (calibration best)"], [
        [esc(f"{obj.accuracy_label} (max)"), fnum(obj.accuracy_ref), fnum(obj.accuracy_best)],
        ["latency, ms (min)", fnum(obj.latency_ref_ms), fnum(obj.latency_best_ms)],
    ], {1, 2})


def config_rows(config: dict) -> list[list[str]]:
    first = ["command", "strategy", "target", "space", "estimator", "budget", "max_archs", "latency_max_ms", "seed",
             "schedules", "proxy", "subset", "versions"]
    keys = [k for k in first if k in config] + sorted(k for k in config if k not in first and k != "objectives")
    return [[esc(k), esc(short(config[k]))] for k in keys]
