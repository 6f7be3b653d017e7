"""Library entry points behind ``cosearch search`` / ``cosearch compare``.

``prepare(cfg, out, ...)`` validates everything cheap before any work (space,
estimator, target, out folder, schedules folder) and returns the pieces;
``calibrate_objectives`` fixes the reference point; ``run_search`` /
``resume_search`` run a folder to its end.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosearch.errors import CosearchError, first_line
from cosearch.search import pareto
from cosearch.search.evaluator import Evaluator
from cosearch.search.config import SearchConfig
from cosearch.distributed.pool import Parallel, WorkPool, opened
from cosearch.search.loop import Search
from cosearch.search.predictors import TaskLatencyPredictor


@dataclass
class Prepared:
    cfg: SearchConfig
    space: Any
    estimator: Any
    target: Any
    schedules: Path
    pool: list[str] | None
    trainer: Any = None  # cosearch.estimate.train.TrainEstimator of the training rung (--estimator X+train)


def is_search_dir(p: Path) -> bool:
    try:
        cfg = json.loads((Path(p) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("command") == "search" and "search" in cfg


def check_out(out: Path) -> Path:
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise CosearchError(f"--out {str(out)!r} is a file; expected a new or empty folder")
        if any(out.iterdir()):
            if is_search_dir(out):
                raise CosearchError(f"--out {str(out)!r} holds a search already; continue it with --resume {out}")
            raise CosearchError(f"--out {str(out)!r} holds something else; give a new or empty folder")
    from cosearch.fsio import creatable

    ok, probe = creatable(out)
    if not ok:
        raise CosearchError(f"--out {str(out)!r}: {str(probe)!r} is not writable")
    return out


def table_archs(spec: str, space) -> list[str] | None:
    name, _, path = spec.partition(":")
    if name != "table":
        return None
    archs, keys = [], set()
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            a = space.canonical((row.get("arch") or "").strip())
            k = space.key(a)
            if k not in keys:
                keys.add(k)
                archs.append(a)
    return archs


def prepare(cfg: SearchConfig, *, schedules: str | None = None, out: Path | None = None,
            check_out_dir: bool = True, with_trainer: bool = True) -> Prepared:
    from cosearch.estimate import create_estimator
    from cosearch.space import create_space

    space = create_space(cfg.space, **cfg.space_settings)
    screen = cfg.screen_estimator
    estimator = create_estimator(screen, seed=cfg.seed) if screen != "synthetic" else None
    if screen == "synthetic" and cfg.evaluator != "fake":
        raise CosearchError("estimator 'synthetic' exists only with the test evaluator (--evaluator fake)")
    pool = table_archs(screen, space)
    replay = replay_path(cfg)
    if replay is not None:
        pool = replay_pool(replay, space, pool, screen)
        if cfg.train_rung:
            raise CosearchError("the training rung is not replayed from a benchmark; with --evaluator replay:BENCH "
                                "give a cheap estimator or a table:CSV oracle")
    if cfg.train_pareto or cfg.train_rung:
        from cosearch.train.data import check_spec

        check_spec(cfg.train_data)  # a bad --train-data fails now, not after the search
    trainer = None
    if cfg.train_rung and cfg.evaluator != "fake" and with_trainer:  # a worker only screens: no trainer
        trainer = make_trainer(cfg, space)
    target = None
    if cfg.evaluator == "engine":
        from cosearch.compile.engine import default_schedules_dir
        from cosearch.compile.target import load_target

        target = load_target(cfg.target)
        sched = Path(schedules) if schedules else default_schedules_dir(target)
    else:
        if out is None and schedules is None:
            raise CosearchError(f"the {cfg.evaluator.split(':')[0]} evaluator needs --schedules or --out")
        sched = Path(schedules) if schedules else Path(out) / ("replay-state" if replay else "fake-schedules")
    if sched.exists() and not sched.is_dir():
        raise CosearchError(f"--schedules {str(sched)!r} is a file; expected a directory (created if missing)")
    if out is not None and check_out_dir:
        check_out(out)
    return Prepared(cfg, space, estimator, target, sched, pool, trainer)


#: the data split of the training rung and of --train-pareto: fixed, so that searches with different
#: ``--seed`` (weights, batch order, proposals) share one split and one learning-curve sample store
SPLIT_SEED = 0


def make_trainer(cfg: SearchConfig, space):
    """The training rung's estimator; checks now (before any work) that the dataset loads and
    fits the space's networks (input shape, class count): a mismatch is one line, exit 2."""
    from cosearch.estimate.train import TrainEstimator
    from cosearch.train.trainer import check_fits

    trainer = TrainEstimator(epochs=cfg.train_epochs, data=cfg.train_data, seed=cfg.seed, limit=cfg.train_limit,
                             split_seed=SPLIT_SEED)
    arch = space.canonical(space.sample(np.random.default_rng([cfg.seed, 5])))
    check_fits(space, arch, trainer.data_for(space, arch))
    return trainer


