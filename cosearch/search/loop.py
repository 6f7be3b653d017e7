"""The search run: ``Search`` owns the run folder (journal, config, result, Pareto
artifacts), an ``Evaluator``, the proposer, the predictors and the archive (``Rec`` per
isomorphism key), and the stages every strategy is made of (propose, plan, accuracy,
tune, measure, train, tell). The strategy (``cosearch.search.strategies``, by name)
decides their order. Everything decided is journaled first; ``Search.replay``
rebuilds the state from the journal on ``--resume``. See ``docs/search.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from pathlib import Path
from typing import Any

from cosearch.errors import CosearchError, first_line
from cosearch.fsio import atomic_write_json
from cosearch.search import finalize as F
from cosearch.search import pareto
from cosearch.search import value as V
from cosearch.search.archive import Rec, measured_front
from cosearch.search.config import POLICY, Policy, SearchConfig
from cosearch.search.curves import CurveBook, TaskCurve, curves_from_samples, elements_of
from cosearch.search.evaluator import Evaluator, Measured, Plan, Task, TaskState
from cosearch.search.journal import Journal, read_journal
from cosearch.search.predictors import (AccuracyPredictor, Calibration, TaskLatencyPredictor, accuracy_store,
                                        task_store)
from cosearch.search.proposer import Proposer
from cosearch.search.replay import Replay
from cosearch.search.strategies import STRATEGIES


class Search:
    """One run folder. ``run()`` executes the configured strategy to its budget, then finalises."""

    def __init__(self, cfg: SearchConfig, out: Path, evaluator: Evaluator, *, schedules_dir: Path,
                 objectives: pareto.Objectives, config_extra: dict[str, Any] | None = None,
                 progress: Any = None, pool: list[str] | None = None, resume: bool = False,
                 policy: Policy = POLICY, work: Any = None, worker_factory: Any = None) -> None:
        from cosearch.distributed.pool import InlinePool

        self.cfg = cfg
        self.policy = policy
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
        self.groups = 0  # archs measured together (joint's --overlap)
        self.done = False
        self.strategy = STRATEGIES.get(cfg.strategy)(self)
        self.out.mkdir(parents=True, exist_ok=True)
        # where screening runs (cosearch.distributed): inline, or workers with the local CPU leased
        self.work = work if work is not None else InlinePool()
        self.lease = None
        if self.work.workers:
            from cosearch.distributed.lease import DeviceLease

            self.lease = evaluator.lease = DeviceLease.for_run(self.out)
            evaluator.work = self.work
        self.ahead: deque = deque()  # (rec, handle, pending screen or None) proposed ahead (cfg.lookahead)
        self.worker_factory = worker_factory  # builds the evaluator in a worker (search.api.worker_evaluator)
        self._spec: dict[str, Any] | None = None
        if self.work.workers and worker_factory is not None:
            from cosearch.distributed.screen import worker_spec

            self._spec = evaluator.work_spec = worker_spec(self, worker_factory)
        offset = 0.0
        if resume:
            offset = self.replay(read_journal(self.out / "journal.jsonl"))
        else:
            config = {"command": "search", **(config_extra or {}), "search": cfg.to_dict(),
                      "config_hash": cfg.hash(), "objectives": objectives.to_dict(),
                      "schedules": str(self.schedules.absolute()), "evaluator": evaluator.config(),
                      "space": space_cfg, "estimator": est_cfg, "version": 1}
            atomic_write_json(self.out / "config.json", config)
        self.j = Journal(self.out, t0_offset=offset, extra_time=evaluator.extra_seconds, wall=evaluator.wall_clock)
        self.j.write("start", resume=resume, config_hash=cfg.hash(), strategy=cfg.strategy)

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return self.j.now()

    def budget_left(self) -> bool:
        if self.cfg.budget_s is not None and self.now() >= self.cfg.budget_s:
            return False
        return True

    def limit(self, until: float | None = None) -> str | None:
        """Why the search must stop now (``"budget"``: the clock reached ``until``, by default the
        budget; ``"max_archs"``: ``--max-archs`` proposed), or None."""
        end = self.cfg.budget_s if until is None else until
        if end is not None and self.now() >= end:
            return "budget"
        if not self.archs_left():
            return "max_archs"
        return None

    def archs_left(self) -> bool:
        return self.cfg.max_archs is None or self.n_proposed < self.cfg.max_archs

    def update_progress(self, **extra: Any) -> None:
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

    def learn_plan(self, plan: Plan) -> None:
        fresh = [t for t in plan.tasks if t.workload not in self.state]
        for t in plan.tasks:
            self.task.setdefault(t.workload, t)
        if fresh:
            states = plan.states if plan.states is not None else self.ev.task_states(plan)
            self.state.update({w: s for w, s in states.items() if w not in self.state})
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
        p = self.policy
        err = self.cal.summary().get("mape_online", p.optimistic_error_prior)
        return self.cal.apply(tot / 1000.0) * max(0.0, 1 - max(p.optimistic_error_min, p.optimistic_error_factor * err))

    def front_points(self) -> list[tuple[float, float, str]]:
        return [(self.archive[k].acc, self.archive[k].ms, k) for k in self.front_keys]

    def refresh_front(self) -> None:
        keys, hv = measured_front(self.archive, self.obj)
        if keys != self.front_keys or abs(hv - self.hv) > 1e-12:
            self.front_keys, self.hv = keys, hv
            self.j.write("front", hypervolume=hv, points=[[a, m, k] for a, m, k in self.front_points()])

    def features(self, rec: Rec) -> list[float]:
        x = [float(v) for v in self.space.encode(rec.arch)] + [math.log1p(rec.flops / 1e6)]
        if self.cfg.train_rung:
            x.append(float(rec.score) if rec.score is not None else math.nan)
        return x

    # ------------------------------------------------------------------ stages
    def propose(self) -> tuple[Rec, Any] | None:
        """Ask the proposer for a new (unseen key) arch; ``None`` when exhausted."""
        for _ in range(self.policy.propose_attempts):
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
            return self.admit(arch, key, params), handle
        return None

    def admit(self, arch: str, key: str, params: dict[str, Any]) -> Rec:
        """A new arch into the archive (journaled ``propose``)."""
        self.n_proposed += 1
        rec = Rec(arch, key, self.n_proposed)
        self.archive[key] = rec
        self.j.write("propose", key=key, arch=arch, n=rec.n, params=params)
        return rec

    def tell(self, handle: Any, rec: Rec, values: tuple[float | None, float | None] | None) -> None:
        if values is not None and (values[0] is None or values[1] is None):
            values = None
        info = self.proposer.tell(handle, values)
        if info is not None:
            self.j.write("tell", key=rec.key, **info)

    def screen_ahead(self, rec: Rec, handle: Any) -> tuple[Rec, Any, Any]:
        """A proposal queued for screening (``cfg.lookahead``): with workers, its plan and
        accuracy are submitted now (``distributed.screen``) and taken in queue order."""
        if not self.work.workers or self.worker_factory is None:
            return rec, handle, None
        from cosearch.distributed.screen import screen

        return rec, handle, self.work.submit(screen, self._spec, rec.arch)

    def screened(self, pending: Any) -> Any:
        """A worker's ``Screened`` result; None when the work was lost for good (its worker
        died on every retry): the driver then plans and scores the arch itself."""
        if pending is None:
            return None
        try:
            pre = pending.result()
        except Exception as e:  # noqa: BLE001 - lost work is done again here
            if self.progress is not None:
                self.progress.log(f"screening on a worker failed ({first_line(e)}); screening here")
            return None
        if pre.fatal:
            raise CosearchError(pre.fatal)
        return pre

    def do_plan(self, rec: Rec, pre: Any = None) -> bool:
        """Plan ``rec`` (or take the plan a worker made: ``pre``, a ``distributed.screen.Screened``)."""
        try:
            if pre is not None:
                self.ev.sim += pre.plan_sim  # the simulated clock runs as if planned here
                if pre.plan_error is not None:
                    raise RuntimeError(pre.plan_error)
                plan = pre.plan
                self.ev.adopt(plan)
            else:
                plan = self.ev.plan(rec.arch)
        except Exception as e:  # noqa: BLE001 - failures are data
            self.fail(rec, "export", e)
            return False
        rec.tasks, rec.flops = list(plan.tasks), plan.flops
        self.work_seconds += plan.seconds
        self.learn_plan(plan)
        self.j.write("plan", key=rec.key, seconds=plan.seconds, flops=plan.flops,
                     tasks=[[t.workload, t.weight, t.op_kind, t.flops] for t in plan.tasks],
                     **({"worker": f"{pre.host}:{pre.pid}"} if pre is not None else {}))
        return True

    def fail(self, rec: Rec, stage: str, e: BaseException | str) -> None:
        msg = e if isinstance(e, str) else (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        rec.status = "failed"
        self.j.write("fail", key=rec.key, stage=stage, error=msg)
        if self.progress is not None:
            self.progress.log(f"arch {rec.n} failed ({stage}): {msg}")

    def do_accuracy(self, rec: Rec, pre: Any = None) -> bool:
        try:
            if pre is not None:
                self.ev.sim += pre.accuracy_sim
                if pre.accuracy_error is not None or pre.accuracy is None:
                    raise RuntimeError(pre.accuracy_error or "no accuracy")
                score, sec, fid = pre.accuracy
            else:
                score, sec, fid = self.ev.accuracy(rec.arch)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            self.fail(rec, "estimate", e)
            return False
        self.work_seconds += sec
        if self.cfg.train_rung:
            rec.score = score
            rec.acc_pred = self.apred.predict(self.features(rec))
            self.j.write("accuracy", key=rec.key, fidelity="screen", value=score, seconds=sec, estimator_fidelity=fid,
                         pred=rec.acc_pred)
            return True
        rec.acc = score
        pred = self.apred.add(rec.arch, self.features(rec), score)
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
            tr = self.ev.train(rec.arch, threshold=threshold, signals=self.signals(rec))
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
        self.apred.add(rec.arch, self.features(rec), tr.accuracy)
        self.refresh_front()
        self.tell(handle, rec, (rec.acc, rec.ms))
        return True

    def signals(self, rec: Rec) -> dict[str, float]:
        out = {"log_mflops": math.log1p(rec.flops / 1e6)}
        if rec.score is not None:
            out["screen_score"] = float(rec.score)
        return out

    def predict_latency(self, rec: Rec, source: str | None = None) -> None:
        s, missing = self.kernel_sum_ms(rec)
        rec.lat_pred_ms = self.cal.apply(s)
        self.j.write("latency_pred", key=rec.key, ms=rec.lat_pred_ms, source=source or ("db" if not missing else "model"),
                     missing_tasks=missing, kernel_sum_ms=s, opt_ms=self.optimistic_ms(rec))

    def tune(self, budgets: dict[str, int], *, reason: str, gain_pred_us: float | None = None,
             archs: list[str] | None = None) -> None:
        """One tuning call of ``budgets`` (workload -> trials), journaled as a ``tune`` event
        (``archs``: the keys of the archs whose new tasks it tunes together, ``--overlap``)."""
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
                         gain_us=None, error=first_line(e))
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
                     gain_pred_us=gain_pred_us, gain_us=gain if known else None, **({"archs": archs} if archs else {}),
                     best_us={w: self.state[w].best_us for w in budgets},
                     **({"ended_early": True} if res.ended_early else {}),
                     **({"builds": res.builds} if res.builds else {}),
                     **({"measure": res.measure} if res.measure and (res.measure["retried"] or res.measure["failed"])
                        else {}))

    def do_measure(self, rec: Rec, *, remeasure: bool = False) -> bool:
        s, _ = self.kernel_sum_ms(rec)
        try:
            m = self.ev.measure(rec.arch)
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            return self.took_measure(rec, e, s)
        return self.took_measure(rec, m, s, remeasure=remeasure)

    def do_measure_many(self, recs: list[Rec]) -> list[bool]:
        """Measure ``recs`` together (``Evaluator.measure_many``: side by side on RPC boards when
        the search has workers) and take the results in the order given; their ``measure``
        events carry the group's number. One arch: ``do_measure``."""
        if len(recs) == 1:
            return [self.do_measure(recs[0])]
        sums = [self.kernel_sum_ms(r)[0] for r in recs]
        try:
            got = self.ev.measure_many([r.arch for r in recs])
        except CosearchError:
            raise
        except Exception as e:  # noqa: BLE001
            got = [(e, None)] * len(recs)
        self.groups += 1
        return [self.took_measure(r, m, s, group=self.groups, where=where)
                for r, s, (m, where) in zip(recs, sums, got)]

    def took_measure(self, rec: Rec, m: Measured | Exception, s: float, *, remeasure: bool = False,
                     group: int | None = None, where: str | None = None) -> bool:
        """Journal the measurement ``m`` of ``rec`` (kernel sum ``s`` ms when it was asked for; an
        exception: the evaluator raised) and take it into the archive and the calibration; a failed
        one fails the arch."""
        pred = self.cal.apply(s)
        extra = {**({"group": group} if group is not None else {}), **({"worker": where} if where else {})}
        if isinstance(m, Exception):
            self.j.write("measure", key=rec.key, ms=None, pred_ms=pred, ok=False, error=str(m)[:300], seconds=0.0,
                         **extra)
            self.fail(rec, "measure", m)
            return False
        self.work_seconds += m.seconds
        self.j.write("measure", key=rec.key, ms=m.ms, pred_ms=pred, ok=m.ok, error=m.error, seconds=m.seconds,
                     sum_ms=s, remeasure=remeasure, **extra)
        if not m.ok:
            if not remeasure:
                self.fail(rec, m.stage, m.error or "measurement failed")
            return False
        if not remeasure and rec.lat_pred_ms and rec.ms is None:  # predicted before tuning (joint's screening)
            self.arch_err.append(math.log(rec.lat_pred_ms / m.ms))
        rec.ms, rec.sum_at_measure, rec.status = m.ms, s, "evaluated"
        self.cal.add(s, m.ms)
        return True

    def stop_arch(self, rec: Rec, reason: str, acc_opt: float, lat_opt: float) -> None:
        rec.status = "stopped"
        self.j.write("stop_arch", key=rec.key, reason=reason, acc_opt=acc_opt, lat_opt_ms=lat_opt,
                     acc_pred=rec.acc_pred, lat_pred_ms=rec.lat_pred_ms)




    # ------------------------------------------------------------------ run / resume / finalise
    def run(self) -> dict[str, Any]:
        reason = self.strategy.run()
        self.j.write("done", reason=reason, wall_s=self.now())
        self.update_progress()
        return self.finalize()

    def replay(self, events: list[dict[str, Any]]) -> float:
        """Rebuild the state from a journal (``replay.Replay``); the last ``t`` it holds."""
        return Replay(self).run(events)

    # ------------------------------------------------------------------ finalise
    def finalize(self) -> dict[str, Any]:
        """Re-measure the front with the full measurement, export artifacts, write result.json."""
        items = F.measure_and_export(self)
        front = F.keep_front(self.out / "pareto", items)
        hv = pareto.hypervolume([(r.acc, r.final_ms) for r in front], self.obj)
        result = F.result(self, front, hv)
        atomic_write_json(self.out / "result.json", result)
        self.j.write("result", hypervolume=hv, pareto=len(front))
        self.j.close()
        return result
