"""Human-readable reports of a search run and of a strategy comparison.

``write_report(run_dir)`` reads ``result.json``, ``journal.jsonl`` and
``config.json`` of a run folder (any of them may be missing or partial, e.g. a
run that was killed; what is missing is said in the report) and writes

- ``run_dir/report/*.png``: ``front.png`` (evaluated points, the Pareto front,
  predicted vs measured latency of its points, architectures stopped early at
  their optimistic prediction), ``hypervolume.png`` (hypervolume over time),
  ``latency.png`` (predicted vs measured end-to-end latency, calibration
  error), ``accuracy.png`` (accuracy fidelities against each other, or their
  distribution), ``decisions.png`` (proposals, evaluations, early stops and
  failures over time). A plot without data is not written.
- ``run_dir/report.html``: self-contained (inline CSS, the PNGs embedded as
  base64, no scripts, nothing fetched): summary, the Pareto table with each
  artifact and the command that runs it, the plots, latency-prediction error,
  early-stop decisions, failures and notes.

``write_compare_report(compare_dir)`` reads ``compare.json`` and writes
``compare.png`` (hypervolume over time per strategy; final fronts overlaid)
and a self-contained ``compare.html``.

Files are written atomically (temp file, fsync, rename); reports are derived
data and are overwritten on every call. matplotlib is imported lazily and used
through its object API with the Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

from cosearch.fsio import atomic_write_bytes as _atomic_write_bytes

import base64
import html
import io
import json
import math
import shlex
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cosearch.errors import CosearchError
from cosearch.search.pareto import Objectives, dominated

__all__ = ["write_report", "write_compare_report"]

JOURNAL_VERSION = 1
PLOT_NAMES = ("front", "hypervolume", "latency", "accuracy", "decisions", "training")
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


# ============================================================================ small helpers
def _num(v: Any) -> float:
    if isinstance(v, bool) or v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _ok(*vals: float) -> bool:
    return all(math.isfinite(v) for v in vals)


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.exists():
        notes.append(f"{path.name} is missing.")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} is unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name} does not hold a JSON object.")
        return None
    return data


def _read_journal(path: Path, notes: list[str]) -> list[dict]:
    if not path.exists():
        notes.append("journal.jsonl is missing: no plots over time, no decisions.")
        return []
    events: list[dict] = []
    bad = other_version = 0
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as e:
        notes.append(f"journal.jsonl is unreadable ({e}).")
        return []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                notes.append("The journal's last line is torn (the run was killed while writing it); it is ignored.")
            else:
                bad += 1
            continue
        if not isinstance(ev, dict) or "event" not in ev:
            bad += 1
            continue
        if ev.get("v") != JOURNAL_VERSION:
            other_version += 1
            continue
        events.append(ev)
    if bad:
        notes.append(f"{bad} malformed journal line(s) ignored.")
    if other_version:
        notes.append(f"{other_version} journal line(s) of another version than v={JOURNAL_VERSION} ignored.")
    return events


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _arch_text(arch: Any) -> str:
    if isinstance(arch, str):
        return arch
    if arch is None:
        return "—"
    try:
        return json.dumps(arch, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return str(arch)


def _f(v: Any, digits: int = 4) -> str:
    x = _num(v)
    if not math.isfinite(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _pct(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{100 * v:.1f} %"


def _dur(s: Any) -> str:
    x = _num(s)
    if not math.isfinite(x):
        return "—"
    if x < 120:
        return f"{x:.1f} s"
    if x < 7200:
        return f"{x / 60:.1f} min"
    return f"{x / 3600:.2f} h"


def _short(v: Any, n: int = 160) -> str:
    if isinstance(v, (dict, list)):
        try:
            v = json.dumps(v, separators=(", ", ": "), sort_keys=True)
        except (TypeError, ValueError):
            v = str(v)
    s = " ".join(str(v).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman rank correlation (scipy; NaN for fewer than 3 points or constant input)."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


# ============================================================================ plotting
def _new_figure(w: float = 6.4, h: float = 4.2, ncols: int = 1, right_in: float = 0.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # fixed margins in inches: "constrained"/"tight" layouts cost ~0.2 s a figure
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


def _png(fig) -> bytes:
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


# ============================================================================ run data
@dataclass
class _Run:
    run_dir: Path
    notes: list[str] = field(default_factory=list)
    config: dict | None = None
    result: dict | None = None
    events: list[dict] = field(default_factory=list)
    objectives: Objectives | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    n_proposed: int = 0
    acc: dict[str, list[tuple[str, float, float]]] = field(default_factory=lambda: defaultdict(list))
    pred: dict[str, list[tuple[float, str, float]]] = field(default_factory=lambda: defaultdict(list))
    measured: dict[str, float] = field(default_factory=dict)  # last successful measurement
    measures: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))  # (t, ms)
    pairs: list[tuple[str, float, float, str]] = field(default_factory=list)  # key, pred, measured, source
    stop_arch: list[dict] = field(default_factory=list)
    stop_task: list[dict] = field(default_factory=list)
    fails: list[dict] = field(default_factory=list)
    tunes: list[dict] = field(default_factory=list)
    fronts: list[tuple[float, float, list]] = field(default_factory=list)  # t, hv, points
    done: dict | None = None
    starts: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    t_end: float = math.nan
    trains: list[dict] = field(default_factory=list)  # accuracy events of fidelity "train" (the training rung)

    # ------------------------------------------------------------------ derived
    @property
    def train_rung(self) -> bool:
        est = ((self.config or {}).get("search") or {}).get("estimator")
        return bool(self.trains) or (isinstance(est, str) and est.endswith("+train"))

    def accuracy(self, key: str) -> tuple[float, str]:
        """The latest estimate on the front's accuracy axis (with the training rung: trained or
        predicted trained accuracy, never the cheap screen score, which has another scale)."""
        vals = [v for v in self.acc.get(key, []) if not (self.train_rung and v[0] == "screen")]
        if not vals:
            return math.nan, ""
        fid, v, _ = vals[-1]
        return v, fid

    def pareto(self) -> list[dict]:
        """The final front: result.json's, else the journal's last ``front`` event."""
        if self.result is not None and isinstance(self.result.get("pareto"), list):
            return [p for p in self.result["pareto"] if isinstance(p, dict)]
        if self.fronts:
            out = []
            for p in self.fronts[-1][2]:
                if isinstance(p, (list, tuple)) and len(p) >= 2:
                    key = p[2] if len(p) > 2 else None
                    out.append({"key": key, "arch": self.arch.get(key), "accuracy": p[0], "latency_ms": p[1]})
            return out
        return []

    def final_hv(self) -> float:
        if self.result is not None and math.isfinite(_num(self.result.get("hypervolume"))):
            return _num(self.result.get("hypervolume"))
        return self.fronts[-1][1] if self.fronts else math.nan


def _load_run(run_dir: Path) -> _Run:
    run = _Run(run_dir)
    run.config = _read_json(run_dir / "config.json", run.notes)
    run.result = _read_json(run_dir / "result.json", run.notes)
    run.events = _read_journal(run_dir / "journal.jsonl", run.notes)
    if run.config is None and run.result is None and not run.events:
        raise CosearchError(
            f"{run_dir} is not a search run folder: none of config.json, result.json, journal.jsonl is readable"
        )
    for src in (run.result, run.config):
        if src is not None and isinstance(src.get("objectives"), dict):
            try:
                run.objectives = Objectives.from_dict(src["objectives"])
                break
            except CosearchError as e:
                run.notes.append(f"Objectives unusable: {e}.")
    if run.objectives is None:
        run.notes.append("No objectives (reference point) found: the reference box is not drawn.")

    last_pred: dict[str, tuple[float, str]] = {}
    paired: set[str] = set()
    for ev in run.events:
        kind = ev.get("event")
        t = _num(ev.get("t"))
        if math.isfinite(t):
            run.times[str(kind)].append(t)
            run.t_end = t if not math.isfinite(run.t_end) else max(run.t_end, t)
        key = ev.get("key")
        key = str(key) if key is not None else None
        if kind == "start":
            run.starts += 1
        elif kind == "propose" and key is not None:
            run.n_proposed += 1
            run.arch.setdefault(key, ev.get("arch"))
        elif kind == "accuracy" and key is not None:
            v = _num(ev.get("value"))
            if math.isfinite(v):
                run.acc[key].append((str(ev.get("fidelity", "?")), v, t))
            if ev.get("fidelity") == "screen" and math.isfinite(_num(ev.get("pred"))):
                run.acc[key].append(("predicted", _num(ev.get("pred")), t))
            if ev.get("fidelity") == "train":
                run.trains.append(ev)
        elif kind == "latency_pred" and key is not None:
            ms = _num(ev.get("ms"))
            if math.isfinite(ms):
                run.pred[key].append((ms, str(ev.get("source", "?")), t))
                last_pred[key] = (ms, str(ev.get("source", "?")))  # latest prediction so far
        elif kind == "measure" and key is not None:
            ms = _num(ev.get("ms"))
            if ev.get("ok", True) and math.isfinite(ms) and ms > 0:
                run.measured[key] = ms
                run.measures[key].append((t, ms))
                if key not in paired:  # the prediction made before the first measurement
                    p = _num(ev.get("pred_ms"))
                    src = last_pred.get(key, (math.nan, "?"))[1]
                    if not math.isfinite(p):
                        p = last_pred.get(key, (math.nan, "?"))[0]
                    if math.isfinite(p) and p > 0:
                        run.pairs.append((key, p, ms, src))
                        paired.add(key)
        elif kind == "stop_arch":
            run.stop_arch.append(ev)
        elif kind == "stop_task":
            run.stop_task.append(ev)
        elif kind == "fail":
            run.fails.append(ev)
        elif kind == "tune":
            run.tunes.append(ev)
        elif kind == "front":
            hv = _num(ev.get("hypervolume"))
            pts = ev.get("points") if isinstance(ev.get("points"), list) else []
            if math.isfinite(t) and math.isfinite(hv):
                run.fronts.append((t, hv, pts))
        elif kind == "done":
            run.done = ev
    if run.result is not None:
        for k in ("pareto", "hypervolume", "evaluated", "stopped_early", "trials", "wall_s"):
            if k not in run.result:
                run.notes.append(f"result.json has no {k!r}.")
    return run


# ============================================================================ run plots
def _plot_front(run: _Run) -> tuple[bytes | None, str]:
    obj = run.objectives
    measured = [(run.measured[k], run.accuracy(k)[0]) for k in run.measured if _ok(run.accuracy(k)[0])]
    pred_only = []
    for k, preds in run.pred.items():
        a = run.accuracy(k)[0]
        if k not in run.measured and _ok(a):
            pred_only.append((preds[-1][0], a))
    stopped = [(_num(e.get("lat_opt_ms")), _num(e.get("acc_opt"))) for e in run.stop_arch]
    stopped = [p for p in stopped if _ok(*p)]
    front = [(_num(p.get("latency_ms")), _num(p.get("accuracy")), _num(p.get("latency_pred_ms")))
             for p in run.pareto()]
    front = [p for p in front if _ok(p[0], p[1])]
    if not (measured or pred_only or stopped or front):
        return None, "no evaluated point"
    fig, (ax,) = _new_figure(8.6, 4.6, right_in=2.3)
    all_x = [p[0] for p in measured + pred_only + stopped + [(f[0], f[1]) for f in front]]
    if pred_only:
        ax.scatter(*zip(*pred_only), s=14, facecolors="none", edgecolors="#9aa5b1", linewidths=0.8,
                   label=f"predicted latency only ({len(pred_only)})", zorder=2)
    if stopped:
        ax.scatter(*zip(*stopped), s=16, marker="x", color="#f4a261", linewidths=0.9,
                   label=f"stopped early, optimistic ({len(stopped)})", zorder=2)
    if measured:
        ax.scatter(*zip(*measured), s=18, color="#4c6a92", alpha=0.75,
                   label=f"measured ({len(measured)})", zorder=3)
    if front:
        x_end = max(all_x) if all_x else None
        _front_step(ax, [(f[0], f[1]) for f in front], "#d62728", "Pareto front (measured)", x_end=x_end, zorder=4)
        ax.scatter([f[0] for f in front], [f[1] for f in front], s=46, color="#d62728", edgecolors="white",
                   linewidths=0.8, zorder=5)
        for i, f in enumerate(sorted(front)):
            ax.annotate(str(i), (f[0], f[1]), textcoords="offset points", xytext=(4, 4), fontsize=8,
                        color="#a01010")
        with_pred = [f for f in front if _ok(f[2])]
        if with_pred:
            for f in with_pred:
                ax.plot([f[2], f[0]], [f[1], f[1]], color="#d62728", linewidth=0.7, alpha=0.5, zorder=4)
            ax.scatter([f[2] for f in with_pred], [f[1] for f in with_pred], s=30, facecolors="none",
                       edgecolors="#d62728", linewidths=0.9, label="front, predicted latency", zorder=5)
            all_x += [f[2] for f in with_pred]
    if obj is not None:
        ax.axhline(obj.accuracy_ref, color="#555", linestyle="--", linewidth=0.8)
        ax.axvline(obj.latency_ref_ms, color="#555", linestyle="--", linewidth=0.8, label="reference point")
    _maybe_log_x(ax, all_x)
    ax.set_xlabel("latency (ms, lower is better)")
    ax.set_ylabel("accuracy estimate (higher is better)")
    ax.set_title("Accuracy × latency: every evaluated architecture and the front", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _png(fig), ""


def _plot_hypervolume(run: _Run) -> tuple[bytes | None, str]:
    if not run.fronts:
        return None, "no `front` event in the journal"
    fig, (ax,) = _new_figure(6.4, 3.4)
    ts = [0.0] + [f[0] for f in run.fronts]
    hv = [0.0] + [f[1] for f in run.fronts]
    end = run.t_end if math.isfinite(run.t_end) else ts[-1]
    if run.done is not None and _ok(_num(run.done.get("wall_s"))):
        end = max(end, _num(run.done.get("wall_s")))
    if end > ts[-1]:
        ts, hv = ts + [end], hv + [hv[-1]]
    ax.step(ts, hv, where="post", color="#1f77b4", linewidth=1.6)
    ax.fill_between(ts, hv, step="post", color="#1f77b4", alpha=0.12)
    final = run.fronts[-1][1]
    for frac, style in ((0.95, ":"), (0.99, "--")):
        if final > 0:
            t_hit = next(t for t, h in zip(ts, hv) if h >= final * frac)
            ax.axhline(final * frac, color="#777", linestyle=style, linewidth=0.8,
                       label=f"{int(frac * 100)} % of final, reached at {_dur(t_hit)}")
    if final > 0:
        ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel("hypervolume (normalised)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Hypervolume over time (final {final:.4g})", fontsize=10)
    return _png(fig), ""


def _latency_errors(pairs: list[tuple[str, float, float, str]]) -> dict[str, float]:
    rel = [abs(p - m) / m for _, p, m, _ in pairs]
    ratio = [m / p for _, p, m, _ in pairs]
    return {
        "n": len(pairs),
        "median": statistics.median(rel) if rel else math.nan,
        "max": max(rel) if rel else math.nan,
        "ratio": statistics.median(ratio) if ratio else math.nan,
    }


def _plot_latency(run: _Run) -> tuple[bytes | None, str]:
    if not run.pairs:
        return None, "no architecture has both a latency prediction and a measurement"
    fig, (ax,) = _new_figure(5.2, 4.4)
    by_src: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, p, m, src in run.pairs:
        by_src[src].append((p, m))
    for i, (src, pts) in enumerate(sorted(by_src.items())):
        ax.scatter(*zip(*pts), s=18, alpha=0.8, color=_PALETTE[i % len(_PALETTE)], label=f"{src} ({len(pts)})")
    vals = [v for _, p, m, _ in run.pairs for v in (p, m)]
    lo, hi = min(vals) * 0.8, max(vals) * 1.25
    ax.plot([lo, hi], [lo, hi], color="#333", linewidth=0.8, label="measured = predicted")
    ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="#999", alpha=0.15, label="±20 %")
    if hi / lo > 20:
        _log_scale(ax, "x")
        _log_scale(ax, "y")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    e = _latency_errors(run.pairs)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("measured end-to-end latency (ms)")
    ax.set_title(f"Latency prediction: median error {_pct(e['median'])}, max {_pct(e['max'])}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    return _png(fig), ""


def _fidelities(run: _Run) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for k, vals in run.acc.items():
        for fid, v, _ in vals:
            out[fid][k] = v
    return out


def _plot_accuracy(run: _Run) -> tuple[bytes | None, str]:
    fids = _fidelities(run)
    if not fids:
        return None, "no accuracy event in the journal"
    names = sorted(fids, key=lambda f: (-len(fids[f]), f))
    pair = None
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(fids[a]) & set(fids[b]))
            if len(common) >= 2 and (pair is None or len(common) > len(pair[2])):
                pair = (a, b, common)
    if pair is not None:
        a, b, common = pair
        if a == "full" or b == "cheap":
            a, b = b, a
        xs = [fids[a][k] for k in common]
        ys = [fids[b][k] for k in common]
        fig, (ax,) = _new_figure(5.2, 4.2)
        ax.scatter(xs, ys, s=16, alpha=0.75, color="#2a9d8f")
        rho = _spearman(xs, ys)
        ax.set_xlabel(f"accuracy estimate, fidelity {a!r}")
        ax.set_ylabel(f"accuracy estimate, fidelity {b!r}")
        ax.set_title(f"Accuracy fidelities on {len(common)} architectures (Spearman ρ = {_f(rho, 3)})", fontsize=10)
        return _png(fig), ""
    fig, (ax,) = _new_figure(5.6, 3.4)
    for i, f in enumerate(names):
        vals = list(fids[f].values())
        ax.hist(vals, bins=min(30, max(5, len(vals) // 3)), alpha=0.6, color=_PALETTE[i % len(_PALETTE)],
                label=f"{f} ({len(vals)})")
    ax.set_xlabel("accuracy estimate")
    ax.set_ylabel("architectures")
    ax.set_title("Accuracy estimates (one fidelity per architecture: no pair to compare)", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig), ""


def _train_prediction_pairs(run: _Run) -> list[tuple[float, float, int]]:
    """(predicted final, final, epochs seen) of every decision of a completed training run."""
    out = []
    for e in run.trains:
        final = _num(e.get("final"))
        if e.get("stopped") or not math.isfinite(final):
            continue
        for d in e.get("decisions") or []:
            p = _num(d.get("predicted")) if isinstance(d, dict) else math.nan
            if math.isfinite(p):
                out.append((p, final, int(_num(d.get("epoch"))) if _ok(_num(d.get("epoch"))) else 0))
    return out


def _plot_training(run: _Run) -> tuple[bytes | None, str]:
    if not run.trains:
        return None, "no training rung in this run (--estimator X+train)"
    pairs = _train_prediction_pairs(run)
    fig, axes = _new_figure(10.0, 4.0, ncols=2 if pairs else 1)
    ax = axes[0]
    for e in run.trains:
        c = [_num(v) for v in e.get("curve") or []]
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
    if pairs:
        ax = axes[1]
        ps, fs, ks = zip(*pairs)
        sc = ax.scatter(ps, fs, c=ks, cmap="viridis", s=18, alpha=0.85)
        lo, hi = min(ps + fs), max(ps + fs)
        ax.plot([lo, hi], [lo, hi], color="#888", lw=0.8, ls=":")
        ax.set_xlabel("predicted final accuracy (at a decision)")
        ax.set_ylabel("final accuracy")
        mae = statistics.fmean(abs(p - f) for p, f, _ in pairs)
        ax.set_title(f"Predicted vs final: MAE {_f(mae, 3)} ({len(pairs)} decisions)", fontsize=9)
        fig.colorbar(sc, ax=ax, label="epochs seen")
    return _png(fig), ""


def _plot_decisions(run: _Run) -> tuple[bytes | None, str]:
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
    fig, (ax,) = _new_figure(6.4, 3.4)
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
    return _png(fig), ""


# ============================================================================ HTML
_CSS = """
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


