"""The data of the run and compare reports: a run folder (or a compare folder) read once.

``load_run(run_dir)`` reads ``config.json``, ``result.json`` and ``journal.jsonl``
(any of them may be missing or partial, e.g. a run that was killed; what is missing
becomes a note) into a ``RunData``: the journal's events folded by kind (one handler
per kind, ``_HANDLERS``) and the series the report derives from them. The journal is
read with ``cosearch.jsonl.read`` without ``strict``: a report of a damaged journal
shows what can be read and says what was skipped. ``load_compare(compare_dir)``
reads ``compare.json`` into a ``CompareData``. Nothing here draws or writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosearch import jsonl
from cosearch.errors import CosearchError, first_line
from cosearch.search.journal import VERSION as JOURNAL_VERSION
from cosearch.search.pareto import Objectives, accuracy_label, dominated


def num(v: Any) -> float:
    """``float(v)``, or NaN for ``None``, booleans and anything not a number."""
    if isinstance(v, bool) or v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def finite(*vals: float) -> bool:
    return all(math.isfinite(v) for v in vals)


def folder(path: Path | str, what: str) -> Path:
    """``path`` as a ``Path``; ``CosearchError`` when it is not a folder (``what`` says which kind)."""
    path = Path(path)
    if not path.is_dir():
        raise CosearchError(f"report: {str(path)!r} is not a folder (expected a {what} folder)")
    return path


def read_json(path: Path, notes: list[str]) -> dict | None:
    """The JSON object in ``path``, or None with a note saying why not."""
    if not path.exists():
        notes.append(f"{path.name} is missing.")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} is unreadable ({type(e).__name__}: {first_line(e) if str(e).strip() else ''}).")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.name} does not hold a JSON object.")
        return None
    return data


def read_events(path: Path, notes: list[str]) -> list[dict]:
    """The journal's events of this version; damaged, event-less, other-version lines and a
    torn last line are skipped and counted in ``notes``."""
    if not path.exists():
        notes.append("journal.jsonl is missing: no plots over time, no decisions.")
        return []
    try:
        lines = jsonl.read(path)
    except CosearchError as e:
        notes.append(f"journal.jsonl is unreadable ({e}).")
        return []
    if lines.torn_tail:
        notes.append("The journal's last line is torn (the run was killed while writing it); it is ignored.")
    bad, other_version, events = len(lines.damaged), 0, []
    for ev in lines:
        if "event" not in ev:
            bad += 1
        elif ev.get("v") != JOURNAL_VERSION:
            other_version += 1
        else:
            events.append(ev)
    if bad:
        notes.append(f"{bad} malformed journal line(s) ignored.")
    if other_version:
        notes.append(f"{other_version} journal line(s) of another version than v={JOURNAL_VERSION} ignored.")
    return events


# ============================================================================ a run
@dataclass
class RunData:
    """A run folder as the report sees it (see ``load_run``)."""

    run_dir: Path
    notes: list[str] = field(default_factory=list)
    config: dict | None = None
    result: dict | None = None
    events: list[dict] = field(default_factory=list)
    objectives: Objectives | None = None
    label: str = "accuracy estimate"  # the accuracy axis' name (``pareto.accuracy_label``)
    arch: dict[str, Any] = field(default_factory=dict)
    n_proposed: int = 0
    acc: dict[str, list[tuple[str, float, float]]] = field(default_factory=lambda: defaultdict(list))
    pred: dict[str, list[tuple[float, str, float]]] = field(default_factory=lambda: defaultdict(list))
    last_pred: dict[str, tuple[float, str]] = field(default_factory=dict)  # latest prediction so far
    measured: dict[str, float] = field(default_factory=dict)  # last successful measurement
    measures: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))  # (t, ms)
    pairs: list[tuple[str, float, float, str]] = field(default_factory=list)  # key, pred, measured, source
    paired: set[str] = field(default_factory=set)  # keys of ``pairs``
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
        out = []
        for p in self.fronts[-1][2] if self.fronts else []:
            if isinstance(p, (list, tuple)) and len(p) >= 2:
                key = p[2] if len(p) > 2 else None
                out.append({"key": key, "arch": self.arch.get(key), "accuracy": p[0], "latency_ms": p[1]})
        return out

    def final_hv(self) -> float:
        """The final normalised hypervolume (result.json's, else the last ``front`` event's)."""
        if self.result is not None and math.isfinite(num(self.result.get("hypervolume"))):
            return num(self.result.get("hypervolume"))
        return self.fronts[-1][1] if self.fronts else math.nan

    def hv_shown(self, hv: float) -> float:
        """A normalised hypervolume as the report shows it: in the objectives' own units."""
        return self.objectives.area(hv) if self.objectives is not None else hv

    @property
    def hv_units(self) -> str:
        return self.objectives.area_units if self.objectives is not None else "normalised"