def replay_path(cfg: SearchConfig) -> str | None:
    """BENCH of ``--evaluator replay:BENCH``, else None."""
    from cosearch.cobench.replay import parse_replay

    return parse_replay(cfg.evaluator)


def replay_pool(bench_path: str, space, table_pool: list[str] | None, screen: str) -> list[str]:
    """The architectures a replayed search may propose: the benchmark's measured ones (with a
    ``table:`` estimator, those the table also holds)."""
    from cosearch.cobench.store import open_bench

    bench = open_bench(bench_path)
    if space.config() != bench.space_config:
        raise CosearchError(f"the benchmark {bench_path!r} is of space {bench.space_config}; this search asks for "
                            f"{space.config()} (give --space / --space-opt to match)")
    archs = [a.arch for a in bench.measured()]
    if table_pool is not None:
        keys = {space.key(a) for a in table_pool}
        archs = [a for a in archs if space.key(a) in keys]
        if not archs:
            raise CosearchError(f"no architecture of the benchmark {bench_path!r} is in the estimator's table "
                                f"({screen}); the table must cover the benchmark's architectures")
    if not archs:
        raise CosearchError(f"the benchmark {bench_path!r} has no measured architecture yet (cosearch bench info)")
    return archs


def make_evaluator(p: Prepared, *, run_dir: Path | None = None, schedules: Path | None = None) -> Evaluator:
    sched = Path(schedules) if schedules is not None else p.schedules
    bench = replay_path(p.cfg)
    if bench is not None:
        from cosearch.cobench.replay import ReplayEvaluator

        return ReplayEvaluator(p.space, p.estimator, bench, schedules_dir=sched, seed=p.cfg.seed)
    if p.cfg.evaluator == "fake":
        from cosearch.search.testing import FakeEvaluator

        return FakeEvaluator(p.space, p.estimator, schedules_dir=sched, seed=p.cfg.seed, train_epochs=p.cfg.train_epochs)
    from cosearch.compile.target.binding import bind_database
    from cosearch.search.engine_evaluator import EngineEvaluator

    bind_database(sched, p.target)  # a database tuned on another CPU is refused, never silently reused
    ev = EngineEvaluator(p.space, p.estimator, p.target, schedules_dir=sched, seed=p.cfg.seed, log_dir=run_dir)
    ev.trainer = p.trainer
    return ev


def worker_evaluator(search: dict[str, Any], schedules: str) -> Evaluator:
    """The driver's evaluator, rebuilt in a worker (``distributed.screen``) from the run's resolved
    search config and schedule database (no training rung: a worker only screens)."""
    p = prepare(SearchConfig(**search), schedules=schedules, check_out_dir=False, with_trainer=False)
    return make_evaluator(p)


