"""The search loop and its three strategies (``joint``, ``sequential``, ``brute``).

See ``docs/search.md`` for the protocol and why. In short, ``Search`` owns the
run folder (journal, config, result, Pareto artifacts), an ``Evaluator``, the
proposer, the predictors and the archive (``Rec`` per isomorphism key), and
each strategy is a method. Everything a strategy decides is journaled first;
``Search.replay`` rebuilds the state from the journal on ``--resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosearch.errors import CosearchError
from cosearch.search import pareto
from cosearch.search import value as V
from cosearch.search.curves import CONVERGED_TRIALS, CurveBook, TaskCurve, curves_from_samples, elements_of
from cosearch.search.evaluator import Evaluator, Plan, Task, TaskState
from cosearch.search.journal import Journal, read_journal
from cosearch.search.predictors import (AccuracyPredictor, Calibration, TaskLatencyPredictor, accuracy_store,
                                        task_store)
from cosearch.search.proposer import Proposer

STRATEGIES = ("joint", "sequential", "brute")
PROXIES = ("flops", "untuned")
RESULT_VERSION = 1
#: generations whose front gain per second the joint search weighs tuning against
#: (``Search.tune_by_value``); None (the default until replays show it pays, docs/search.md):
#: the front is tuned past the cap only when proposals run out
SWITCH_WINDOW: int | None = None
#: the exported front is "finished" when every point's kernel sum is within this share of its
#: predicted converged sum (issue 18: every exported artifact within 10 % of converged)
FINISH_TOLERANCE = 0.10
#: the finish is started early (``Search.finish_due``) only when its predicted cost fits in this
#: share of the budget: a finish that cannot complete would only take the clock from exploring
#: (replayed, docs/search.md)
FINISH_MAX_SHARE = 0.5
#: tasks per tuning call in the finish (one call's set-up shared by them)
FINISH_TASKS_PER_CALL = 8


@dataclass(frozen=True)
class SearchConfig:
    strategy: str = "joint"
    space: str = "nb201"
    space_settings: dict = field(default_factory=dict)
    estimator: str = "naswot"
    target: str = "host"
    budget_s: float | None = None
    max_archs: int | None = None
    seed: int = 0
    latency_max_ms: float | None = None
    proxy: str = "flops"  # sequential only
    subset: int | None = None  # brute only
    trials_per_task: int = 32  # full per-task tuning budget
    tune_batch: int = 8  # trials per task and tuning step (joint)
    population: int = 16  # NSGA-II population
    evaluator: str = "engine"  # "fake": FakeEvaluator, for tests only
    calibration_archs: int = 6  # seeded sample fixing the objectives' reference point
    # after the search (not part of the search itself, so not in ``hash()``; see TRAIN_FIELDS)
    train_pareto: int = 0  # train the N front points of highest accuracy estimate (0: off)
    train_epochs: int = 3
    train_data: str = "digits"  # a dataset spec of cosearch.train.data
    train_limit: int | None = None  # seeded subset of at most N images (quick runs, tests)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CosearchError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        if self.proxy not in PROXIES:
            raise CosearchError(f"unknown proxy {self.proxy!r}; valid: {', '.join(PROXIES)}")
        if self.budget_s is None and self.max_archs is None:
            raise CosearchError("give a budget: --budget DURATION (e.g. 30m, 90s) or --max-archs N")
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise CosearchError(f"budget must be a positive duration, got {self.budget_s!r} s")
        for name in ("max_archs", "subset", "trials_per_task", "tune_batch", "population", "calibration_archs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise CosearchError(f"{name} must be a positive integer, got {v!r}")
        if self.latency_max_ms is not None and not self.latency_max_ms > 0:
            raise CosearchError(f"--latency-max-ms must be a positive number, got {self.latency_max_ms!r}")
        for name, lo in (("train_pareto", 0), ("train_epochs", 1), ("train_limit", 3)):
            v = getattr(self, name)
            if v is None and name == "train_limit":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise CosearchError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.train_data, str) or not self.train_data:
            raise CosearchError(f"train_data must be a dataset name or path, got {self.train_data!r}")
        if not isinstance(self.estimator, str) or not self.estimator:
            raise CosearchError(f"estimator must be a name, got {self.estimator!r}")
        if self.estimator == "train" or self.estimator.startswith("train+"):
            raise CosearchError("training is the top rung of the search's accuracy ladder: give a cheap estimator "
                                "before it, e.g. --estimator naswot+train (accepted: ESTIMATOR or ESTIMATOR+train)")
        if "+" in self.screen_estimator or self.estimator.endswith("+") or (
                "+" in self.estimator and not self.train_rung):
            raise CosearchError(f"estimator {self.estimator!r}: accepted ESTIMATOR or ESTIMATOR+train "
                                "(one cheap estimator, optionally followed by the training rung)")

    @property
    def train_rung(self) -> bool:
        """``--estimator X+train``: short real training is the top accuracy fidelity (see docs/search.md)."""
        return self.estimator.endswith(TRAIN_SUFFIX) and len(self.estimator) > len(TRAIN_SUFFIX)

    @property
    def screen_estimator(self) -> str:
        """The cheap estimator (``X`` of ``X+train``)."""
        return self.estimator[: -len(TRAIN_SUFFIX)] if self.train_rung else self.estimator

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """Identity of the *search* (the post-search training settings may change on resume)."""
        skip = ("train_pareto",) if self.train_rung else TRAIN_FIELDS  # the training rung's settings are the search's
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


TRAIN_FIELDS = ("train_pareto", "train_epochs", "train_data", "train_limit")
TRAIN_SUFFIX = "+train"


def parse_duration(text: str) -> float:
    """``"30m"``, ``"90s"``, ``"1h"``, ``"45"`` (seconds) -> seconds; ``CosearchError`` otherwise."""
    from cosearch.cli_args import duration_s

    return duration_s("--budget", text)


@dataclass
class Rec:
    arch: str
    key: str
    n: int
    status: str = "pending"  # pending | evaluated | stopped | failed
    tasks: list[Task] = field(default_factory=list)
    flops: float = 0.0
    acc: float | None = None  # full estimator (with the training rung: trained validation accuracy)
    score: float | None = None  # the cheap estimator's score (training rung only; else it is ``acc``)
    acc_pred: float | None = None
    lat_pred_ms: float | None = None
    ms: float | None = None  # last end-to-end measurement (search measure)
    sum_at_measure: float | None = None  # kernel sum ms when measured
    final_ms: float | None = None
    proxy: float | None = None


def _atomic_json(path: Path, data: Any) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Search:
    """One run folder. ``run()`` executes the configured strategy to its budget, then finalises."""

    def __init__(self, cfg: SearchConfig, out: Path, evaluator: Evaluator, *, schedules_dir: Path,
                 objectives: pareto.Objectives, config_extra: dict[str, Any] | None = None,
                 progress: Any = None, pool: list[str] | None = None, resume: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.ev = evaluator
        self.space = evaluator.space
        self.schedules = Path(schedules_dir)
        self.obj = objectives
        self.progress = progress
        self.pool = pool
        self.archive: dict[str, Rec] = {}
        self.task: dict[str, Task] = {}
        self.state: dict[str, TaskState] = {}
        self.cal = Calibration()
        self.tpred = TaskLatencyPredictor(cfg.seed, task_store(self.schedules))
        # tuning curves: what more trials will give a task (its own history + similar tasks' curves)
        self.book = CurveBook(seed=cfg.seed)
        self.book.curves.update(curves_from_samples(self.tpred.samples))
        self.book.warm = len(self.book.curves)
        self.book.refit()
        self.curve_err: list[tuple[bool, float, bool]] = []  # online: (anchored, log(pred / truth), bound held)
        self.cost = V.CallCost(*evaluator.call_cost_prior)  # seconds of a tuning call: set-up + trials x per-trial, fitted on the run's calls
        space_cfg = self.space.config()
        est_cfg = evaluator.estimator.config() if evaluator.estimator is not None else {"estimator": "synthetic"}
        if cfg.train_rung:  # the accuracy predictor then predicts trained accuracy from (encoding, screen score)
            est_cfg = {"screen": est_cfg, "train": evaluator.train_config(cfg)}
        self.apred = AccuracyPredictor(cfg.seed, accuracy_store(self.schedules, space_cfg, est_cfg))
        self.proposer = Proposer(self.space, seed=cfg.seed, population=cfg.population, pool=pool)
        self.n_proposed = 0
        self.trials = 0
        self.train_seconds = 0.0
        self.epochs_run = 0
        self.epochs_planned = 0
        self.n_train_stopped = 0
        self.stopped_tasks: set[str] = set()
        self.tune_seconds = 0.0
        self.work_seconds = 0.0  # seconds the evaluator reported (plan, accuracy, tune, measure)
        self.deferred: set[str] = set()  # archs stopped by predictions, re-checked at each refine
        self.arch_err: list[float] = []  # log(predicted / measured) of archs' latency predicted before tuning
        self.front_keys: list[str] = []
        self.hv = 0.0
        self.generations: list[tuple[float, float]] = []  # (seconds, front hypervolume gain) of each generation
        self.phase = 1
        self.done = False
        self.out.mkdir(parents=True, exist_ok=True)
        offset = 0.0
        if resume:
            offset = self.replay(read_journal(self.out / "journal.jsonl"))
        else:
            config = {"command": "search", **(config_extra or {}), "search": cfg.to_dict(),
                      "config_hash": cfg.hash(), "objectives": objectives.to_dict(),
                      "schedules": str(self.schedules.absolute()), "evaluator": evaluator.config(),
                      "space": space_cfg, "estimator": est_cfg, "version": 1}
            _atomic_json(self.out / "config.json", config)
        self.j = Journal(self.out, t0_offset=offset, extra_time=evaluator.extra_seconds, wall=evaluator.wall_clock)
        self._sim0 = evaluator.extra_seconds()
        self.j.write("start", resume=resume, config_hash=cfg.hash(), strategy=cfg.strategy)

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return self.j.now()

    def budget_left(self) -> bool:
        if self.cfg.budget_s is not None and self.now() >= self.cfg.budget_s:
            return False
        return True

    def archs_left(self) -> bool:
        return self.cfg.max_archs is None or self.n_proposed < self.cfg.max_archs

    def _update(self, **extra: Any) -> None:
        if self.progress is None:
            return
        c = self.counts()
        done = self.now() if self.cfg.budget_s is not None else self.n_proposed
        self.progress.update(done=done, proposed=self.n_proposed, evaluated=c["evaluated"], stopped=c["stopped"],
                             failed=c["failed"], trials=self.trials, front=len(self.front_keys),
                             hv=round(self.hv, 4), **extra)

    def counts(self) -> dict[str, int]:
        out = {"evaluated": 0, "stopped": 0, "failed": 0, "pending": 0}
        for r in self.archive.values():
            out[r.status] += 1
        return out

    def _learn_plan(self, plan: Plan) -> None:
        fresh = [t for t in plan.tasks if t.workload not in self.state]
        for t in plan.tasks:
            self.task.setdefault(t.workload, t)
        if fresh:
            self.state.update({w: s for w, s in self.ev.task_states(plan).items() if w not in self.state})
            for t in fresh:  # tuned by an earlier run: a one-point curve (a neighbour for untuned tasks)
                s = self.state.get(t.workload)
                if s is not None and s.best_us is not None and t.workload not in self.book.curves:
                    self.book.curves[t.workload] = self.curve_of(t.workload)

    def curve_of(self, workload: str) -> TaskCurve:
        """The task's tuning curve as far as the run knows it (its database best as one point)."""
        c = self.book.curves.get(workload)
        if c is not None:
            return c
        t = self.task[workload]
        c = TaskCurve(workload, t.op_kind, t.flops, elements_of(t.shapes))
        s = self.state.get(workload)
        if s is not None and s.best_us is not None:
            c = c.with_point(max(1, s.trials), s.best_us)
        return c

    def kernel_sum_ms(self, rec: Rec, *, untuned_model: bool = True) -> tuple[float, int]:
        """(weighted kernel sum ms with untuned tasks predicted, number of untuned tasks)."""
        tot, missing = 0.0, 0
        for t in rec.tasks:
            s = self.state.get(t.workload)
            if s is None or s.best_us is None:
                missing += 1
                us = self.book.model.predict(self.curve_of(t.workload), self.cfg.trials_per_task).us \
                    if untuned_model else self.tpred.heuristic_us(t, 0)
            else:
                us = s.best_us
            tot += t.weight * us
        return tot / 1000.0, missing

    def optimistic_ms(self, rec: Rec) -> float:
        """Low bound of the arch's latency after full tuning (0 before any task has a curve):
        each task at the optimistic bound of its curve model (``curves.CurveModel``)."""
        if not self.book.curves:
            return 0.0
        tot = 0.0
        for t in rec.tasks:
            s = self.state.get(t.workload)
            opt = self.book.model.predict(self.curve_of(t.workload), self.cfg.trials_per_task).low_us
            cur = s.best_us if s is not None and s.best_us is not None else math.inf
            tot += t.weight * min(cur, opt)
        if len(self.cal.pairs) < 2:
            return 0.0
        err = self.cal.summary().get("mape_online", 0.5)
        return self.cal.apply(tot / 1000.0) * max(0.0, 1 - max(0.1, 2 * err))

    def front_points(self) -> list[tuple[float, float, str]]:
        return [(self.archive[k].acc, self.archive[k].ms, k) for k in self.front_keys]

    def _refresh_front(self) -> None:
        recs = [r for r in self.archive.values() if r.status == "evaluated" and r.acc is not None and r.ms is not None]
        pts = [(r.acc, r.ms) for r in recs]
        keys = [recs[i].key for i in pareto.pareto_indices(pts)]
        hv = pareto.hypervolume(pts, self.obj)
        if keys != self.front_keys or abs(hv - self.hv) > 1e-12:
            self.front_keys, self.hv = keys, hv
            self.j.write("front", hypervolume=hv, points=[[a, m, k] for a, m, k in self.front_points()])

    def _x(self, rec: Rec) -> list[float]:
        x = [float(v) for v in self.space.encode(rec.arch)] + [math.log1p(rec.flops / 1e6)]
        if self.cfg.train_rung:
            x.append(float(rec.score) if rec.score is not None else math.nan)
        return x

    # ------------------------------------------------------------------ stages
    def propose(self) -> tuple[Rec, Any] | None:
        """Ask the proposer for a new (unseen key) arch; ``None`` when exhausted."""
        for _ in range(200):
            got = self.proposer.ask(set(self.archive))
            if got is None:
                return None
            handle, arch, params = got
            arch = self.space.canonical(arch)
            key = self.space.key(arch)
            if key in self.archive:  # isomorphic duplicate: tell cached values, never re-evaluate
                r = self.archive[key]
                vals = (r.acc if r.acc is not None else r.acc_pred, r.ms if r.ms is not None else r.lat_pred_ms)
                self.proposer.tell(handle, vals if None not in vals else None)
                continue
            self.n_proposed += 1
            rec = Rec(arch, key, self.n_proposed)
            self.archive[key] = rec
            self.j.write("propose", key=key, arch=arch, n=rec.n, params=params)
            return rec, handle
        return None

    def tell(self, handle: Any, rec: Rec, values: tuple[float | None, float | None] | None) -> None:
        if values is not None and (values[0] is None or values[1] is None):
            values = None
        info = self.proposer.tell(handle, values)
        if info is not None:
            self.j.write("tell", key=rec.key, **info)

    def do_plan(self, rec: Rec) -> bool:
        try:
            plan = self.ev.plan(rec.arch)
        except Exception as e:  # noqa: BLE001 - failures are data
            self.fail(rec, "export", e)
            return False
        rec.tasks, rec.flops = list(plan.tasks), plan.flops
        self.work_seconds += plan.seconds
        self._learn_plan(plan)
        self.j.write("plan", key=rec.key, seconds=plan.seconds, flops=plan.flops,
                     tasks=[[t.workload, t.weight, t.op_kind, t.flops] for t in plan.tasks])
        return True

    def fail(self, rec: Rec, stage: str, e: BaseException | str) -> None:
        msg = e if isinstance(e, str) else (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        rec.status = "failed"
        self.j.write("fail", key=rec.key, stage=stage, error=msg)
        if self.progress is not None:
            self.progress.log(f"arch {rec.n} failed ({stage}): {msg}")

    def do_accuracy(self, rec: Rec) -> bool:
        try:
            score, sec, fid = self.ev.accuracy(rec.arch)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            self.fail(rec, "estimate", e)
            return False
        self.work_seconds += sec
        if self.cfg.train_rung:
            rec.score = score
            rec.acc_pred = self.apred.predict(self._x(rec))
            self.j.write("accuracy", key=rec.key, fidelity="screen", value=score, seconds=sec, estimator_fidelity=fid,
                         pred=rec.acc_pred)
            return True
        rec.acc = score
        pred = self.apred.add(rec.arch, self._x(rec), score)
        self.j.write("accuracy", key=rec.key, fidelity="full", value=score, seconds=sec, estimator_fidelity=fid,
                     pred=pred)
        return True

    def acc_est(self, rec: Rec) -> float | None:
        """The arch's accuracy on the front's axis: trained (or, before training, predicted) with
        the training rung; the full estimator's score otherwise."""
        return rec.acc if rec.acc is not None else (rec.acc_pred if self.cfg.train_rung else None)

    def needed_accuracy(self, ms: float) -> float | None:
        """The accuracy an arch measured at ``ms`` must beat to enter the current front
        (the best front accuracy at that latency or faster); ``None`` when nothing is as fast."""
        accs = [a for a, m, _ in self.front_points() if m <= ms]
        return max(accs) if accs else None

    def do_train(self, rec: Rec, handle: Any, *, early_stop: bool = True) -> bool:
        """The training rung (``--estimator X+train``), after the arch's latency is measured:
        short real training whose learning-curve rule stops it once its optimistic final
        accuracy cannot beat ``needed_accuracy(rec.ms)``. Journals an ``accuracy`` event of
        fidelity ``train`` (curve, every decision with its prediction, final or stopped).
        A completed run sets ``rec.acc`` (the front's accuracy); a stopped one is a
        ``stop_arch`` (reason ``train_early_stop``). Tells the proposer either way."""
        threshold = self.needed_accuracy(rec.ms) if early_stop and rec.ms is not None else None
        try:
            tr = self.ev.train(rec.arch, threshold=threshold, signals=self._signals(rec))
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001 - a failed training is data
            self.fail(rec, "train", e)
            self.tell(handle, rec, None)
            return False
        self.work_seconds += tr.seconds
        self.train_seconds += tr.seconds
        self.epochs_run += len(tr.curve)
        self.epochs_planned += tr.epochs
        self.j.write("accuracy", key=rec.key, fidelity="train", value=tr.score, seconds=tr.seconds,
                     final=None if tr.stopped else tr.accuracy, curve=tr.curve, epochs=tr.epochs, stopped=tr.stopped,
                     predicted=tr.predicted, threshold=threshold, decisions=tr.decisions, pred=rec.acc_pred,
                     estimator_fidelity=tr.fidelity)
        if tr.stopped:
            self.n_train_stopped += 1
            last = tr.decisions[-1] if tr.decisions else {}
            opt = (last.get("predicted") or tr.score) + (last.get("margin") or 0.0)
            rec.acc_pred = tr.score
            self.stop_arch(rec, "train_early_stop", opt, rec.ms)
            self.tell(handle, rec, (tr.score, rec.ms))
            return False
        rec.acc = tr.accuracy
        self.apred.add(rec.arch, self._x(rec), tr.accuracy)
        self._refresh_front()
        self.tell(handle, rec, (rec.acc, rec.ms))
        return True

    def _signals(self, rec: Rec) -> dict[str, float]:
        out = {"log_mflops": math.log1p(rec.flops / 1e6)}
        if rec.score is not None:
            out["screen_score"] = float(rec.score)
        return out

    def predict_latency(self, rec: Rec, source: str | None = None) -> None:
        s, missing = self.kernel_sum_ms(rec)
        rec.lat_pred_ms = self.cal.apply(s)
        self.j.write("latency_pred", key=rec.key, ms=rec.lat_pred_ms, source=source or ("db" if not missing else "model"),
                     missing_tasks=missing, kernel_sum_ms=s, opt_ms=self.optimistic_ms(rec))

    def tune(self, budgets: dict[str, int], *, reason: str, gain_pred_us: float | None = None) -> None:
        budgets = {w: n for w, n in budgets.items() if n > 0}
        if not budgets:
            return
        before = {w: self.state.get(w, TaskState(None, 0)) for w in budgets}
        try:
            res = self.ev.tune([self.task[w] for w in budgets], budgets)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001 - a crashed tuning call is data too
            self.j.write("tune", workloads=list(budgets), trials=0, seconds=0.0, gain_pred_us=gain_pred_us,
                         gain_us=None, error=str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
            return
        gain = 0.0
        known = False
        for w, n in res.trials_per_task.items():
            b = before[w]
            trials = b.trials + n
            best = res.best_us.get(w)
            if best is not None and b.best_us is not None:
                best = min(best, b.best_us)
            c = self.curve_of(w)  # the history before this call
            self.state[w] = TaskState(best if best is not None else b.best_us, trials)
            if best is not None:
                p = self.book.model.predict(c, trials)  # online: predicted before the truth is known
                self.curve_err.append((bool(c.points), math.log(p.us / best), p.low_us <= best * (1 + 1e-9)))
                self.book.observe(c.with_point(trials, best, exhausted=n < budgets[w] and trials <= 1))
                self.tpred.add(self.task[w], trials, best)
            if b.best_us is not None and best is not None:
                known = True
                gain += self.task[w].weight * (b.best_us - best)
        self.trials += res.trials
        self.tune_seconds += res.seconds
        self.work_seconds += res.seconds
        self.cost.add(res.trials, res.seconds)
        for w, n in budgets.items():  # asked for trials and got none: no candidate left (or stopped)
            c = self.book.curves.get(w)
            if not res.ended_early and res.trials_per_task.get(w, 0) == 0 and c is not None and not c.exhausted:
                self.book.curves[w] = dataclasses.replace(c, exhausted=True)
        self.j.write("tune", workloads=list(budgets), trials=res.trials, seconds=res.seconds, reason=reason,
                     gain_pred_us=gain_pred_us, gain_us=gain if known else None,
                     best_us={w: self.state[w].best_us for w in budgets},
                     **({"ended_early": True} if res.ended_early else {}))

    def do_measure(self, rec: Rec, *, remeasure: bool = False) -> bool:
        s, _ = self.kernel_sum_ms(rec)
        pred = self.cal.apply(s)
        try:
            m = self.ev.measure(rec.arch)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            self.j.write("measure", key=rec.key, ms=None, pred_ms=pred, ok=False, error=str(e)[:300], seconds=0.0)
            self.fail(rec, "measure", e)
            return False
        self.work_seconds += m.seconds
        self.j.write("measure", key=rec.key, ms=m.ms, pred_ms=pred, ok=m.ok, error=m.error, seconds=m.seconds,
                     sum_ms=s, remeasure=remeasure)
        if not m.ok:
            if not remeasure:
                self.fail(rec, m.stage, m.error or "measurement failed")
            return False
        if not remeasure and rec.lat_pred_ms and rec.ms is None and self.cfg.strategy == "joint":
            self.arch_err.append(math.log(rec.lat_pred_ms / m.ms))
        rec.ms, rec.sum_at_measure, rec.status = m.ms, s, "evaluated"
        self.cal.add(s, m.ms)
        return True

    def stop_arch(self, rec: Rec, reason: str, acc_opt: float, lat_opt: float) -> None:
        rec.status = "stopped"
        self.j.write("stop_arch", key=rec.key, reason=reason, acc_opt=acc_opt, lat_opt_ms=lat_opt,
                     acc_pred=rec.acc_pred, lat_pred_ms=rec.lat_pred_ms)

    def new_task_budgets(self, rec: Rec, per_task: int, cover: float = 0.9) -> dict[str, int]:
        """Trials for the arch's tasks the database lacks: ``per_task`` for the heaviest
        (by weight x FLOPs, covering ``cover`` of the new tasks' FLOPs), a quarter of it
        (at least 2) for the light rest (pools, elementwise): the first trials replace TVM's
        default schedule, most of the gain; ``refine`` tunes further what matters."""
        def trials(t: Task) -> int:
            return self.state.get(t.workload, TaskState(None, 0)).trials

        new = [t for t in rec.tasks if self.state.get(t.workload, TaskState(None, 0)).best_us is None
               and trials(t) < per_task]
        new.sort(key=lambda t: (-t.weight * t.flops, t.workload))
        total = sum(t.weight * t.flops for t in new)
        out, acc = {}, 0.0
        light = max(2, per_task // 4)
        for t in new:
            n = per_task if total <= 0 or acc < cover * total else light
            out[t.workload] = max(0, min(n, self.cfg.trials_per_task) - trials(t))
            acc += t.weight * t.flops
        return out

    def predicted_front_gate(self, rec: Rec) -> float | None:
        """Before spending tuning trials on ``rec``: is it dominated by what the run already
        knows, every other estimated arch at its *re-predicted* fully-tuned latency (the same
        predictor for all, so its bias cancels) and measured archs also at their measurement,
        even with its own prediction lowered by a margin (15 % + twice the calibration's
        online error, 10 % before it has one)? Returns that lowered latency when it is (defer),
        else ``None``. Active from the start: before the task model is trained the
        predictions are FLOPs-based (``TaskLatencyPredictor.heuristic_us``), and a deferred
        arch is re-checked at every refine (``promote_deferred``)."""
        err = self.cal.summary().get("mape_online", 0.1)
        margin = min(0.5, 0.15 + 2 * err)
        lat = self.cal.apply(self.kernel_sum_ms(rec)[0]) * (1 - margin)
        acc = rec.acc
        if self.cfg.train_rung:  # trained accuracy not known yet: its optimistic prediction, or no gate
            acc = self.apred.optimistic(self._x(rec)) if rec.score is not None else math.inf
            if not math.isfinite(acc):
                return None
        pts = []
        for r in self.archive.values():
            a = r.acc  # others at their known accuracy (with the training rung: trained ones only)
            if r.key == rec.key or a is None or not r.tasks:
                continue
            pts.append((a, self.cal.apply(self.kernel_sum_ms(r)[0])))
            if r.status == "evaluated" and r.ms is not None:
                pts.append((a, r.ms))
        return lat if pts and pareto.dominated((acc, lat), pts) else None

    def promote_deferred(self, limit: int = 2) -> None:
        """Deferred archs whose prediction now reaches the front are tuned and measured."""
        for k in sorted(self.deferred, key=lambda k: self.archive[k].n):
            if limit <= 0 or not self.budget_left():
                return
            rec = self.archive[k]
            if self.predicted_front_gate(rec) is None:
                self.deferred.discard(k)
                limit -= 1
                self.j.write("promote_arch", key=k, reason="prediction_reaches_front")
                self.tune(self.new_task_budgets(rec, self.cfg.tune_batch), reason="new_tasks")
                if self.do_measure(rec):
                    if self.cfg.train_rung:
                        self.do_train(rec, None)
                    self._refresh_front()

    # ------------------------------------------------------------------ joint
    def run_joint(self) -> str:
        """Generations: screen a batch (half the NSGA-II population) cheaply (plan, predicted
        and full accuracy, predicted latency), then tune + measure only the batch members that
        may reach the front (``predicted_front_gate``), then refine tasks and re-check deferred
        archs. Tuning is the expensive rung, so it is spent after seeing the whole batch.
        With the training rung, a measured arch is then trained (``do_train``)."""
        size = max(1, self.cfg.population // 2)
        if self.cfg.train_rung:  # resumed: archs measured before the kill but never trained
            for r in sorted(self.archive.values(), key=lambda r: r.n):
                if r.status == "evaluated" and r.acc is None and r.ms is not None and self.budget_left():
                    self.do_train(r, None)
        while True:
            if not self.budget_left():
                return "budget"
            if not self.archs_left():
                return "max_archs"
            batch, reason = [], None
            t_gen, hv_gen = self.now(), self.hv
            while len(batch) < size:
                if not self.budget_left():
                    reason = "budget"
                    break
                if not self.archs_left():
                    reason = "max_archs"
                    break
                got = self.propose()
                if got is None:
                    reason = "exhausted"
                    break
                rec, handle = got
                if self.screen(rec, handle):
                    batch.append((rec, handle))
                self._update()
            for rec, handle in batch:
                self.finish(rec, handle)
                self._update()
            self.generation_done(t_gen, hv_gen)
            if self.budget_left():
                self.refine()
                self.promote_deferred()
                self.tune_by_value()
            if reason is None and self.finish_due():
                self.finish_front(why="reserve")
            self._update()
            if reason is not None:
                if reason in ("exhausted", "max_archs") and self.cfg.budget_s is not None and self.budget_left():
                    self.finish_front()
                return reason

    def generation_done(self, t0: float, hv0: float) -> None:
        """Record what a generation (screen a batch, tune and measure the members that may
        reach the front) gave the front per second: the rate ``tune_by_value`` weighs tuning
        against."""
        sec, gain = self.now() - t0, max(0.0, self.hv - hv0)
        if sec > 0:
            self.generations.append((sec, gain))
            self.j.write("generation", seconds=sec, hv_gain=gain)

    def proposal_rate(self) -> float | None:
        """Front hypervolume gained per second by the last ``SWITCH_WINDOW`` generations
        (None: fewer so far, or the switch is off)."""
        if SWITCH_WINDOW is None or len(self.generations) < SWITCH_WINDOW:
            return None
        g = self.generations[-SWITCH_WINDOW:]
        return sum(d for _, d in g) / sum(s for s, _ in g)

    def tune_by_value(self) -> None:
        """One currency between proposing and tuning: while the best tuning batch of the front's
        tasks (``value.choose_batch``, past the per-task cap up to ``CONVERGED_TRIALS``) is
        predicted to gain more hypervolume per second than the last generations of proposals
        gained, tune it; then propose again."""
        while self.budget_left():
            rate = self.proposal_rate()
            if rate is None:
                return
            choice = self.best_tuning(front_only=True)
            if choice is None or choice.rate <= rate:
                return
            n = self.trials
            self.tune_choice(choice, reason="value")
            if self.trials == n:
                return

    def value_candidates(self, front_only: bool = False) -> list[V.Candidate]:
        """Measured archs with an accuracy, at their latency now (measured, scaled by how much
        their kernel sum fell since)."""
        out = []
        for r in self.archive.values():
            if r.status != "evaluated" or r.acc is None or r.ms is None or not r.tasks:
                continue
            ks = self.kernel_sum_ms(r)[0]
            ms = r.ms * ks / r.sum_at_measure if r.sum_at_measure else r.ms
            uses: dict[str, int] = {}
            for t in r.tasks:
                uses[t.workload] = uses.get(t.workload, 0) + t.weight
            out.append(V.Candidate(r.key, r.acc, ms, ks * 1000.0, uses))
        if front_only and out:
            idx = pareto.pareto_indices([(c.acc, c.ms) for c in out])
            out = [out[i] for i in idx]
        return out

    def time_left(self) -> float:
        return math.inf if self.cfg.budget_s is None else self.cfg.budget_s - self.now()

    def tune_options(self, cands: list[V.Candidate], optimistic: bool = False) -> list[V.TuneOption]:
        """One option per task the candidates use: double its trials (at least ``tune_batch``
        more, at most up to ``CONVERGED_TRIALS``, and what the clock has left), with the curve model's
        predicted gain -- or, ``optimistic``, its gain down to the optimistic bound (``low_us``)."""
        overhead, per_trial = self.cost.fit()
        fit = (self.time_left() - overhead) / per_trial if per_trial > 0 else math.inf
        out = []
        for w in sorted({w for c in cands for w in c.uses}):
            s = self.state.get(w, TaskState(None, 0))
            c = self.curve_of(w)
            if s.trials >= CONVERGED_TRIALS or c.exhausted or not c.points:
                continue
            step = min(max(self.cfg.tune_batch, s.trials), CONVERGED_TRIALS - s.trials)
            if step > fit:
                step = int(fit)
            if step < 1:
                continue
            p = self.book.model.predict(c, s.trials + step)
            out.append(V.TuneOption(w, step, max(0.0, c.points[-1][1] - (p.low_us if optimistic else p.us)),
                                    step * per_trial))
        return out

    def best_tuning(self, front_only: bool = False, optimistic: bool = False) -> V.Choice | None:
        cands = self.value_candidates(front_only)
        if not cands:
            return None
        return V.choose_batch(cands, self.tune_options(cands, optimistic), self.obj, overhead_s=self.cost.overhead_s,
                              max_seconds=self.time_left())

    def tune_choice(self, choice: V.Choice, reason: str = "value") -> None:
        """Tune the chosen batch, then re-measure archs of the estimated front whose latency is
        estimated > 5 % below their measurement."""
        self.tune(choice.batch, reason=reason, gain_pred_us=sum(choice.gain_us.values()))
        self.j.write("value", reason=reason, predicted_hv_gain=choice.value, predicted_s=choice.seconds,
                     workloads=sorted(choice.batch))
        for c in self.value_candidates(front_only=True):
            r = self.archive[c.key]
            if r.ms is not None and c.ms < 0.95 * r.ms and self.budget_left():
                self.do_measure(r, remeasure=True)
        self._refresh_front()

    def finish_plan(self, cands: list[V.Candidate] | None = None) -> list[V.PlanStep]:
        """``value.tolerance_plan`` for the front (``cands``: ``value_candidates(front_only=True)``,
        computed when not given): what brings every point's kernel sum within
        ``FINISH_TOLERANCE`` of its predicted converged sum (the curve model's point prediction
        after ``CONVERGED_TRIALS`` per task), at the run's own seconds per trial and call set-up."""
        if cands is None:
            cands = self.value_candidates(front_only=True)
        tasks: dict[str, V.TaskNow] = {}
        for w in sorted({w for c in cands for w in c.uses}):
            s = self.state.get(w, TaskState(None, 0))
            c = self.curve_of(w)
            if not c.points:
                continue
            now = c.points[-1][1]
            done = c.exhausted or s.trials >= CONVERGED_TRIALS
            tasks[w] = V.TaskNow(s.trials, now, now if done else self.book.model.predict(c, CONVERGED_TRIALS).us)
        overhead, per_trial = self.cost.fit()
        return V.tolerance_plan(cands, tasks, lambda w, n: self.book.model.predict(self.curve_of(w), n).us,
                                tol=FINISH_TOLERANCE, step_min=self.cfg.tune_batch, per_trial_s=per_trial,
                                overhead_s=overhead, tasks_per_call=FINISH_TASKS_PER_CALL)

    def finish_due(self) -> bool:
        """Reserve what finishing costs (``value.reserve_due``): the clock left is no more than
        the predicted seconds of ``finish_plan``, and those fit in ``FINISH_MAX_SHARE`` of the budget."""
        if self.cfg.budget_s is None or not self.budget_left():
            return False
        need = sum(p.seconds for p in self.finish_plan())
        return V.reserve_due(need, self.time_left(), self.cfg.budget_s, FINISH_MAX_SHARE)

    def finish_choice(self) -> V.Choice | None:
        """The finish's next tuning call: the first tasks of ``finish_plan`` while the front is
        out of tolerance; then the front's best batch by optimistic hypervolume gain per second."""
        cands = self.value_candidates(front_only=True)
        plan = self.finish_plan(cands)
        if not plan:
            return self.best_tuning(front_only=True, optimistic=True)
        batch, gains = V.plan_batch(plan, FINISH_TASKS_PER_CALL)
        overhead, per_trial = self.cost.fit()
        value = V.tuning_gain(cands, gains, self.obj)
        return V.Choice(batch, gains, value, overhead + per_trial * sum(batch.values()))

    def finish_front(self, why: str = "exhausted") -> None:
        """Finish the front: tune its tasks past the per-task cap, up to convergence
        (``CONVERGED_TRIALS``): first what brings every point within ``FINISH_TOLERANCE`` of its
        predicted converged kernel sum (``finish_plan``), then by hypervolume gain per second
        (``value.choose_batch``), until the clock runs out or no trial may pay. ``why``:
        ``exhausted`` (proposals ran out with the clock left) or ``reserve`` (``finish_due``).

        The hypervolume gain is the curve model's *optimistic* one (down to its bound
        ``low_us``): the clock left is spent on nothing else, and tuning curves drop in steps
        after plateaus (a task flat at 32 trials may halve by 176), which the point prediction
        averages away. Replayed at 20 min, seeds 0-7: joint >= sequential on 7/8 (4/8 with the
        point prediction), median exported-front ratio 0.9905 vs 0.9868 (docs/search.md)."""
        self.j.write("phase", phase="finish", why=why, time_left_s=self.time_left())
        while self.budget_left():
            choice = self.finish_choice()
            if choice is None:
                return
            n = self.trials
            self.tune_choice(choice, reason="finish")
            if self.trials == n:  # nothing could be tuned (every chosen task out of candidates)
                return

    def evaluate_joint(self, rec: Rec, handle: Any) -> None:
        """One arch through every rung (screen, then gate / tune / measure)."""
        if self.screen(rec, handle):
            self.finish(rec, handle)

    def screen(self, rec: Rec, handle: Any) -> bool:
        """The cheap rungs; False when the arch was stopped (or failed) and told."""
        if not self.do_plan(rec):
            self.tell(handle, rec, None)
            return False
        train = self.cfg.train_rung
        x = self._x(rec)
        # with the training rung the accuracy predictor needs the screen score: no gate before it
        rec.acc_pred = None if train else self.apred.predict(x)
        if rec.acc_pred is not None:
            self.j.write("accuracy", key=rec.key, fidelity="predicted", value=rec.acc_pred, seconds=0.0)
        acc_opt = math.inf if train else self.apred.optimistic(x)
        self.predict_latency(rec)
        lat_opt = self.optimistic_ms(rec)
        front = self.front_points()
        if self.cfg.latency_max_ms is not None and lat_opt > self.cfg.latency_max_ms:
            self.stop_arch(rec, "latency_max", acc_opt, lat_opt)
            self.tell(handle, rec, (rec.acc_pred if rec.acc_pred is not None else self.obj.accuracy_ref, rec.lat_pred_ms))
            return False
        if front and pareto.dominated((acc_opt, lat_opt), front):
            self.stop_arch(rec, "predicted_dominated", acc_opt, lat_opt)
            self.tell(handle, rec, (rec.acc_pred, rec.lat_pred_ms))
            return False
        if not self.do_accuracy(rec):
            self.tell(handle, rec, None)
            return False
        front = self.front_points()
        acc = self.apred.optimistic(self._x(rec)) if train else rec.acc  # trained accuracy: its optimistic bound
        if front and pareto.dominated((acc, lat_opt), front):
            self.stop_arch(rec, "accuracy_dominated", acc, lat_opt)
            self.tell(handle, rec, (self.acc_est(rec), rec.lat_pred_ms) if self.acc_est(rec) is not None else None)
            return False
        return True

    def finish(self, rec: Rec, handle: Any) -> None:
        """The expensive rungs: defer if predictions say it cannot reach the front, else tune its
        new tasks, compile and measure."""
        gate = self.predicted_front_gate(rec)
        if gate is not None or not self.budget_left():
            a = self.acc_est(rec)
            self.stop_arch(rec, "deferred_dominated_by_predictions" if gate is not None else "deferred_budget",
                           a, gate if gate is not None else rec.lat_pred_ms)
            self.deferred.add(rec.key)
            self.tell(handle, rec, (a, rec.lat_pred_ms) if a is not None else None)
            return
        self.tune(self.new_task_budgets(rec, self.cfg.tune_batch), reason="new_tasks")
        if self.do_measure(rec):
            if self.cfg.train_rung:
                self.do_train(rec, handle)  # tells
                return
            self._refresh_front()
            self.tell(handle, rec, (rec.acc, rec.ms))
        else:
            self.tell(handle, rec, None)

    def refine(self) -> None:
        """Tune further the tasks that move the front (``refine_once``), repeatedly while tuning
        has had less than half of the run's time so far (then with a 10x lower gain threshold):
        screening is cheap per arch but adds up, and tuning shared tasks is what improves
        every candidate at once."""
        for _ in range(16):
            if not self.budget_left():
                return
            low = self.tune_seconds < 0.5 * self.work_seconds  # reported seconds: deterministic with the fake
            if not self.refine_once(0.001 if low else 0.01) or not low:
                return

    def refine_once(self, share: float) -> bool:
        """One refine step at gain threshold ``share`` of the candidates' kernel time;
        re-measures front members whose kernel sum dropped by > 10 %. True if it tuned."""
        cfg = self.cfg
        front = self.front_points()
        cands = []
        for r in self.archive.values():
            if r.status != "evaluated" or r.acc is None:
                continue
            lat_opt = self.optimistic_ms(r)
            if r.key in self.front_keys or not pareto.dominated((r.acc, lat_opt), front):
                cands.append(r)
        if not cands:
            return False
        use: dict[str, int] = {}
        for r in cands:
            for t in r.tasks:
                use[t.workload] = use.get(t.workload, 0) + t.weight
        total_us = sum(self.kernel_sum_ms(r)[0] for r in cands) * 1000.0
        threshold = share * total_us
        gains = {}
        for w, u in use.items():
            s = self.state.get(w, TaskState(None, 0))
            if s.trials >= cfg.trials_per_task:
                continue
            step = min(cfg.tune_batch, cfg.trials_per_task - s.trials)
            c = self.curve_of(w)
            if c.exhausted or not c.points:
                continue
            p = self.book.model.predict(c, s.trials + step)
            gains[w] = (max(0.0, c.points[-1][1] - p.us) * u, step)
        chosen = sorted((w for w in gains if gains[w][0] >= threshold), key=lambda w: (-gains[w][0], w))[:4]
        for w in gains:
            if w not in chosen and w not in self.stopped_tasks:
                self.stopped_tasks.add(w)
                self.j.write("stop_task", workload=w, reason="gain_below_threshold", gain_pred_us=gains[w][0],
                             threshold_us=threshold)
        for w in chosen:
            self.stopped_tasks.discard(w)
        if chosen:
            self.tune({w: gains[w][1] for w in chosen}, reason="refine",
                      gain_pred_us=sum(gains[w][0] for w in chosen))
            for k in list(self.front_keys):
                r = self.archive[k]
                s, _ = self.kernel_sum_ms(r)
                if r.sum_at_measure and s < 0.9 * r.sum_at_measure and self.budget_left():
                    self.do_measure(r, remeasure=True)
            self._refresh_front()
            return True
        return False

    # ------------------------------------------------------------------ sequential
    def run_sequential(self) -> str:
        cfg = self.cfg
        phase1_end = None if cfg.budget_s is None else 0.5 * cfg.budget_s
        reason = "max_archs"
        if self.phase == 1:
            while True:
                if phase1_end is not None and self.now() >= phase1_end:
                    reason = "budget"
                    break
                if not self.archs_left():
                    break
                got = self.propose()
                if got is None:
                    reason = "exhausted"
                    break
                rec, handle = got
                if not self.do_plan(rec) or not self.do_accuracy(rec):
                    self.tell(handle, rec, None)
                    continue
                if cfg.proxy == "flops":
                    rec.proxy = rec.flops / 1e6
                    self.j.write("latency_pred", key=rec.key, ms=None, proxy=rec.proxy, source="flops", missing_tasks=0)
                    rec.status = "evaluated"
                else:
                    if not self.do_measure(rec):
                        self.tell(handle, rec, None)
                        continue
                    rec.proxy = rec.ms
                    self._refresh_front()
                rec.status = "evaluated"
                self.tell(handle, rec, (self.screen_acc(rec), rec.proxy))
                self._update(phase=1)
            self.phase = 2
            self.j.write("phase", phase=2, reason=reason)
        # phase 2: tune the proxy front's tasks, then measure it
        recs = [r for r in self.archive.values()
                if r.status == "evaluated" and self.screen_acc(r) is not None and r.proxy is not None]
        chosen = [recs[i] for i in pareto.pareto_indices([(self.screen_acc(r), r.proxy) for r in recs])]
        for r in chosen:
            if not r.tasks:
                try:
                    plan = self.ev.plan(r.arch)
                    r.tasks = list(plan.tasks)
                    self._learn_plan(plan)
                except Exception as e:  # noqa: BLE001
                    self.fail(r, "export", e)
        chosen = [r for r in chosen if r.status == "evaluated"]
        if cfg.train_rung:  # NAS first: train the screen front fully, keep its trained front
            for r in chosen:
                if r.acc is None and r.status == "evaluated" and self.budget_left():
                    self.do_train(r, None, early_stop=False)
            trained = [r for r in chosen if r.acc is not None and r.status == "evaluated"]
            chosen = [trained[i] for i in pareto.pareto_indices([(r.acc, r.proxy) for r in trained])]
        self.j.write("phase", phase=2, chosen=[r.key for r in chosen])
        wl = []
        for r in chosen:
            for t in r.tasks:
                if t.workload not in wl:
                    wl.append(t.workload)
        reserve = 0.0 if cfg.budget_s is None else 0.08 * cfg.budget_s
        while True:
            open_ = [w for w in wl if self.state.get(w, TaskState(None, 0)).trials < cfg.trials_per_task]
            if not open_:
                break
            if cfg.budget_s is not None and self.now() >= cfg.budget_s - reserve:
                reason = "budget"
                break
            step = {w: min(cfg.tune_batch, cfg.trials_per_task - self.state.get(w, TaskState(None, 0)).trials)
                    for w in open_[:4]}
            before = {w: self.state.get(w, TaskState(None, 0)).trials for w in step}
            self.tune(step, reason="tune_front")
            # a task that got no trial has no candidate left (or its call failed): it is done
            done = {w for w in step if self.state.get(w, TaskState(None, 0)).trials <= before[w]}
            # keep the order fair: rotate
            wl = [w for w in wl if w not in step] + [w for w in wl if w in step and w not in done]
            self._update(phase=2)
        for r in chosen:
            self.do_measure(r, remeasure=r.ms is not None)
        self._refresh_front()
        return reason

    def screen_acc(self, rec: Rec) -> float | None:
        """What the sequential baseline ranks by in its NAS phase: the cheap estimator's score."""
        return rec.score if self.cfg.train_rung else rec.acc

    # ------------------------------------------------------------------ brute
    def brute_subset(self) -> list[str]:
        n = self.cfg.subset or self.cfg.max_archs or 20
        rng = np.random.default_rng([self.cfg.seed, 11])
        out, keys = [], set()
        if self.pool is not None:
            order = rng.permutation(len(self.pool))
            cand = (self.pool[int(i)] for i in order)
        else:
            cand = (self.space.sample(rng) for _ in range(100 * n))
        for a in cand:
            k = self.space.key(a)
            if k not in keys:
                keys.add(k)
                out.append(self.space.canonical(a))
            if len(out) >= n:
                break
        return out

    def run_brute(self) -> str:
        cfg = self.cfg
        for arch in self.brute_subset():
            key = self.space.key(arch)
            if key in self.archive:
                continue
            if not self.budget_left():
                return "budget"
            if not self.archs_left():
                return "max_archs"
            self.n_proposed += 1
            rec = Rec(arch, key, self.n_proposed)
            self.archive[key] = rec
            self.j.write("propose", key=key, arch=arch, n=rec.n, params={})
            if not self.do_plan(rec) or not self.do_accuracy(rec):
                continue
            full = {t.workload: cfg.trials_per_task - self.state.get(t.workload, TaskState(None, 0)).trials
                    for t in rec.tasks}
            self.tune(full, reason="full_budget")
            if self.do_measure(rec):
                if self.cfg.train_rung:
                    self.do_train(rec, None, early_stop=False)  # full fidelity: no early stop
                self._refresh_front()
            self._update()
        return "exhausted"

    # ------------------------------------------------------------------ run / resume / finalise
    def run(self) -> dict[str, Any]:
        reason = {"joint": self.run_joint, "sequential": self.run_sequential, "brute": self.run_brute}[self.cfg.strategy]()
        self.j.write("done", reason=reason, wall_s=self.now())
        self._update()
        return self.finalize()

    def replay(self, events: list[dict[str, Any]]) -> float:
        """Rebuild the archive, predictors' calibration and the proposer from a journal."""
        told = []
        last_t = 0.0
        for ev in events:
            last_t = max(last_t, float(ev.get("t") or 0.0))
            if ev.get("event") in ("plan", "accuracy", "tune", "measure") and not ev.get("final"):
                self.work_seconds += float(ev.get("seconds") or 0.0)
            e, key = ev.get("event"), ev.get("key")
            r = self.archive.get(key) if key is not None else None
            if e == "propose":
                self.archive[key] = Rec(ev["arch"], key, int(ev["n"]))
                self.n_proposed = max(self.n_proposed, int(ev["n"]))
            elif r is None and e not in ("tune", "tell", "phase", "front", "start", "done", "stop_task", "generation"):
                continue
            elif e == "plan":
                r.tasks = [Task(w, int(wt), op, float(fl)) for w, wt, op, fl in ev["tasks"]]
                r.flops = float(ev["flops"])
                for t in r.tasks:
                    self.task.setdefault(t.workload, t)
            elif e == "accuracy":
                if ev.get("fidelity") == "full":
                    r.acc = float(ev["value"])
                elif ev.get("fidelity") == "predicted":
                    r.acc_pred = float(ev["value"])
                elif ev.get("fidelity") == "screen":
                    r.score = float(ev["value"])
                    r.acc_pred = ev.get("pred")
                elif ev.get("fidelity") == "train":
                    self.train_seconds += float(ev.get("seconds") or 0.0)
                    self.epochs_run += len(ev.get("curve") or [])
                    self.epochs_planned += int(ev.get("epochs") or 0)
                    if ev.get("stopped"):
                        r.acc_pred = float(ev["value"])
                        self.n_train_stopped += 1
                    else:
                        r.acc = float(ev["final"])
            elif e == "latency_pred":
                r.lat_pred_ms = ev.get("ms")
                if ev.get("proxy") is not None:
                    r.proxy = float(ev["proxy"])
                    r.status = "evaluated"
            elif e == "measure":
                if ev.get("ok") and not ev.get("final"):
                    if not ev.get("remeasure") and r.lat_pred_ms and r.ms is None:
                        self.arch_err.append(math.log(r.lat_pred_ms / float(ev["ms"])))
                    r.ms, r.sum_at_measure, r.status = float(ev["ms"]), ev.get("sum_ms"), "evaluated"
                    if self.cfg.strategy == "sequential" and self.phase == 1:
                        r.proxy = r.ms
                    if ev.get("sum_ms"):
                        self.cal.add(float(ev["sum_ms"]), float(ev["ms"]))
            elif e == "stop_arch":
                r.status = "stopped"
                if str(ev.get("reason", "")).startswith("deferred"):
                    self.deferred.add(key)
            elif e == "promote_arch":
                self.deferred.discard(key)
            elif e == "fail":
                r.status = "failed"
            elif e == "tune":
                self.trials += int(ev.get("trials") or 0)
                self.tune_seconds += float(ev.get("seconds") or 0.0)
                self.cost.add(int(ev.get("trials") or 0), float(ev.get("seconds") or 0.0))
            elif e == "tell":
                told.append(ev)
            elif e == "phase" and ev.get("phase") != "finish":
                self.phase = int(ev.get("phase", 1))
            elif e == "stop_task":
                self.stopped_tasks.add(ev["workload"])
            elif e == "generation":
                self.generations.append((float(ev["seconds"]), float(ev["hv_gain"])))
            elif e == "done":
                self.done = True
        # proposals that never completed are forgotten (they may be proposed again)
        for k in [k for k, r in self.archive.items() if r.status == "pending"]:
            del self.archive[k]
        # task states come from the database (it holds all completed tuning)
        for r in self.archive.values():
            if r.tasks:
                self.state.update(self.ev.task_states(Plan(r.arch, r.tasks)))
        self.proposer.replay(told)
        recs = [r for r in self.archive.values() if r.status == "evaluated" and r.acc is not None and r.ms is not None]
        pts = [(r.acc, r.ms) for r in recs]
        self.front_keys = [recs[i].key for i in pareto.pareto_indices(pts)]
        self.hv = pareto.hypervolume(pts, self.obj)
        return last_t

    def training_summary(self) -> dict[str, Any] | None:
        """The training rung's cost and what its early stop saved (None without the rung)."""
        if not self.cfg.train_rung:
            return None
        return {"epochs": self.cfg.train_epochs, "data": self.cfg.train_data, "seconds": round(self.train_seconds, 3),
                "epochs_run": self.epochs_run, "epochs_planned": self.epochs_planned,
                "epochs_saved_share": (1 - self.epochs_run / self.epochs_planned) if self.epochs_planned else 0.0,
                "trained": sum(1 for r in self.archive.values() if r.acc is not None),
                "stopped": self.n_train_stopped}

    def curve_summary(self) -> dict[str, Any]:
        """Online errors of the curve model (each tuning outcome predicted before it was known)."""
        out: dict[str, Any] = {"curves": len(self.book.curves), "warm_curves": self.book.warm}
        for name, sel in (("anchored", True), ("unanchored", False)):
            e = [(err, cov) for a, err, cov in self.curve_err if a == sel]
            out[name] = {"n": len(e), "log_rmse": math.sqrt(sum(v * v for v, _ in e) / len(e)) if e else None,
                         "bound_coverage": sum(1 for _, c in e if c) / len(e) if e else None}
        return out

    def front_vs_converged(self, recs: list[Rec]) -> dict[str, Any]:
        """How far the front's kernels are from converged: per point, its weighted kernel sum now
        over the curve model's prediction after ``CONVERGED_TRIALS`` trials per task (1.0: nothing
        left to gain). Predicted, not measured: the optimistic bound says how low it may go."""
        now_conv, now_low = [], []
        for r in recs:
            now = conv = low = 0.0
            for t in r.tasks:
                s = self.state.get(t.workload)
                if s is None or s.best_us is None:
                    continue
                p = self.book.model.predict(self.curve_of(t.workload), CONVERGED_TRIALS)
                now += t.weight * s.best_us
                conv += t.weight * min(s.best_us, p.us)
                low += t.weight * min(s.best_us, p.low_us)
            if conv > 0:
                now_conv.append(now / conv)
                now_low.append(now / low)
        med = lambda v: sorted(v)[len(v) // 2] if v else None  # noqa: E731
        return {"points": len(now_conv), "median": med(now_conv), "max": max(now_conv) if now_conv else None,
                "median_vs_optimistic": med(now_low), "trials_per_task": CONVERGED_TRIALS,
                "note": "kernel sum now / predicted after tuning to convergence (cosearch.search.curves)"}

    def finalize(self) -> dict[str, Any]:
        """Re-measure the front with the full measurement, export artifacts, write result.json."""
        pdir = self.out / "pareto"
        tmp_root = Path(tempfile.mkdtemp(prefix=".pareto-", dir=self.out))
        items = []
        for k in self.front_keys:
            r = self.archive[k]
            m = self.ev.measure(r.arch, final=True)
            self.j.write("measure", key=k, ms=m.ms, pred_ms=r.ms, ok=m.ok, error=m.error, seconds=m.seconds,
                         final=True)
            if not m.ok:
                self.j.write("fail", key=k, stage=m.stage, error=m.error or "final measurement failed")
                continue
            r.final_ms = m.ms
            i = len(items)
            try:
                # "model" / "schedules" as `cosearch tune` writes them: `cosearch train DIR` accepts the artifact
                self.ev.export(r.arch, tmp_root / str(i), config={
                    "search": self.cfg.to_dict(), "arch": r.arch, "space": self.space.config(), "accuracy": r.acc,
                    "model": {"kind": "space", "spec": f"{self.space.name}:{r.arch}", "space": self.space.config(),
                              "arch": r.arch},
                    "schedules": str(self.schedules.absolute())})
            except Exception as e:  # noqa: BLE001
                self.j.write("fail", key=k, stage="export", error=str(e).splitlines()[0][:300] if str(e) else "export")
                continue
            items.append(r)
        if pdir.exists():
            shutil.rmtree(pdir)
        os.replace(tmp_root, pdir)
        # the final front, on the final (full) measurements
        pts = [(r.acc, r.final_ms) for r in items]
        idx = pareto.pareto_indices(pts)
        pareto_list = []
        for j_, i in enumerate(idx):
            r = items[i]
            if i != j_:
                os.replace(pdir / str(i), pdir / f"{j_}.tmp")
            pareto_list.append(r)
        for j_ in range(len(idx)):
            if (pdir / f"{j_}.tmp").exists():
                if (pdir / str(j_)).exists():
                    shutil.rmtree(pdir / str(j_))
                os.replace(pdir / f"{j_}.tmp", pdir / str(j_))
        for extra in range(len(idx), len(items)):
            if (pdir / str(extra)).exists():
                shutil.rmtree(pdir / str(extra))
        hv = pareto.hypervolume([(r.acc, r.final_ms) for r in pareto_list], self.obj)
        c = self.counts()
        wall = self.now()
        result = {
            "version": RESULT_VERSION,
            "strategy": self.cfg.strategy,
            "accuracy_fidelity": (f"train:{self.cfg.train_epochs}:{self.cfg.train_data}" if self.cfg.train_rung
                                  else self.cfg.estimator),
            "pareto": [{"arch": r.arch, "key": r.key, "accuracy": r.acc, "latency_ms": r.final_ms,
                        "latency_search_ms": r.ms, "latency_pred_ms": r.lat_pred_ms,
                        "artifact": f"pareto/{i}", "trained": None} for i, r in enumerate(pareto_list)],
            "hypervolume": hv,
            "hypervolume_search": self.hv,
            "objectives": self.obj.to_dict(),
            "proposed": self.n_proposed,
            "evaluated": c["evaluated"],
            "stopped_early": c["stopped"],
            "failed": c["failed"],
            "trials": self.trials,
            "wall_s": wall,
            "latency_calibration": self.cal.summary() | {
                "arch_prediction_log_rmse": (math.sqrt(sum(v * v for v in self.arch_err) / len(self.arch_err))
                                             if self.arch_err else None),
                "arch_prediction_n": len(self.arch_err),
                "note": "arch_prediction: latency predicted from plan + database + task model before tuning, "
                        "vs the measurement after the arch's first tuning step"},
            "training": self.training_summary(),
            "predictors": {"accuracy": self.apred.summary(),
                           "task_latency": {"samples": len(self.tpred.y), "warm_samples": self.tpred.warm,
                                            "online_log_rmse": self.tpred.err_std()},
                           "tuning_curves": self.curve_summary()},
            "front_vs_converged": self.front_vs_converged(pareto_list),
        }
        _atomic_json(self.out / "result.json", result)
        self.j.write("result", hypervolume=hv, pareto=len(pareto_list))
        self.j.close()
        return result