def _label_of(config: dict | None, result: dict | None) -> str:
    """The accuracy axis' name of a run whose objectives do not carry one (older runs)."""
    spec = ((config or {}).get("search") or {}).get("estimator")
    if not isinstance(spec, str):
        spec = (config or {}).get("estimator")
    if isinstance(spec, str):
        return accuracy_label(spec)
    fid = (result or {}).get("accuracy_fidelity")
    if isinstance(fid, str):
        return "validation accuracy" if fid.startswith("train:") else accuracy_label(fid)
    return "accuracy estimate"


def _read_objectives(run: RunData) -> None:
    run.label = _label_of(run.config, run.result)
    for src in (run.result, run.config):
        if src is not None and isinstance(src.get("objectives"), dict):
            try:
                obj = Objectives.from_dict(src["objectives"])
            except CosearchError as e:
                run.notes.append(f"Objectives unusable: {e}.")
                continue
            if "accuracy_label" not in src["objectives"]:
                obj = dataclasses.replace(obj, accuracy_label=run.label)
            run.objectives, run.label = obj, obj.accuracy_label
            return
    run.notes.append("No objectives (reference point) found: the reference box is not drawn.")


# ---------------------------------------------------------------------------- journal handlers
def _on_start(run: RunData, ev: dict, key: str | None, t: float) -> None:
    run.starts += 1


def _on_propose(run: RunData, ev: dict, key: str | None, t: float) -> None:
    if key is not None:
        run.n_proposed += 1
        run.arch.setdefault(key, ev.get("arch"))


def _on_accuracy(run: RunData, ev: dict, key: str | None, t: float) -> None:
    if key is None:
        return
    v = num(ev.get("value"))
    if math.isfinite(v):
        run.acc[key].append((str(ev.get("fidelity", "?")), v, t))
    if ev.get("fidelity") == "screen" and math.isfinite(num(ev.get("pred"))):
        run.acc[key].append(("predicted", num(ev.get("pred")), t))
    if ev.get("fidelity") == "train":
        run.trains.append(ev)


def _on_latency_pred(run: RunData, ev: dict, key: str | None, t: float) -> None:
    ms = num(ev.get("ms"))
    if key is not None and math.isfinite(ms):
        run.pred[key].append((ms, str(ev.get("source", "?")), t))
        run.last_pred[key] = (ms, str(ev.get("source", "?")))


def _on_measure(run: RunData, ev: dict, key: str | None, t: float) -> None:
    ms = num(ev.get("ms"))
    if key is None or not (ev.get("ok", True) and math.isfinite(ms) and ms > 0):
        return
    run.measured[key] = ms
    run.measures[key].append((t, ms))
    if key not in run.paired:  # the prediction made before the first measurement
        p = num(ev.get("pred_ms"))
        last = run.last_pred.get(key, (math.nan, "?"))
        if not math.isfinite(p):
            p = last[0]
        if math.isfinite(p) and p > 0:
            run.pairs.append((key, p, ms, last[1]))
            run.paired.add(key)


def _on_front(run: RunData, ev: dict, key: str | None, t: float) -> None:
    hv = num(ev.get("hypervolume"))
    pts = ev.get("points") if isinstance(ev.get("points"), list) else []
    if finite(t, hv):
        run.fronts.append((t, hv, pts))


def _on_done(run: RunData, ev: dict, key: str | None, t: float) -> None:
    run.done = ev


def _collect(name: str):
    def handler(run: RunData, ev: dict, key: str | None, t: float) -> None:
        getattr(run, name).append(ev)
    return handler


_HANDLERS = {
    "start": _on_start, "propose": _on_propose, "accuracy": _on_accuracy, "latency_pred": _on_latency_pred,
    "measure": _on_measure, "front": _on_front, "done": _on_done, "stop_arch": _collect("stop_arch"),
    "stop_task": _collect("stop_task"), "fail": _collect("fails"), "tune": _collect("tunes"),
}


def load_run(run_dir: Path) -> RunData:
    """Read a run folder (see the module's docstring); ``CosearchError`` when none of its files is readable."""
    run = RunData(run_dir)
    run.config = read_json(run_dir / "config.json", run.notes)
    run.result = read_json(run_dir / "result.json", run.notes)
    run.events = read_events(run_dir / "journal.jsonl", run.notes)
    if run.config is None and run.result is None and not run.events:
        raise CosearchError(
            f"{run_dir} is not a search run folder: none of config.json, result.json, journal.jsonl is readable"
        )
    _read_objectives(run)
    for ev in run.events:
        kind = ev.get("event")
        t = num(ev.get("t"))
        if math.isfinite(t):
            run.times[str(kind)].append(t)
            run.t_end = t if not math.isfinite(run.t_end) else max(run.t_end, t)
        key = str(ev["key"]) if ev.get("key") is not None else None
        handler = _HANDLERS.get(str(kind))
        if handler is not None:
            handler(run, ev, key, t)
    if run.result is not None:
        for k in ("pareto", "hypervolume", "evaluated", "stopped_early", "trials", "wall_s"):
            if k not in run.result:
                run.notes.append(f"result.json has no {k!r}.")
    return run


