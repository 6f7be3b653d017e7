"""``cosearch compare``: the strategies side by side at the same wall budget.

Protocol (docs/search.md): the reference point (``Objectives``) is fixed once,
before any strategy runs, by ``api.calibrate_objectives`` on the *starting*
schedule database, and is identical for every strategy. Each strategy then runs
in ``DIR/<strategy>/`` with its own COPY of the starting schedule database
(``DIR/<strategy>/schedules/``), so no strategy profits from another's tuning.
``DIR/compare.json`` holds per strategy the final hypervolume, wall time, the
hypervolume-over-time curve (from the journal's ``front`` events) and the final
front with artifact paths relative to ``DIR``; plus the time joint needs to
reach 95 % / 99 % of the best final hypervolume of all strategies.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from cosearch.errors import CosearchError
from cosearch.fsio import atomic_write_json
from cosearch.search import api, pareto
from cosearch.search.journal import read_journal
from cosearch.search.config import SearchConfig
from cosearch.search.strategies import STRATEGIES


def parse_strategies(text: str) -> list[str]:
    out = [s.strip() for s in str(text).split(",") if s.strip()]
    bad = [s for s in out if s not in STRATEGIES]
    if not out or bad:
        raise CosearchError(f"--strategies: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(STRATEGIES.names())}")
    if len(set(out)) != len(out):
        raise CosearchError(f"--strategies lists a strategy twice: {text!r}")
    return out


def curve(run_dir: Path) -> list[list[float]]:
    pts = [[0.0, 0.0]]
    for ev in read_journal(Path(run_dir) / "journal.jsonl"):
        if ev.get("event") == "front" and ev.get("hypervolume") is not None:
            pts.append([float(ev["t"]), float(ev["hypervolume"])])
    return pts


def time_to(c: list[list[float]], level: float) -> float | None:
    for t, h in c:
        if h >= level - 1e-12:
            return t
    return None


def run_compare(base: SearchConfig, strategies: list[str], out: Path, *, schedules: str | None = None,
                progress: bool = True, parallel: Any = None) -> dict[str, Any]:
    """Each strategy from the same starting database and reference point, one after the other
    (``parallel``: where each run's screening goes, ``distributed.pool.Parallel``)."""
    from cosearch.distributed.pool import opened

    out = Path(out)
    api.check_out(out)
    with opened(parallel) as work:  # once for every strategy, before anything is written
        return _compare(base, strategies, out, schedules, progress, work)


def _compare(base: SearchConfig, strategies: list[str], out: Path, schedules: str | None, progress: bool,
             parallel: Any) -> dict[str, Any]:
    p = api.prepare(dataclasses.replace(base, strategy=strategies[0]), schedules=schedules, out=None,
                    check_out_dir=False) if base.evaluator == "engine" else \
        api.prepare(dataclasses.replace(base, strategy=strategies[0]), schedules=schedules or str(out / "start-schedules"),
                    out=out, check_out_dir=False)
    out.mkdir(parents=True, exist_ok=True)
    start = p.schedules
    start.mkdir(parents=True, exist_ok=True)
    # the reference point, once, on the starting database (a scratch copy: calibration must not tune or write)
    scratch = out / ".calibration-schedules"
    shutil.copytree(start, scratch, dirs_exist_ok=True)
    ev = api.make_evaluator(p, schedules=scratch)
    objectives, calib = api.calibrate_objectives(p, ev)
    shutil.rmtree(scratch, ignore_errors=True)
    runs: dict[str, Any] = {}
    for s in strategies:
        cfg = dataclasses.replace(base, strategy=s)
        sdir = out / s
        sched = sdir / "schedules"
        sdir.mkdir(parents=True)
        shutil.copytree(start, sched)
        ps = dataclasses.replace(p, cfg=cfg, schedules=sched)
        res = api.run_search(cfg, sdir, objectives=objectives, calibration=calib, progress=progress, prepared=ps,
                             parallel=parallel)
        api.write_report_safe(sdir)
        runs[s] = {"hypervolume": res["hypervolume"], "hypervolume_search": res.get("hypervolume_search"),
                   "wall_s": res["wall_s"], "curve": curve(sdir), "evaluated": res["evaluated"],
                   "stopped_early": res["stopped_early"], "trials": res["trials"],
                   "pareto": [{"arch": r["arch"], "accuracy": r["accuracy"], "latency_ms": r["latency_ms"],
                               "artifact": f"{s}/{r['artifact']}"} for r in res["pareto"]]}
    best = max(r["hypervolume"] for r in runs.values())
    t95 = {s: time_to(r["curve"], 0.95 * best) for s, r in runs.items()}
    t99 = {s: time_to(r["curve"], 0.99 * best) for s, r in runs.items()}
    truth = truth_block(base, out, runs)
    data = {"version": 1, "reference_point": objectives.to_dict(), "calibration": calib,
            "config": base.to_dict(), "budget_s": base.budget_s, "max_archs": base.max_archs,
            "best_hypervolume": best, "strategies": runs, "time_to_95": t95, "time_to_99": t99,
            "note": "curves: hypervolume of the measured front (search measurements) over journal time; "
                    "final hypervolume: after the full re-measurement of the front"}
    if truth is not None:
        data["truth"] = truth
    atomic_write_json(out / "compare.json", data)
    return data


def truth_block(base: SearchConfig, out: Path, runs: dict[str, Any]) -> dict[str, Any] | None:
    """With ``--evaluator replay:BENCH`` and a ``table:`` estimator (the accuracy oracle): the
    benchmark's true front, and per strategy (added to ``runs[s]["truth"]``) its front's
    hypervolume ratios to it (``cosearch.cobench.score``)."""
    from cosearch.cobench.replay import parse_replay

    bench = parse_replay(base.evaluator)
    if bench is None or not base.screen_estimator.startswith("table:"):
        return None
    from cosearch.cobench.score import Truth

    truth = Truth(bench, base.screen_estimator)
    for s, r in runs.items():
        r["truth"] = truth.score_result(out / s)
    return truth.summary()


def summary_text(out: Path, data: dict[str, Any], report: Path | None) -> str:
    """One line per strategy; the hypervolume in the objectives' own units (``Objectives.area``)."""
    obj = pareto.Objectives.from_dict(data["reference_point"])
    lines = [f"{'strategy':<11} {'hypervolume':>13} {'wall s':>8} {'evaluated':>9} {'stopped':>7} {'trials':>7} "
             f"{'t95 s':>7} {'t99 s':>7}"]
    for s, r in data["strategies"].items():
        t95, t99 = data["time_to_95"].get(s), data["time_to_99"].get(s)
        lines.append(f"{s:<11} {obj.area(r['hypervolume']):>13,.4g} {r['wall_s']:>8.1f} {r['evaluated']:>9} "
                     f"{r['stopped_early']:>7} {r['trials']:>7} {'-' if t95 is None else f'{t95:.1f}':>7} "
                     f"{'-' if t99 is None else f'{t99:.1f}':>7}")
    lines.append(f"hypervolume: {obj.area_units}, the area each front dominates up to the reference point")
    lines.append(f"compare: {out / 'compare.json'}" + (f"; report: {report}" if report else ""))
    return "\n".join(lines)


__all__ = ["run_compare", "parse_strategies", "curve", "time_to", "summary_text"]
