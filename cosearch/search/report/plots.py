"""The reports' figures, drawn with matplotlib and returned as PNG bytes.

matplotlib is imported lazily and used through its object API with the Agg canvas
(no pyplot, no global backend), with fixed margins in inches (the "constrained" and
"tight" layouts cost ~0.2 s a figure). A run plot is ``plot(run) -> (png or None, why
not)``; ``RUN_PLOTS`` lists them in the report's order. The hypervolume is drawn in
the objectives' own units (``RunData.hv_shown``), the accuracy axis under its name.
"""

from __future__ import annotations

import io
import math
import statistics
from collections import defaultdict
from typing import Any, Iterable

from cosearch.search.report.data import (CompareData, RunData, fidelities, finite, latency_errors, num, spearman,
                                         train_prediction_pairs)
from cosearch.search.report.text import dur, fnum, pct

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


# ============================================================================ helpers
def new_figure(w: float = 6.4, h: float = 4.2, ncols: int = 1, right_in: float = 0.2):
    """A figure of ``ncols`` axes side by side, fixed margins, light grid."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.7 / w, right=1 - right_in / w, bottom=0.5 / h, top=1 - 0.35 / h,
                        wspace=0.9 * ncols / w if ncols > 1 else 0.2)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
        ax.tick_params(labelsize=8)
    return fig, axes


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _log_scale(ax, axis: str = "x") -> None:
    """Log scale with plain tick labels (``2``, ``10``, ``0.5``): mathtext labels are ugly and slow."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _maybe_log_x(ax, values: Iterable[float]) -> None:
    vals = [v for v in values if math.isfinite(v) and v > 0]
    if len(vals) >= 2 and max(vals) / min(vals) > 20:
        _log_scale(ax, "x")


def _front_step(ax, pts: list[tuple[float, float]], color: str, label: str, x_end: float | None = None,
                **kw: Any) -> None:
    """Attainment staircase of (latency, accuracy) front points sorted by latency."""
    if not pts:
        return
    pts = sorted(pts)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    if x_end is not None and x_end > xs[-1]:
        xs, ys = xs + [x_end], ys + [ys[-1]]
    ax.step(xs, ys, where="post", color=color, linewidth=1.6, label=label, **kw)


def _reference_lines(ax, obj) -> None:
    ax.axhline(obj.accuracy_ref, color="#555", linestyle="--", linewidth=0.8)
    ax.axvline(obj.latency_ref_ms, color="#555", linestyle="--", linewidth=0.8, label="reference point")


# ============================================================================ run plots
def _front_series(run: RunData):
    """(measured, latency only predicted, stopped early, front (lat, acc, predicted lat)) points."""
    measured = [(run.measured[k], run.accuracy(k)[0]) for k in run.measured if finite(run.accuracy(k)[0])]
    pred_only = [(preds[-1][0], run.accuracy(k)[0]) for k, preds in run.pred.items()
                 if k not in run.measured and finite(run.accuracy(k)[0])]
    stopped = [(num(e.get("lat_opt_ms")), num(e.get("acc_opt"))) for e in run.stop_arch]
    front = [(num(p.get("latency_ms")), num(p.get("accuracy")), num(p.get("latency_pred_ms"))) for p in run.pareto()]
    return measured, pred_only, [p for p in stopped if finite(*p)], [p for p in front if finite(p[0], p[1])]


def _draw_front(ax, front: list[tuple[float, float, float]], x_end: float | None) -> list[float]:
    """The final front (staircase, numbered points, predicted latency); returns the extra x values."""
    _front_step(ax, [(f[0], f[1]) for f in front], "#d62728", "Pareto front (measured)", x_end=x_end, zorder=4)
    ax.scatter([f[0] for f in front], [f[1] for f in front], s=46, color="#d62728", edgecolors="white",
               linewidths=0.8, zorder=5)
    for i, f in enumerate(sorted(front)):
        ax.annotate(str(i), (f[0], f[1]), textcoords="offset points", xytext=(4, 4), fontsize=8, color="#a01010")
    with_pred = [f for f in front if finite(f[2])]
    for f in with_pred:
        ax.plot([f[2], f[0]], [f[1], f[1]], color="#d62728", linewidth=0.7, alpha=0.5, zorder=4)
    if with_pred:
        ax.scatter([f[2] for f in with_pred], [f[1] for f in with_pred], s=30, facecolors="none",
                   edgecolors="#d62728", linewidths=0.9, label="front, predicted latency", zorder=5)
    return [f[2] for f in with_pred]


