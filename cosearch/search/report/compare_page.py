"""``write_compare_report(compare_dir)``: the report of ``cosearch compare`` (``compare.html`` +
``compare.png``): the strategies side by side, the benchmark's ground truth when there is one,
each strategy's final front."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cosearch.search.report.data import CompareData, finite, folder, load_compare, num
from cosearch.search.report.page import (by_latency, figure, notes, objectives_table, run_cmd, table, write_page,
                                         write_png)
from cosearch.search.report.plots import plot_compare
from cosearch.search.report.text import arch_text, dur, esc, fnum, pct, short


def _t_cell(v: Any) -> str:
    if isinstance(v, dict):
        return esc(short(v, 60))
    return dur(v) if v is not None else "—"


def _strategies_section(cmp: CompareData) -> list[str]:
    if not cmp.strategies:
        return ["<div class=\"empty\">No strategy result in compare.json.</div>"]
    best = max((num(s.get("hypervolume")) for s in cmp.strategies.values() if finite(num(s.get("hypervolume")))),
               default=math.nan)
    t95, t99 = cmp.table("time_to_95"), cmp.table("time_to_99")
    rows = []
    for name, s in cmp.strategies.items():
        hv = num(s.get("hypervolume"))
        rel = hv / best if finite(hv, best) and best > 0 else math.nan
        link = cmp.compare_dir / name / "report.html"
        name_html = f"<a href=\"{esc(name)}/report.html\">{esc(name)}</a>" if link.exists() else esc(name)
        rows.append([name_html, fnum(cmp.hv_shown(hv)), pct(rel), dur(s.get("wall_s")), str(len(cmp.front(name))),
                     _t_cell(t95.get(name)), _t_cell(t99.get(name))])
    return [table(["strategy", f"final hypervolume ({esc(cmp.hv_units)})", "of best", "wall time", "Pareto points",
                   "time to 95 %", "time to 99 %"], rows, numeric={1, 2, 3, 4, 5, 6})]


def _truth_section(cmp: CompareData) -> list[str]:
    """The benchmark's ground truth (``compare.json`` ``truth``, a replay with a ``table:`` oracle)."""
    truth = cmp.data.get("truth")
    if not isinstance(truth, dict):
        return []
    rows = []
    for name, s in cmp.strategies.items():
        t = s.get("truth") if isinstance(s.get("truth"), dict) else {}
        cvb = t.get("compute_vs_brute") if isinstance(t.get("compute_vs_brute"), dict) else {}
        rows.append([esc(name), pct(num(t.get("ratio_converged"))), pct(num(t.get("ratio_measured"))),
                     _t_cell(t.get("t95_measured_s")), _t_cell(t.get("t99_measured_s")),
                     fnum(cvb.get("independent")), fnum(cvb.get("shared"))])
    bf = truth.get("brute_force") if isinstance(truth.get("brute_force"), dict) else {}
    return [f"<h2>Against the benchmark's true front</h2><p>Benchmark <code>{esc(truth.get('bench'))}</code> "
            f"({esc(truth.get('machine_key'))}, {esc(truth.get('cpu'))}), oracle <code>{esc(truth.get('oracle'))}"
            f"</code>: true front of {len(truth.get('true_front') or [])} points, hypervolume "
            f"{fnum(truth.get('true_hypervolume'))} (normalised to its own reference point). Brute force from the "
            f"recorded costs: independent {dur(bf.get('independent_s'))}, shared {dur(bf.get('shared_s'))}.</p>",
            table(["strategy", "of true front (converged latency)", "of true front (own latency)",
                   "time to 95 % (own)", "time to 99 % (own)", "clock / brute (independent)",
                   "clock / brute (shared)"], rows, numeric={1, 2, 3, 4, 5, 6})]


def _odd_times(cmp: CompareData) -> list[str]:
    """``time_to_95`` / ``time_to_99`` entries the strategies table does not show."""
    extra = {k: v for k, v in list(cmp.table("time_to_95").items()) + list(cmp.table("time_to_99").items())
             if k not in cmp.strategies}
    if not extra and (cmp.data.get("time_to_95") is None or isinstance(cmp.data.get("time_to_95"), dict)):
        return []
    return ["<p>Time to 95 % / 99 %: <code>" + esc(short({"time_to_95": cmp.data.get("time_to_95"),
                                                          "time_to_99": cmp.data.get("time_to_99")}, 400))
            + "</code></p>"]


def _fronts_section(cmp: CompareData) -> list[str]:
    out = []
    for name in cmp.strategies:
        pareto = cmp.front(name)
        out.append(f"<h2>{esc(name)}: Pareto front</h2>")
        if not pareto:
            out.append("<p>No Pareto point.</p>")
            continue
        rows = []
        for i, p in enumerate(by_latency(pareto)):
            art = p.get("artifact")
            rows.append([str(i), f"<code>{esc(arch_text(p.get('arch')))}</code>", fnum(p.get("accuracy")),
                         fnum(p.get("latency_ms")), f"<code>{esc(art)}</code>" if art else "—",
                         run_cmd(cmp.compare_dir, art)])
        out.append(table(["#", "architecture", esc(cmp.label), "latency (ms, measured)", "artifact", "run it"], rows,
                         numeric={0, 2, 3}))
    return out


def write_compare_report(compare_dir: Path) -> Path:
    """Write ``compare_dir/compare.html`` and ``compare_dir/compare.png``; return the HTML path."""
    compare_dir = folder(compare_dir, "compare")
    cmp = load_compare(compare_dir)
    data = None
    try:
        data = plot_compare(cmp)
    except Exception as e:  # a plot must not cost the whole report
        cmp.notes.append(f"Plot failed: {type(e).__name__}: {short(e, 200)}.")
    write_png(compare_dir / "compare.png", data)
    body = [f"<h1>cosearch strategy comparison</h1><p class=\"sub\"><code>{esc(compare_dir)}</code></p>"]
    body += _strategies_section(cmp) + _truth_section(cmp) + _odd_times(cmp)
    if data is not None:
        body.append("<h2>Plots</h2><div class=\"plots\">" + figure(
            data, "Left: hypervolume over time per strategy (same budget, same reference point), in the objectives' "
                  "own units. Right: each strategy's final front. <code>compare.png</code>", "compare") + "</div>")
    body += _fronts_section(cmp)
    if cmp.objectives is not None:
        body.append("<h2>Reference point</h2>" + objectives_table(cmp.objectives))
    if cmp.notes:
        body.append(notes(cmp.notes))
    return write_page(compare_dir / "compare.html", f"cosearch compare — {compare_dir.name}", body)