# ============================================================================ derived series
def latency_errors(pairs: list[tuple[str, float, float, str]]) -> dict[str, float]:
    """Relative error |predicted − measured| / measured (median, max) and median measured / predicted."""
    rel = [abs(p - m) / m for _, p, m, _ in pairs]
    ratio = [m / p for _, p, m, _ in pairs]
    return {
        "n": len(pairs),
        "median": statistics.median(rel) if rel else math.nan,
        "max": max(rel) if rel else math.nan,
        "ratio": statistics.median(ratio) if ratio else math.nan,
    }


def error_groups(pairs: list[tuple[str, float, float, str]]) -> list[tuple[str, dict[str, float]]]:
    """``latency_errors`` of all pairs, then per prediction source (when there are several)."""
    sources = sorted({p[3] for p in pairs})
    groups = [("all", pairs)] + ([(s, [p for p in pairs if p[3] == s]) for s in sources] if len(sources) > 1 else [])
    return [(name, latency_errors(ps)) for name, ps in groups]


def fidelities(run: RunData) -> dict[str, dict[str, float]]:
    """Per accuracy fidelity, the latest value of every architecture."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for k, vals in run.acc.items():
        for fid, v, _ in vals:
            out[fid][k] = v
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman rank correlation (scipy; NaN for fewer than 3 points or constant input)."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


def train_prediction_pairs(run: RunData) -> list[tuple[float, float, int]]:
    """(predicted final, final, epochs seen) of every decision of a completed training run."""
    out = []
    for e in run.trains:
        final = num(e.get("final"))
        if e.get("stopped") or not math.isfinite(final):
            continue
        for d in e.get("decisions") or []:
            p = num(d.get("predicted")) if isinstance(d, dict) else math.nan
            if math.isfinite(p):
                out.append((p, final, int(num(d.get("epoch"))) if finite(num(d.get("epoch"))) else 0))
    return out


def checked_stops(run: RunData) -> list[tuple[bool, bool | None]]:
    """Architectures stopped early and measured later: (optimistic latency ≤ the later measurement,
    dominated by the final front or None when its accuracy is unknown)."""
    final_front = [(num(p.get("accuracy")), num(p.get("latency_ms"))) for p in run.pareto()]
    out = []
    for e in run.stop_arch:
        k = str(e.get("key"))
        later = [ms for t, ms in run.measures.get(k, []) if t >= num(e.get("t"))]
        if later:
            ms = later[-1]
            a = run.accuracy(k)[0]
            out.append((num(e.get("lat_opt_ms")) <= ms, dominated((a, ms), final_front) if finite(a) else None))
    return out


def stopped_task_gains(run: RunData) -> list[tuple[float, float]]:
    """Tuning tasks stopped early and tuned later: (predicted gain, real gain) in µs."""
    gains = []
    for e in run.stop_task:
        w = e.get("workload")
        for tv in run.tunes:
            if num(tv.get("t")) >= num(e.get("t")) and w in (tv.get("workloads") or []) \
                    and finite(num(tv.get("gain_us"))):
                gains.append((num(e.get("gain_pred_us")), num(tv.get("gain_us"))))
    return gains


def training_totals(run: RunData) -> dict[str, float]:
    """The training rung's counts: trained, stopped, epochs run / planned, seconds."""
    return {
        "trained": len(run.trains),
        "stopped": sum(1 for e in run.trains if e.get("stopped")),
        "epochs_run": sum(len(e.get("curve") or []) for e in run.trains),
        "epochs_planned": sum(int(num(e.get("epochs"))) for e in run.trains if finite(num(e.get("epochs")))),
        "seconds": sum(num(e.get("seconds")) for e in run.trains if finite(num(e.get("seconds")))),
    }


def tuning_trials(run: RunData) -> float:
    """result.json's trial count, else the journal's ``tune`` events' sum (NaN without either)."""
    res = run.result or {}
    if "trials" in res:
        return num(res["trials"])
    if run.tunes:
        return sum(num(t.get("trials")) for t in run.tunes if finite(num(t.get("trials"))))
    return math.nan


# ============================================================================ a comparison
@dataclass
class CompareData:
    """``compare.json`` as the compare report sees it (see ``load_compare``)."""

    compare_dir: Path
    data: dict
    strategies: dict[str, dict]
    objectives: Objectives | None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.objectives.accuracy_label if self.objectives is not None else "accuracy estimate"

    def hv_shown(self, hv: float) -> float:
        return self.objectives.area(hv) if self.objectives is not None else hv

    @property
    def hv_units(self) -> str:
        return self.objectives.area_units if self.objectives is not None else "normalised"

    def table(self, key: str) -> dict:
        """``time_to_95`` / ``time_to_99``: per strategy (an empty dict when not a dict)."""
        v = self.data.get(key)
        return v if isinstance(v, dict) else {}

    def front(self, name: str) -> list[dict]:
        s = self.strategies.get(name, {})
        return [p for p in s["pareto"] if isinstance(p, dict)] if isinstance(s.get("pareto"), list) else []


def load_compare(compare_dir: Path) -> CompareData:
    """Read ``compare.json``; ``CosearchError`` when it is missing or not a JSON object."""
    notes: list[str] = []
    data = read_json(compare_dir / "compare.json", notes)
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
    return CompareData(compare_dir, data, strategies, obj, notes)