def plot_front(run: RunData) -> tuple[bytes | None, str]:
    measured, pred_only, stopped, front = _front_series(run)
    if not (measured or pred_only or stopped or front):
        return None, "no evaluated point"
    fig, (ax,) = new_figure(8.6, 4.6, right_in=2.3)
    all_x = [p[0] for p in measured + pred_only + stopped] + [f[0] for f in front]
    if pred_only:
        ax.scatter(*zip(*pred_only), s=14, facecolors="none", edgecolors="#9aa5b1", linewidths=0.8,
                   label=f"predicted latency only ({len(pred_only)})", zorder=2)
    if stopped:
        ax.scatter(*zip(*stopped), s=16, marker="x", color="#f4a261", linewidths=0.9,
                   label=f"stopped early, optimistic ({len(stopped)})", zorder=2)
    if measured:
        ax.scatter(*zip(*measured), s=18, color="#4c6a92", alpha=0.75, label=f"measured ({len(measured)})", zorder=3)
    if front:
        all_x += _draw_front(ax, front, max(all_x) if all_x else None)
    if run.objectives is not None:
        _reference_lines(ax, run.objectives)
    _maybe_log_x(ax, all_x)
    ax.set_xlabel("latency (ms, lower is better)")
    ax.set_ylabel(f"{run.label} (higher is better)")
    ax.set_title(f"{run.label} × latency: every evaluated architecture and the front", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return png(fig), ""


def plot_hypervolume(run: RunData) -> tuple[bytes | None, str]:
    if not run.fronts:
        return None, "no `front` event in the journal"
    fig, (ax,) = new_figure(6.4, 3.4)
    ts = [0.0] + [f[0] for f in run.fronts]
    hv = [0.0] + [run.hv_shown(f[1]) for f in run.fronts]
    end = run.t_end if math.isfinite(run.t_end) else ts[-1]
    if run.done is not None and finite(num(run.done.get("wall_s"))):
        end = max(end, num(run.done.get("wall_s")))
    if end > ts[-1]:
        ts, hv = ts + [end], hv + [hv[-1]]
    ax.step(ts, hv, where="post", color="#1f77b4", linewidth=1.6)
    ax.fill_between(ts, hv, step="post", color="#1f77b4", alpha=0.12)
    final = hv[-1]
    for frac, style in ((0.95, ":"), (0.99, "--")):
        if final > 0:
            t_hit = next(t for t, h in zip(ts, hv) if h >= final * frac)
            ax.axhline(final * frac, color="#777", linestyle=style, linewidth=0.8,
                       label=f"{int(frac * 100)} % of final, reached at {dur(t_hit)}")
    if final > 0:
        ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel(f"hypervolume ({run.hv_units})")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Hypervolume over time (final {fnum(final)})", fontsize=10)
    return png(fig), ""


def plot_latency(run: RunData) -> tuple[bytes | None, str]:
    if not run.pairs:
        return None, "no architecture has both a latency prediction and a measurement"
    fig, (ax,) = new_figure(5.2, 4.4)
    by_src: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, p, m, src in run.pairs:
        by_src[src].append((p, m))
    for i, (src, pts) in enumerate(sorted(by_src.items())):
        ax.scatter(*zip(*pts), s=18, alpha=0.8, color=PALETTE[i % len(PALETTE)], label=f"{src} ({len(pts)})")
    vals = [v for _, p, m, _ in run.pairs for v in (p, m)]
    lo, hi = min(vals) * 0.8, max(vals) * 1.25
    ax.plot([lo, hi], [lo, hi], color="#333", linewidth=0.8, label="measured = predicted")
    ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="#999", alpha=0.15, label="±20 %")
    if hi / lo > 20:
        _log_scale(ax, "x")
        _log_scale(ax, "y")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    e = latency_errors(run.pairs)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("measured end-to-end latency (ms)")
    ax.set_title(f"Latency prediction: median error {pct(e['median'])}, max {pct(e['max'])}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    return png(fig), ""


def _fidelity_pair(fids: dict[str, dict[str, float]], names: list[str]):
    """The two fidelities sharing the most architectures (at least 2), cheap one first."""
    pair = None
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(fids[a]) & set(fids[b]))
            if len(common) >= 2 and (pair is None or len(common) > len(pair[2])):
                pair = (a, b, common)
    if pair is not None and (pair[0] == "full" or pair[1] == "cheap"):
        pair = (pair[1], pair[0], pair[2])
    return pair