def calibrate_objectives(p: Prepared, ev: Evaluator) -> tuple[pareto.Objectives, dict[str, Any]]:
    """The reference point, fixed before the run (identical for every strategy of a compare).

    A seeded sample of ``cfg.calibration_archs`` architectures (from the table's
    archs for ``table:``) is scored by the full estimator and compiled + measured
    against the *starting* schedule database. accuracy_ref = lowest sample score
    (``table:``: lowest table score), accuracy_best = highest + 10 % of the range;
    latency_ref_ms = 1.5 x the slowest sample measurement, latency_best_ms = 0.
    With the training rung the accuracy axis is trained validation accuracy:
    accuracy_ref = chance (1 / classes), accuracy_best = 1 (nothing is trained for it).
    """
    cfg = p.cfg
    rng = np.random.default_rng([cfg.seed, 3])
    n = cfg.calibration_archs
    if p.pool:
        idx = rng.choice(len(p.pool), size=min(n, len(p.pool)), replace=False)
        sample = [p.pool[int(i)] for i in idx]
    else:
        sample, keys = [], set()
        for _ in range(50 * n):
            a = p.space.sample(rng)
            if p.space.key(a) not in keys:
                keys.add(p.space.key(a))
                sample.append(a)
            if len(sample) >= n:
                break
    scores, lats = [], []
    for a in sample:
        if not cfg.train_rung:
            scores.append(ev.accuracy(a)[0])
        m = ev.measure(a)
        if m.ok:
            lats.append(m.ms)
    if cfg.train_rung:
        classes = int(getattr(p.space, "num_classes", 10) or 10)
        lo, hi = 1.0 / classes, 1.0
    elif p.pool and p.estimator is not None:
        table = [ev.accuracy(a)[0] for a in p.pool]
        lo, hi = min(table), max(table)
    else:
        lo, hi = min(scores), max(scores)
        hi = hi + 0.1 * (hi - lo)
    if not hi > lo:
        hi = lo + 1.0
    if not lats:
        # nothing measured (all failed): fall back on the predicted untuned kernel sum
        for a in sample:
            plan = ev.plan(a)
            lats.append(sum(t.weight * TaskLatencyPredictor.heuristic_us(t, 0) for t in plan.tasks) / 1000)
    obj = pareto.Objectives(accuracy_ref=float(lo), accuracy_best=float(hi), latency_ref_ms=1.5 * max(lats),
                            latency_best_ms=0.0, accuracy_label=pareto.accuracy_label(cfg.estimator))
    info = {"archs": sample, "scores": scores, "latency_ms": lats,
            "rule": ("acc (trained) ref=chance, best=1" if cfg.train_rung else
                     "acc ref=min, best=max+10% range (table: table min/max)") + "; lat ref=1.5x slowest, best=0"}
    return obj, info


def run_search(cfg: SearchConfig, out: Path, *, schedules: str | None = None, objectives: pareto.Objectives | None = None,
               calibration: dict | None = None, progress: bool = True, command: list[str] | None = None,
               prepared: Prepared | None = None, parallel: Parallel | WorkPool | None = None) -> dict[str, Any]:
    """A search from the start. ``parallel``: where screening runs (``distributed.pool``), opened
    before anything is written (a Ray cluster that cannot be reached is one error, no folder)."""
    p = prepared or prepare(cfg, schedules=schedules, out=out)
    out = Path(out)
    with opened(parallel) as work:
        out.mkdir(parents=True, exist_ok=True)
        ev = make_evaluator(p, run_dir=out)
        if objectives is None:
            objectives, calibration = calibrate_objectives(p, ev)
            ev.restart_clock()  # the calibration is outside the run's clock
        extra = {"argv": command or [], "calibration": calibration or {},
                 "target": p.target.to_dict() if p.target is not None else None}
        result = _drive(p, ev, out, objectives, extra, resume=False, progress=progress, work=work)
    return train_front(out, cfg, result, progress=progress)