def _page(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are HTML already (escape before)."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"n\">{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _cards(items: list[tuple[str, str]]) -> str:
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><div class=\"v\">{_esc(v)}</div><div class=\"l\">{_esc(l)}</div></div>" for l, v in items
    ) + "</div>"


def _figure(png: bytes, caption: str, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt=\"{_esc(alt)}\" src=\"data:image/png;base64,{b64}\">"
            f"<figcaption>{caption}</figcaption></figure>")


def _run_cmd(base: Path, artifact: Any) -> str:
    if not artifact:
        return "—"
    return "<code>" + _esc("cosearch run " + shlex.quote(str(base / str(artifact)))) + "</code>"


def _config_rows(config: dict) -> list[list[str]]:
    first = ["command", "strategy", "target", "space", "estimator", "budget", "max_archs", "latency_max_ms", "seed",
             "schedules", "proxy", "subset", "versions"]
    keys = [k for k in first if k in config] + sorted(k for k in config if k not in first and k != "objectives")
    return [[_esc(k), _esc(_short(config[k]))] for k in keys]


_CAPTIONS = {
    "front": "Each dot is an architecture at its latest accuracy estimate. Filled: measured end-to-end latency; "
             "hollow grey: latency only predicted; orange ×: stopped early at its optimistic (accuracy, latency) "
             "prediction. Red: the final Pareto front (numbers = rows of the table), with each front point's "
             "predicted latency as a hollow red circle. Dashed: the reference point of the hypervolume.",
    "hypervolume": "Normalised hypervolume of the measured front w.r.t. the run's fixed reference point, "
                   "after every change of the front; dotted/dashed: 95 % / 99 % of the final value.",
    "latency": "One point per measured architecture: the latency predicted just before its first end-to-end "
               "measurement vs that measurement, coloured by prediction source.",
    "accuracy": "Accuracy estimates of the same architectures at two fidelities (when the run has two), "
                "or their distribution.",
    "decisions": "Cumulative proposals, end-to-end measurements, early stops (architectures and tuning tasks) "
                 "and failures.",
    "training": "The training rung: validation accuracy per epoch of every trained architecture (orange dashed: "
                "stopped early by the learning-curve rule), and the rule's predicted final accuracy at each "
                "decision of the completed runs vs their final accuracy.",
}


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and ``run_dir/report/*.png``; return the HTML path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CosearchError(f"report: {str(run_dir)!r} is not a folder (expected a search run folder)")
    run = _load_run(run_dir)
    plot_dir = run_dir / "report"
    plots: list[tuple[str, bytes | None, str]] = []
    for name, fn in zip(PLOT_NAMES, (_plot_front, _plot_hypervolume, _plot_latency, _plot_accuracy,
                                     _plot_decisions, _plot_training)):
        try:
            png, why = fn(run)
        except Exception as e:  # a plot must not cost the whole report
            png, why = None, f"plot failed: {type(e).__name__}: {_short(e, 200)}"
        plots.append((name, png, why))
        target = plot_dir / f"{name}.png"
        if png is not None:
            _atomic_write_bytes(target, png)
        elif target.exists():
            target.unlink()  # stale plot of an earlier call

    res = run.result or {}
    cfg = run.config or {}
    pareto = run.pareto()
    evaluated = res.get("evaluated", len(run.measured) if run.events else None)
    n_eval = int(_num(evaluated)) if math.isfinite(_num(evaluated)) else len(run.measured)
    title_bits = [str(cfg.get(k)) for k in ("strategy", "space", "estimator") if isinstance(cfg.get(k), str)]
    tgt = cfg.get("target")
    if isinstance(tgt, dict):
        tgt = tgt.get("name") or tgt.get("identity")
    if isinstance(tgt, str):
        title_bits.append(f"on {tgt}")
    body = [f"<h1>cosearch run report</h1><p class=\"sub\">{_esc(' · '.join(title_bits) or run_dir.name)} "
            f"— <code>{_esc(run_dir)}</code></p>"]
    stopped = res.get("stopped_early", len(run.stop_arch) if run.events else None)
    body.append(_cards([
        ("Pareto points", str(len(pareto))),
        ("hypervolume", _f(run.final_hv())),
        ("proposed", str(run.n_proposed) if run.events else "—"),
        ("evaluated", str(evaluated) if evaluated is not None else "—"),
        ("stopped early", str(stopped) if stopped is not None else "—"),
        ("tuning trials", _f(res["trials"]) if "trials" in res else
         (_f(sum(_num(t.get("trials")) for t in run.tunes if _ok(_num(t.get("trials"))))) if run.tunes else "—")),
        ("wall time", _dur(res.get("wall_s", (run.done or {}).get("wall_s", run.t_end)))),
    ]))
    if n_eval == 0 and not pareto:
        body.append("<div class=\"empty\">No architecture was evaluated (0 evaluated): there is no front yet."
                    + (f" The run ended with reason {_esc(run.done.get('reason'))!s}." if run.done else "")
                    + "</div>")
    if run.done is None and run.events:
        body.append("<div class=\"note\">The journal has no <code>done</code> event: the run is still going, "
                    "or was stopped before it finished (it can be resumed).</div>")

    # ---- Pareto table
    body.append("<h2>Pareto front</h2>")
    if pareto:
        rows = []
        any_trained = any(isinstance(p.get("trained"), dict) for p in pareto)
        for i, p in enumerate(sorted(pareto, key=lambda p: (_num(p.get("latency_ms")), -_num(p.get("accuracy"))))):
            lat, pred = _num(p.get("latency_ms")), _num(p.get("latency_pred_ms"))
            err = abs(pred - lat) / lat if _ok(lat, pred) and lat > 0 else math.nan
            art = p.get("artifact")
            if art:
                exists = (run_dir / str(art)).exists()
                art_html = f"<a href=\"{_esc(art)}\"><code>{_esc(art)}</code></a>" + (
                    "" if exists else " <span class=\"muted\">(missing)</span>")
            else:
                art_html = "—"
            rows.append([str(i), f"<code>{_esc(_arch_text(p.get('arch')))}</code>", _f(p.get("accuracy")),
                         _f(lat), _f(pred), _pct(err), art_html, _run_cmd(run_dir, art)])
            if any_trained:  # --train-pareto: held-out accuracy of the trained artifact (TVM / PyTorch)
                t = p.get("trained") if isinstance(p.get("trained"), dict) else None
                rows[-1].append("—" if t is None else f"{_f(t.get('tvm_heldout'))} / {_f(t.get('torch_heldout'))} "
                                f"<code>{_esc(t.get('artifact'))}</code>")
        body.append(_table(["#", "architecture", "accuracy", "latency (ms, measured)", "latency (ms, predicted)",
                            "prediction error", "artifact", "run it"]
                           + (["trained held-out (TVM / torch)"] if any_trained else []), rows,
                           numeric={0, 2, 3, 4, 5}))
        body.append("<p class=\"muted\">Latency: median end-to-end measurement of the deployable artifact. "
                    "Accuracy: the estimator's value at the highest fidelity reached.</p>")
    else:
        body.append("<p>No Pareto point.</p>")

    # ---- plots
    body.append("<h2>Plots</h2><div class=\"plots\">")
    missing_plots = []
    for name, png, why in plots:
        if png is not None:
            body.append(_figure(png, _esc(_CAPTIONS[name]) + f" <code>report/{name}.png</code>", name))
        else:
            missing_plots.append(f"{name}: {why}")
    body.append("</div>")
    if missing_plots:
        body.append("<p class=\"muted\">Not plotted — " + _esc("; ".join(missing_plots)) + ".</p>")

    # ---- latency prediction error
    body.append("<h2>Latency prediction error</h2>")
    if run.pairs:
        rows = []
        groups = [("all", run.pairs)] + [
            (src, [p for p in run.pairs if p[3] == src]) for src in sorted({p[3] for p in run.pairs})
        ]
        if len(groups) == 2:
            groups = groups[:1]
        for name, ps in groups:
            e = _latency_errors(ps)
            rows.append([_esc(name), str(e["n"]), _pct(e["median"]), _pct(e["max"]), _f(e["ratio"], 3)])
        body.append(_table(["prediction source", "architectures", "median |error|", "max |error|",
                            "median measured / predicted"], rows, numeric={1, 2, 3, 4}))
        body.append("<p class=\"muted\">Relative error |predicted − measured| / measured, with the prediction "
                    "made just before each architecture's first end-to-end measurement.</p>")
        cal = res.get("latency_calibration")
        if isinstance(cal, dict) and cal:
            body.append("<p>Calibration reported by the run: <code>" + _esc(_short(cal, 400)) + "</code></p>")
    else:
        body.append("<p>No architecture has both a latency prediction and an end-to-end measurement.</p>")

    # ---- early stopping
    body.append("<h2>Early-stop decisions</h2>")
    counts = Counter(("architecture", str(e.get("reason", "?"))) for e in run.stop_arch)
    counts.update(("tuning task", str(e.get("reason", "?"))) for e in run.stop_task)
    if counts:
        body.append(_table(["stopped", "reason", "count"],
                           [[_esc(k), _esc(r), str(n)] for (k, r), n in sorted(counts.items())], numeric={2}))
        checked = []
        final_front = [(_num(p.get("accuracy")), _num(p.get("latency_ms"))) for p in pareto]
        for e in run.stop_arch:
            k = str(e.get("key"))
            t_stop = _num(e.get("t"))
            later = [ms for t, ms in run.measures.get(k, []) if t >= t_stop]
            if later:
                ms = later[-1]
                a = run.accuracy(k)[0]
                checked.append((_num(e.get("lat_opt_ms")) <= ms, dominated((a, ms), final_front) if _ok(a) else None))
        if checked:
            held = sum(1 for h, _ in checked if h)
            dom = sum(1 for _, d in checked if d)
            body.append(f"<p>{len(checked)} architecture(s) stopped early were measured later: the optimistic "
                        f"latency was ≤ the measured one for {held}, and {dom} are indeed dominated by the final "
                        "front.</p>")
        else:
            body.append("<p class=\"muted\">No architecture stopped early was measured later, so the stopping "
                        "decisions cannot be checked against measurements in this run.</p>")
        gains = []
        for e in run.stop_task:
            w = e.get("workload")
            for tv in run.tunes:
                if _num(tv.get("t")) >= _num(e.get("t")) and w in (tv.get("workloads") or []) \
                        and _ok(_num(tv.get("gain_us"))):
                    gains.append((_num(e.get("gain_pred_us")), _num(tv.get("gain_us"))))
        if gains:
            body.append(f"<p>{len(gains)} stopped task(s) were tuned later: predicted gain (µs) vs real gain "
                        + _esc(", ".join(f"{_f(p, 3)}→{_f(r, 3)}" for p, r in gains[:20])) + ".</p>")
    else:
        body.append("<p>No early-stop decision was made.</p>")

    # ---- training rung
    if run.trains:
        body.append("<h2>Training rung</h2>")
        tr = res.get("training") if isinstance(res.get("training"), dict) else {}
        n_stop = sum(1 for e in run.trains if e.get("stopped"))
        run_ep = sum(len(e.get("curve") or []) for e in run.trains)
        plan_ep = sum(int(_num(e.get("epochs"))) for e in run.trains if _ok(_num(e.get("epochs"))))
        secs = sum(_num(e.get("seconds")) for e in run.trains if _ok(_num(e.get("seconds"))))
        body.append(f"<p>{len(run.trains)} architecture(s) trained ({_esc(tr.get('epochs', '?'))} epochs on "
                    f"<code>{_esc(tr.get('data', '?'))}</code>), {n_stop} stopped early by the learning-curve rule "
                    f"when their optimistic final accuracy could not beat the front at their measured latency: "
                    f"{run_ep} of {plan_ep} epochs run ({_pct(1 - run_ep / plan_ep) if plan_ep else '—'} saved), "
                    f"{_dur(secs)} of training.</p>")
        pairs = _train_prediction_pairs(run)
        if pairs:
            mae = statistics.fmean(abs(p - f) for p, f, _ in pairs)
            body.append(f"<p>Predicted vs final accuracy over {len(pairs)} decisions of completed runs: mean "
                        f"|error| {_f(mae, 3)}.</p>")
        rows = []
        for e in sorted(run.trains, key=lambda e: _num(e.get("t"))):
            k = str(e.get("key"))
            last = (e.get("decisions") or [{}])[-1] if e.get("decisions") else {}
            rows.append([f"<code>{_esc(_short(_arch_text(run.arch.get(k, k)), 70))}</code>",
                         _f(run.measured.get(k)), _f(e.get("threshold"), 3),
                         f"{len(e.get('curve') or [])}/{_esc(e.get('epochs'))}",
                         _f(last.get("predicted"), 3) if isinstance(last, dict) else "—",
                         _f(last.get("margin"), 3) if isinstance(last, dict) else "—",
                         "stopped" if e.get("stopped") else _f(e.get("final"), 3),
                         _esc(last.get("rule", "—")) if isinstance(last, dict) else "—", _dur(e.get("seconds"))])
        body.append(_table(["architecture", "latency (ms)", "needed accuracy", "epochs", "last prediction",
                            "margin", "final accuracy", "rule", "time"], rows[:60], numeric={1, 2, 4, 5, 6}))
        if len(rows) > 60:
            body.append(f"<p class=\"muted\">… and {len(rows) - 60} more in journal.jsonl.</p>")

    # ---- failures
    if run.fails:
        body.append("<h2>Failures</h2>")
        by_stage = Counter(str(e.get("stage", "?")) for e in run.fails)
        body.append(_table(["stage", "count"], [[_esc(s), str(n)] for s, n in sorted(by_stage.items())], {1}))
        rows = [[_esc(_short(e.get("key"), 40)), _esc(e.get("stage", "?")), _esc(_short(e.get("error"), 200))]
                for e in run.fails[:10]]
        body.append(_table(["key", "stage", "error (first line)"], rows))
        if len(run.fails) > 10:
            body.append(f"<p class=\"muted\">… and {len(run.fails) - 10} more in journal.jsonl.</p>")

    # ---- configuration, notes
    body.append("<h2>Configuration</h2>")
    if run.objectives is not None:
        o = run.objectives
        body.append(_table(["objective", "reference (hypervolume 0)", "best (normalised 1)"], [
            ["accuracy (max)", _f(o.accuracy_ref), _f(o.accuracy_best)],
            ["latency, ms (min)", _f(o.latency_ref_ms), _f(o.latency_best_ms)],
        ], {1, 2}))
    if cfg:
        body.append(_table(["setting", "value"], _config_rows(cfg)))
    if run.starts > 1:
        body.append(f"<p>The run was resumed {run.starts - 1} time(s).</p>")
    if run.notes:
        body.append("<h2>Notes</h2>" + "".join(f"<div class=\"note\">{_esc(n)}</div>" for n in run.notes))
    body.append("<p class=\"muted\">Files: <code>result.json</code>, <code>journal.jsonl</code>, "
                "<code>config.json</code>, <code>report/*.png</code>.</p>")
    out = run_dir / "report.html"
    _atomic_write_bytes(out, _page(f"cosearch report — {run_dir.name}", body).encode("utf-8"))
    return out


# ============================================================================ compare
def write_compare_report(compare_dir: Path) -> Path:
    """Write ``compare_dir/compare.html`` and ``compare_dir/compare.png``; return the HTML path."""
    compare_dir = Path(compare_dir)
    if not compare_dir.is_dir():
        raise CosearchError(f"report: {str(compare_dir)!r} is not a folder (expected a compare folder)")
    notes: list[str] = []
    data = _read_json(compare_dir / "compare.json", notes)
    if data is None:
        raise CosearchError(f"report: {str(compare_dir / 'compare.json')!r}: {notes[-1]}")
    strategies = data.get("strategies")
    if not isinstance(strategies, dict):
        notes.append("compare.json has no 'strategies' object.")
        strategies = {}
    strategies = {str(k): v for k, v in strategies.items() if isinstance(v, dict)}
    obj = None
    if isinstance(data.get("reference_point"), dict):
        try:
            obj = Objectives.from_dict(data["reference_point"])
        except CosearchError as e:
            notes.append(f"Reference point unusable: {e}.")
    else:
        notes.append("compare.json has no 'reference_point'.")

    # ---- plot
    png = None
    try:
        png = _plot_compare(strategies, obj)
    except Exception as e:
        notes.append(f"Plot failed: {type(e).__name__}: {_short(e, 200)}.")
    png_path = compare_dir / "compare.png"
    if png is not None:
        _atomic_write_bytes(png_path, png)
    elif png_path.exists():
        png_path.unlink()

    # ---- html
    body = [f"<h1>cosearch strategy comparison</h1><p class=\"sub\"><code>{_esc(compare_dir)}</code></p>"]
    if not strategies:
        body.append("<div class=\"empty\">No strategy result in compare.json.</div>")
    best = max((_num(s.get("hypervolume")) for s in strategies.values() if _ok(_num(s.get("hypervolume")))),
               default=math.nan)
    t95 = data.get("time_to_95") if isinstance(data.get("time_to_95"), dict) else {}
    t99 = data.get("time_to_99") if isinstance(data.get("time_to_99"), dict) else {}
    rows = []
    for name, s in strategies.items():
        hv = _num(s.get("hypervolume"))
        rel = hv / best if _ok(hv, best) and best > 0 else math.nan
        n_front = len(s["pareto"]) if isinstance(s.get("pareto"), list) else 0
        link = compare_dir / name / "report.html"
        name_html = (f"<a href=\"{_esc(name)}/report.html\">{_esc(name)}</a>" if link.exists() else _esc(name))
        rows.append([name_html, _f(hv), _pct(rel), _dur(s.get("wall_s")), str(n_front),
                     _t_cell(t95.get(name)), _t_cell(t99.get(name))])
    if rows:
        body.append(_table(["strategy", "final hypervolume", "of best", "wall time", "Pareto points",
                            "time to 95 %", "time to 99 %"], rows, numeric={1, 2, 3, 4, 5, 6}))
    body.extend(_truth_section(data, strategies))
    extra = {k: v for k, v in list(t95.items()) + list(t99.items()) if k not in strategies}
    if extra or (data.get("time_to_95") is not None and not isinstance(data.get("time_to_95"), dict)):
        body.append("<p>Time to 95 % / 99 %: <code>" + _esc(_short({"time_to_95": data.get("time_to_95"),
                                                                     "time_to_99": data.get("time_to_99")}, 400))
                    + "</code></p>")
    if png is not None:
        body.append("<h2>Plots</h2><div class=\"plots\">" + _figure(
            png, "Left: hypervolume over time per strategy (same budget, same reference point). Right: each "
                 "strategy's final front. <code>compare.png</code>", "compare") + "</div>")
    for name, s in strategies.items():
        pareto = [p for p in s.get("pareto", []) if isinstance(p, dict)] if isinstance(s.get("pareto"), list) else []
        body.append(f"<h2>{_esc(name)}: Pareto front</h2>")
        if not pareto:
            body.append("<p>No Pareto point.</p>")
            continue
        prow = []
        for i, p in enumerate(sorted(pareto, key=lambda p: (_num(p.get("latency_ms")), -_num(p.get("accuracy"))))):
            art = p.get("artifact")
            prow.append([str(i), f"<code>{_esc(_arch_text(p.get('arch')))}</code>", _f(p.get("accuracy")),
                         _f(p.get("latency_ms")), f"<code>{_esc(art)}</code>" if art else "—",
                         _run_cmd(compare_dir, art)])
        body.append(_table(["#", "architecture", "accuracy", "latency (ms, measured)", "artifact", "run it"], prow,
                           numeric={0, 2, 3}))
    if obj is not None:
        body.append("<h2>Reference point</h2>" + _table(
            ["objective", "reference (hypervolume 0)", "best (normalised 1)"],
            [["accuracy (max)", _f(obj.accuracy_ref), _f(obj.accuracy_best)],
             ["latency, ms (min)", _f(obj.latency_ref_ms), _f(obj.latency_best_ms)]], {1, 2}))
    if notes:
        body.append("<h2>Notes</h2>" + "".join(f"<div class=\"note\">{_esc(n)}</div>" for n in notes))
    out = compare_dir / "compare.html"
    _atomic_write_bytes(out, _page(f"cosearch compare — {compare_dir.name}", body).encode("utf-8"))
    return out


def _truth_section(data: dict, strategies: dict) -> list[str]:
    """The benchmark's ground truth (``compare.json`` ``truth``, a replay with a ``table:`` oracle)."""
    truth = data.get("truth")
    if not isinstance(truth, dict):
        return []
    rows = []
    for name, s in strategies.items():
        t = s.get("truth") if isinstance(s.get("truth"), dict) else {}
        cvb = t.get("compute_vs_brute") if isinstance(t.get("compute_vs_brute"), dict) else {}
        rows.append([_esc(name), _pct(_num(t.get("ratio_converged"))), _pct(_num(t.get("ratio_measured"))),
                     _t_cell(t.get("t95_measured_s")), _t_cell(t.get("t99_measured_s")),
                     _f(cvb.get("independent")), _f(cvb.get("shared"))])
    bf = truth.get("brute_force") if isinstance(truth.get("brute_force"), dict) else {}
    return [f"<h2>Against the benchmark's true front</h2><p>Benchmark <code>{_esc(truth.get('bench'))}</code> "
            f"({_esc(truth.get('machine_key'))}, {_esc(truth.get('cpu'))}), oracle <code>{_esc(truth.get('oracle'))}"
            f"</code>: true front of {len(truth.get('true_front') or [])} points, hypervolume "
            f"{_f(truth.get('true_hypervolume'))} (its own reference point). Brute force from the recorded costs: "
            f"independent {_dur(bf.get('independent_s'))}, shared {_dur(bf.get('shared_s'))}.</p>",
            _table(["strategy", "of true front (converged latency)", "of true front (own latency)",
                    "time to 95 % (own)", "time to 99 % (own)", "clock / brute (independent)",
                    "clock / brute (shared)"], rows, numeric={1, 2, 3, 4, 5, 6})]


def _t_cell(v: Any) -> str:
    if isinstance(v, dict):
        return _esc(_short(v, 60))
    return _dur(v) if v is not None else "—"


def _plot_compare(strategies: dict[str, dict], obj: Objectives | None) -> bytes | None:
    curves = {}
    fronts = {}
    for name, s in strategies.items():
        c = [(_num(p[0]), _num(p[1])) for p in s.get("curve", []) or []
             if isinstance(p, (list, tuple)) and len(p) >= 2]
        c = sorted(p for p in c if _ok(*p))
        if c:
            curves[name] = c
        pts = [(_num(p.get("latency_ms")), _num(p.get("accuracy"))) for p in s.get("pareto", []) or []
               if isinstance(p, dict)]
        pts = [p for p in pts if _ok(*p)]
        if pts:
            fronts[name] = pts
    if not curves and not fronts:
        return None
    fig, (ax1, ax2) = _new_figure(11.0, 4.2, ncols=2)
    t_max = max([c[-1][0] for c in curves.values()] + [_num(s.get("wall_s")) for s in strategies.values()
                                                       if _ok(_num(s.get("wall_s")))] + [0.0])
    for i, name in enumerate(strategies):
        color = _PALETTE[i % len(_PALETTE)]
        if name in curves:
            ts = [0.0] + [t for t, _ in curves[name]]
            hv = [0.0] + [h for _, h in curves[name]]
            end = max(t_max, ts[-1])
            ax1.step(ts + [end], hv + [hv[-1]], where="post", color=color, linewidth=1.6,
                     label=f"{name} ({hv[-1]:.3g})")
        if name in fronts:
            pts = sorted(fronts[name])
            x_end = max(p[0] for f in fronts.values() for p in f)
            _front_step(ax2, pts, color, name, x_end=x_end)
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=26, color=color, zorder=3)
    ax1.set_xlabel("wall time (s)")
    ax1.set_ylabel("hypervolume (normalised)")
    ax1.set_ylim(bottom=0)
    ax1.set_title("Hypervolume over time", fontsize=10)
    if curves:
        ax1.legend(fontsize=8, loc="lower right")
    if obj is not None and fronts:
        ax2.axhline(obj.accuracy_ref, color="#555", linestyle="--", linewidth=0.8)
        ax2.axvline(obj.latency_ref_ms, color="#555", linestyle="--", linewidth=0.8, label="reference point")
    _maybe_log_x(ax2, [p[0] for f in fronts.values() for p in f])
    ax2.set_xlabel("latency (ms, measured)")
    ax2.set_ylabel("accuracy estimate")
    ax2.set_title("Final Pareto fronts", fontsize=10)
    if fronts:
        ax2.legend(fontsize=8, loc="lower right")
    return _png(fig)