def plot_accuracy(run: RunData) -> tuple[bytes | None, str]:
    fids = fidelities(run)
    if not fids:
        return None, "no accuracy event in the journal"
    names = sorted(fids, key=lambda f: (-len(fids[f]), f))
    pair = _fidelity_pair(fids, names)
    if pair is not None:
        a, b, common = pair
        xs = [fids[a][k] for k in common]
        ys = [fids[b][k] for k in common]
        fig, (ax,) = new_figure(5.2, 4.2)
        ax.scatter(xs, ys, s=16, alpha=0.75, color="#2a9d8f")
        ax.set_xlabel(f"accuracy estimate, fidelity {a!r}")
        ax.set_ylabel(f"accuracy estimate, fidelity {b!r}")
        ax.set_title(f"Accuracy fidelities on {len(common)} architectures (Spearman ρ = {fnum(spearman(xs, ys), 3)})",
                     fontsize=10)
        return png(fig), ""
    fig, (ax,) = new_figure(5.6, 3.4)
    for i, f in enumerate(names):
        vals = list(fids[f].values())
        ax.hist(vals, bins=min(30, max(5, len(vals) // 3)), alpha=0.6, color=PALETTE[i % len(PALETTE)],
                label=f"{f} ({len(vals)})")
    ax.set_xlabel("accuracy estimate")
    ax.set_ylabel("architectures")
    ax.set_title("Accuracy estimates (one fidelity per architecture: no pair to compare)", fontsize=10)
    ax.legend(fontsize=7)
    return png(fig), ""


def _learning_curves(ax, run: RunData) -> None:
    for e in run.trains:
        c = [num(v) for v in e.get("curve") or []]
        if not c:
            continue
        xs = list(range(1, len(c) + 1))
        if e.get("stopped"):
            ax.plot(xs, c, ls="--", color="#ff7f0e", alpha=0.8, lw=1)
            ax.scatter([xs[-1]], [c[-1]], marker="x", color="#ff7f0e", s=20, zorder=3)
        else:
            ax.plot(xs, c, color="#1f77b4", alpha=0.7, lw=1)
    n_stop = sum(1 for e in run.trains if e.get("stopped"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Learning curves: {len(run.trains) - n_stop} completed, {n_stop} stopped (×)", fontsize=9)


def plot_training(run: RunData) -> tuple[bytes | None, str]:
    if not run.trains:
        return None, "no training rung in this run (--estimator X+train)"
    pairs = train_prediction_pairs(run)
    fig, axes = new_figure(10.0, 4.0, ncols=2 if pairs else 1)
    _learning_curves(axes[0], run)
    if pairs:
        ax = axes[1]
        ps, fs, ks = zip(*pairs)
        sc = ax.scatter(ps, fs, c=ks, cmap="viridis", s=18, alpha=0.85)
        lo, hi = min(ps + fs), max(ps + fs)
        ax.plot([lo, hi], [lo, hi], color="#888", lw=0.8, ls=":")
        ax.set_xlabel("predicted final accuracy (at a decision)")
        ax.set_ylabel("final accuracy")
        mae = statistics.fmean(abs(p - f) for p, f, _ in pairs)
        ax.set_title(f"Predicted vs final: MAE {fnum(mae, 3)} ({len(pairs)} decisions)", fontsize=9)
        fig.colorbar(sc, ax=ax, label="epochs seen")
    return png(fig), ""


def plot_decisions(run: RunData) -> tuple[bytes | None, str]:
    series = [
        ("proposed", run.times.get("propose", []), "#6c757d"),
        ("measured", run.times.get("measure", []), "#1f77b4"),
        ("architectures stopped early", run.times.get("stop_arch", []), "#f4a261"),
        ("tasks stopped early", run.times.get("stop_task", []), "#9467bd"),
        ("failures", run.times.get("fail", []), "#d62728"),
    ]
    series = [s for s in series if s[1]]
    if not series:
        return None, "no timed event in the journal"
    fig, (ax,) = new_figure(6.4, 3.4)
    end = run.t_end if math.isfinite(run.t_end) else 0.0
    for label, ts, color in series:
        ts = sorted(ts)
        xs = [0.0] + ts + [max(end, ts[-1])]
        ys = [0] + list(range(1, len(ts) + 1)) + [len(ts)]
        ax.step(xs, ys, where="post", color=color, linewidth=1.4, label=f"{label} ({len(ts)})")
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("cumulative count")
    ax.set_title("Decisions over time", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    return png(fig), ""


RUN_PLOTS = (("front", plot_front), ("hypervolume", plot_hypervolume), ("latency", plot_latency),
             ("accuracy", plot_accuracy), ("decisions", plot_decisions), ("training", plot_training))


# ============================================================================ compare plot
def _compare_series(cmp: CompareData):
    """Per strategy: the hypervolume curve (t, shown hv) and the final front (latency, accuracy)."""
    curves, fronts = {}, {}
    for name, s in cmp.strategies.items():
        c = [(num(p[0]), num(p[1])) for p in s.get("curve", []) or []
             if isinstance(p, (list, tuple)) and len(p) >= 2]
        c = sorted((t, cmp.hv_shown(h)) for t, h in c if finite(t, h))
        if c:
            curves[name] = c
        pts = [(num(p.get("latency_ms")), num(p.get("accuracy"))) for p in cmp.front(name)]
        pts = [p for p in pts if finite(*p)]
        if pts:
            fronts[name] = pts
    return curves, fronts


def plot_compare(cmp: CompareData) -> bytes | None:
    """Hypervolume over time per strategy (left) and the final fronts overlaid (right)."""
    curves, fronts = _compare_series(cmp)
    if not curves and not fronts:
        return None
    fig, (ax1, ax2) = new_figure(11.0, 4.2, ncols=2)
    t_max = max([c[-1][0] for c in curves.values()] + [num(s.get("wall_s")) for s in cmp.strategies.values()
                                                       if finite(num(s.get("wall_s")))] + [0.0])
    x_end = max((p[0] for f in fronts.values() for p in f), default=None)
    for i, name in enumerate(cmp.strategies):
        color = PALETTE[i % len(PALETTE)]
        if name in curves:
            ts = [0.0] + [t for t, _ in curves[name]]
            hv = [0.0] + [h for _, h in curves[name]]
            ax1.step(ts + [max(t_max, ts[-1])], hv + [hv[-1]], where="post", color=color, linewidth=1.6,
                     label=f"{name} ({fnum(hv[-1], 3)})")
        if name in fronts:
            pts = sorted(fronts[name])
            _front_step(ax2, pts, color, name, x_end=x_end)
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=26, color=color, zorder=3)
    ax1.set_xlabel("wall time (s)")
    ax1.set_ylabel(f"hypervolume ({cmp.hv_units})")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Hypervolume over time", fontsize=10)
    if curves:
        ax1.legend(fontsize=8, loc="lower right")
    if cmp.objectives is not None and fronts:
        _reference_lines(ax2, cmp.objectives)
    _maybe_log_x(ax2, [p[0] for f in fronts.values() for p in f])
    ax2.set_xlabel("latency (ms, measured)")
    ax2.set_ylabel(cmp.label)
    ax2.set_title("Final Pareto fronts", fontsize=10)
    if fronts:
        ax2.legend(fontsize=8, loc="lower right")
    return png(fig)