def train_front(out: Path, cfg: SearchConfig, result: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Train the ``cfg.train_pareto`` front points of highest accuracy estimate (after the search).

    Each is trained with ``cosearch.train.deploy.train_artifact`` (``cfg.train_epochs``
    epochs on ``cfg.train_data``, seed ``cfg.seed``; recompiled with the search's schedule
    database, nothing tuned) into ``DIR/trained/<i>/`` (``i`` = the row of ``result.json``'s
    ``pareto`` and of ``DIR/pareto/<i>``), then journalled as a ``train`` event; a failure
    is a ``fail`` event with stage ``train`` and the rest goes on. Points with a ``train``
    event already (an earlier session) are not retrained. ``result.json`` gets, per
    Pareto point, ``trained``: {artifact, tvm_heldout, torch_heldout} or null.
    """
    import shutil
    import sys
    import time

    from cosearch.search.journal import Journal, read_journal
    from cosearch.fsio import atomic_write_json

    out = Path(out)
    points = [p for p in result.get("pareto", []) if isinstance(p, dict)]
    events = read_journal(out / "journal.jsonl")
    done = {e["key"]: e for e in events if e.get("event") == "train" and e.get("key")}
    order = sorted(range(len(points)), key=lambda i: (-float(points[i].get("accuracy") or float("-inf")),
                                                      float(points[i].get("latency_ms") or float("inf"))))
    todo = [i for i in order[:cfg.train_pareto] if points[i].get("key") not in done]
    if todo:
        from cosearch.train.deploy import train_artifact
        from cosearch.train.trainer import TrainConfig

        conf = json.loads((out / "config.json").read_text())
        tcfg = TrainConfig(epochs=cfg.train_epochs, seed=cfg.seed)
        last_t = max((float(e.get("t") or 0.0) for e in events), default=0.0)
        with Journal(out, t0_offset=last_t) as j:
            for i in todo:
                pt = points[i]
                dest = out / "trained" / str(i)
                if dest.exists():  # a session killed after writing, before journalling
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if progress:
                    print(f"cosearch search: training pareto/{i} ({cfg.train_epochs} epochs on {cfg.train_data})",
                          file=sys.stderr)
                t0 = time.perf_counter()
                try:
                    tr = train_artifact(str(out / str(pt.get("artifact") or f"pareto/{i}")), out=dest,
                                        data=cfg.train_data, config=tcfg, target=cfg.target,
                                        schedules=conf.get("schedules"), split_seed=SPLIT_SEED, limit=cfg.train_limit)
                except Exception as e:  # noqa: BLE001 - one failed training never ends the run
                    msg = first_line(e)
                    j.write("fail", key=pt.get("key"), stage="train", error=msg)
                    if progress:
                        print(f"cosearch search: warning: training pareto/{i} failed: {msg}", file=sys.stderr)
                    continue
                acc = tr.accuracy
                done[pt.get("key")] = j.write(
                    "train", key=pt.get("key"), arch=pt.get("arch"), accuracy_estimate=pt.get("accuracy"),
                    tvm_heldout=acc.get("tvm_heldout"), torch_heldout=acc.get("torch_heldout"),
                    agreement=acc.get("agreement"), epochs=acc.get("epochs"),
                    dataset=(acc.get("dataset") or {}).get("dataset"), seconds=round(time.perf_counter() - t0, 3),
                    artifact=f"trained/{i}")
    changed = False
    for pt in points:
        e = done.get(pt.get("key"))
        tr = {"artifact": e.get("artifact"), "tvm_heldout": e.get("tvm_heldout"),
              "torch_heldout": e.get("torch_heldout")} if e else None
        if pt.get("trained", "absent") != tr:
            pt["trained"] = tr
            changed = True
    if changed:
        on_disk = json.loads((out / "result.json").read_text())
        on_disk["pareto"] = points
        atomic_write_json(out / "result.json", on_disk)
    return result


def _drive(p: Prepared, ev: Evaluator, out: Path, objectives, extra, *, resume: bool, progress: bool,
           work: WorkPool):
    import contextlib

    from cosearch.progress import ProgressDisplay

    cfg = p.cfg
    total = cfg.budget_s if cfg.budget_s is not None else cfg.max_archs
    unit = "s" if cfg.budget_s is not None else "archs"
    disp = ProgressDisplay(f"search {cfg.strategy}", total=float(total), unit=unit) if progress else None
    with disp or contextlib.nullcontext():
        extra = {**extra, "workers": work.describe()}
        s = Search(cfg, out, ev, schedules_dir=p.schedules, objectives=objectives, config_extra=extra,
                   progress=disp, pool=p.pool, resume=resume, work=work, worker_factory=worker_evaluator)
        return s.run()


def resume_search(out: Path, *, cfg: SearchConfig | None = None, progress: bool = True,
                  parallel: Parallel | WorkPool | None = None) -> dict[str, Any]:
    out = Path(out)
    if not out.is_dir() or not is_search_dir(out):
        raise CosearchError(f"--resume {str(out)!r} is not a search folder (no config.json of a search)")
    conf = json.loads((out / "config.json").read_text())
    try:
        stored = SearchConfig(**conf["search"])
    except (TypeError, CosearchError) as e:
        raise CosearchError(f"--resume {str(out)!r}: its config.json is not readable by this version ({e})") from None
    if cfg is not None and cfg.hash() != stored.hash():
        diff = [k for k, v in cfg.to_dict().items() if stored.to_dict().get(k) != v]
        raise CosearchError(f"--resume {str(out)!r} was started with other settings ({', '.join(diff)} differ)")
    if cfg is not None:  # the post-search training settings may change on resume (not in the hash)
        from dataclasses import replace

        from cosearch.fsio import atomic_write_json
        from cosearch.search.config import TRAIN_FIELDS

        new = replace(stored, **{k: getattr(cfg, k) for k in TRAIN_FIELDS})
        if new != stored:
            stored = new
            atomic_write_json(out / "config.json", conf | {"search": stored.to_dict()})
    from cosearch.search.journal import read_journal

    if any(ev.get("event") == "result" for ev in read_journal(out / "journal.jsonl")) and (out / "result.json").exists():
        result = json.loads((out / "result.json").read_text())
        return train_front(out, stored, result, progress=progress) | {"already_complete": True}
    p = prepare(stored, schedules=conf.get("schedules"), out=out, check_out_dir=False)
    with opened(parallel) as work:
        ev = make_evaluator(p, run_dir=out)
        obj = pareto.Objectives.from_dict(conf["objectives"])
        result = _drive(p, ev, out, obj, {}, resume=True, progress=progress, work=work)
    return train_front(out, stored, result, progress=progress)


def write_report_safe(out: Path) -> tuple[Path | None, str | None]:
    try:
        from cosearch.search.report import write_report
    except ImportError as e:
        return None, f"report module unavailable: {e}"
    try:
        return write_report(Path(out)), None
    except Exception as e:  # noqa: BLE001 - the search result stands without its report
        return None, f"report failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def _hypervolume_line(result: dict[str, Any]) -> tuple[str, str]:
    """(the accuracy axis' name, the hypervolume sentence): the hypervolume in the objectives' own
    units (``Objectives.area``; the normalised value has no upper bound, see ``pareto``)."""
    hv = result.get("hypervolume", 0.0) or 0.0
    try:
        obj = pareto.Objectives.from_dict(result.get("objectives"))
    except CosearchError:
        return "accuracy", f"hypervolume {hv:.4f} (normalised to the run's reference box)"
    area = obj.area(hv)
    return obj.accuracy_label, (f"hypervolume {area:,.0f}" if abs(area) >= 1000 else f"hypervolume {area:.4g}") + (
        f" {obj.area_units}: the area the front dominates up to the reference point "
        f"({obj.accuracy_label} {obj.accuracy_ref:.4g}, {obj.latency_ref_ms:.4g} ms)")


def summary_text(out: Path, result: dict[str, Any], report: Path | None) -> str:
    label, hv_line = _hypervolume_line(result)
    lines = [f"search {result.get('strategy')}: {result.get('proposed')} proposed, {result.get('evaluated')} evaluated, "
             f"{result.get('stopped_early')} stopped early, {result.get('failed')} failed, {result.get('trials')} "
             f"tuning trials, {result.get('wall_s', 0):.1f} s", hv_line]
    w = max(9, len(label))
    lines.append(f"{'#':>2}  {label:>{w}}  {'latency ms':>10}  arch")
    for i, r in enumerate(result.get("pareto", [])):
        acc = r.get("accuracy")
        lat = r.get("latency_ms")
        lines.append(f"{i:>2}  {'-' if acc is None else f'{acc:.3f}':>{w}}  {lat if lat is None else f'{lat:10.4f}'}  "
                     f"{r['arch']}")
    trained = [(i, r["trained"]) for i, r in enumerate(result.get("pareto", [])) if r.get("trained")]
    if trained:
        lines.append(f"trained: {'#':>2}  {'TVM held-out':>12}  {'torch held-out':>14}  artifact")
        for i, t in trained:
            tvm, tch = t.get("tvm_heldout"), t.get("torch_heldout")
            lines.append(f"         {i:>2}  {'-' if tvm is None else f'{tvm:12.4f}':>12}  "
                         f"{'-' if tch is None else f'{tch:14.4f}':>14}  {out / str(t.get('artifact'))}")
    fc = result.get("front_vs_converged") or {}
    if fc.get("median"):
        lines.append(f"front vs converged (predicted): kernels {fc['median']:.2f}x (median, worst {fc['max']:.2f}x) "
                     f"what {fc['trials_per_task']} trials per task would reach; optimistic {fc['median_vs_optimistic']:.2f}x")
    cal = result.get("latency_calibration", {})
    if cal.get("n"):
        lines.append(f"latency calibration: ms = {cal['a']:.3g} x kernel sum + {cal['b']:.3g} "
                     f"(n={cal['n']}, online error {cal.get('mape_online', float('nan')):.1%})")
    lines.append(f"result: {out / 'result.json'}; journal: {out / 'journal.jsonl'}; artifacts: {out / 'pareto'}/<i>")
    if report is not None:
        lines.append(f"report: {report}")
    if result.get("pareto") and not (out / "pareto" / "0" / "REPLAY.json").exists():  # a replay compiles nothing
        lines.append(f"run one: cosearch run {out / 'pareto' / '0'}")
    return "\n".join(lines)


__all__ = ["prepare", "run_search", "resume_search", "train_front", "calibrate_objectives", "check_out",
           "summary_text", "write_report_safe", "is_search_dir"]
