"""The joint strategy: architecture search and kernel tuning in one loop (docs/search.md).

Generations of cheap screening (``Screening`` with the predicted gates), then the expensive
rungs (tune the new tasks, measure) for the batch members that may reach the front, then
refining the front's tasks, re-checking deferred archs, and finishing the front when the
clock left falls to what finishing costs. Its numbers are ``Policy``'s (``search.config``).
"""

from __future__ import annotations

import math
from typing import Any

from cosearch.search import pareto
from cosearch.search import value as V
from cosearch.search.curves import CONVERGED_TRIALS
from cosearch.search.evaluator import Task, TaskState
from cosearch.search.archive import Rec
from cosearch.search.strategies import Screening, Strategy, proposals


class Joint(Strategy):
    name = "joint"

    def __init__(self, search: Any) -> None:
        super().__init__(search)
        self.lat_opt: dict[str, float] = {}  # optimistic latency of archs between the two screening gates


    def run(self) -> str:
        """Generations: screen a batch (half the NSGA-II population) cheaply (plan, predicted
        and full accuracy, predicted latency), then tune + measure only the batch members that
        may reach the front (``predicted_front_gate``), then refine tasks and re-check deferred
        archs. Tuning is the expensive rung, so it is spent after seeing the whole batch.
        With the training rung, a measured arch is then trained (``do_train``)."""
        s = self.search
        size = max(1, s.cfg.population // 2)
        if s.cfg.train_rung:  # resumed: archs measured before the kill but never trained
            for r in sorted(s.archive.values(), key=lambda r: r.n):
                if r.status == "evaluated" and r.acc is None and r.ms is not None and s.budget_left():
                    s.do_train(r, None)
        while True:
            reason = s.limit()
            if reason is not None:
                return reason
            batch = []
            t_gen, hv_gen = s.now(), s.hv
            screening = Screening(s, proposals(s), gate=self.predicted_gate)
            for rec, handle, ok in screening:
                if ok and self.accuracy_gate(rec, handle):
                    batch.append((rec, handle))
                s.update_progress()
                if len(batch) >= size:
                    break
            reason = screening.reason
            k = s.cfg.overlap
            for i in range(0, len(batch), k):
                self.finish_group(batch[i:i + k])
                s.update_progress()
            self.generation_done(t_gen, hv_gen)
            if s.budget_left():
                self.refine()
                self.promote_deferred()
                self.tune_by_value()
            if reason is None and self.finish_due():
                self.finish_front(why="reserve")
            s.update_progress()
            if reason is not None:
                if reason in ("exhausted", "max_archs") and s.cfg.budget_s is not None and s.budget_left():
                    self.finish_front()
                return reason

    def generation_done(self, t0: float, hv0: float) -> None:
        """Record what a generation (screen a batch, tune and measure the members that may
        reach the front) gave the front per second: the rate ``tune_by_value`` weighs tuning
        against."""
        s = self.search
        sec, gain = s.now() - t0, max(0.0, s.hv - hv0)
        if sec > 0:
            s.generations.append((sec, gain))
            s.j.write("generation", seconds=sec, hv_gain=gain)

    def proposal_rate(self) -> float | None:
        """Front hypervolume gained per second by the last ``SWITCH_WINDOW`` generations
        (None: fewer so far, or the switch is off)."""
        s = self.search
        window = s.policy.switch_window
        if window is None or len(s.generations) < window:
            return None
        g = s.generations[-window:]
        return sum(d for _, d in g) / sum(sec for sec, _ in g)

    def tune_by_value(self) -> None:
        """One currency between proposing and tuning: while the best tuning batch of the front's
        tasks (``value.choose_batch``, past the per-task cap up to ``CONVERGED_TRIALS``) is
        predicted to gain more hypervolume per second than the last generations of proposals
        gained, tune it; then propose again."""
        s = self.search
        while s.budget_left():
            rate = self.proposal_rate()
            if rate is None:
                return
            choice = self.best_tuning(front_only=True)
            if choice is None or choice.rate <= rate:
                return
            n = s.trials
            self.tune_choice(choice, reason="value")
            if s.trials == n:
                return

    def value_candidates(self, front_only: bool = False) -> list[V.Candidate]:
        """Measured archs with an accuracy, at their latency now (measured, scaled by how much
        their kernel sum fell since)."""
        s = self.search
        out = []
        for r in s.archive.values():
            if r.status != "evaluated" or r.acc is None or r.ms is None or not r.tasks:
                continue
            ks = s.kernel_sum_ms(r)[0]
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
        s = self.search
        return math.inf if s.cfg.budget_s is None else s.cfg.budget_s - s.now()

    def tune_options(self, cands: list[V.Candidate], optimistic: bool = False) -> list[V.TuneOption]:
        """One option per task the candidates use: double its trials (at least ``tune_batch``
        more, at most up to ``CONVERGED_TRIALS``, and what the clock has left), with the curve model's
        predicted gain -- or, ``optimistic``, its gain down to the optimistic bound (``low_us``)."""
        s = self.search
        overhead, per_trial = s.cost.fit()
        fit = (self.time_left() - overhead) / per_trial if per_trial > 0 else math.inf
        out = []
        for w in sorted({w for c in cands for w in c.uses}):
            st = s.state.get(w, TaskState(None, 0))
            c = s.curve_of(w)
            if st.trials >= CONVERGED_TRIALS or c.exhausted or not c.points:
                continue
            step = min(max(s.cfg.tune_batch, st.trials), CONVERGED_TRIALS - st.trials)
            if step > fit:
                step = int(fit)
            if step < 1:
                continue
            p = s.book.model.predict(c, st.trials + step)
            out.append(V.TuneOption(w, step, max(0.0, c.points[-1][1] - (p.low_us if optimistic else p.us)),
                                    step * per_trial))
        return out

    def best_tuning(self, front_only: bool = False, optimistic: bool = False) -> V.Choice | None:
        s = self.search
        cands = self.value_candidates(front_only)
        if not cands:
            return None
        return V.choose_batch(cands, self.tune_options(cands, optimistic), s.obj, overhead_s=s.cost.overhead_s,
                              max_seconds=self.time_left())

    def tune_choice(self, choice: V.Choice, reason: str = "value") -> None:
        """Tune the chosen batch, then re-measure archs of the estimated front whose latency is
        estimated > 5 % below their measurement."""
        s = self.search
        s.tune(choice.batch, reason=reason, gain_pred_us=sum(choice.gain_us.values()))
        s.j.write("value", reason=reason, predicted_hv_gain=choice.value, predicted_s=choice.seconds,
                     workloads=sorted(choice.batch))
        for c in self.value_candidates(front_only=True):
            r = s.archive[c.key]
            if r.ms is not None and c.ms < (1 - s.policy.value_remeasure_drop) * r.ms and s.budget_left():
                s.do_measure(r, remeasure=True)
        s.refresh_front()

    def finish_plan(self, cands: list[V.Candidate] | None = None) -> list[V.PlanStep]:
        """``value.tolerance_plan`` for the front (``cands``: ``value_candidates(front_only=True)``,
        computed when not given): what brings every point's kernel sum within
        ``FINISH_TOLERANCE`` of its predicted converged sum (the curve model's point prediction
        after ``CONVERGED_TRIALS`` per task), at the run's own seconds per trial and call set-up."""
        s = self.search
        if cands is None:
            cands = self.value_candidates(front_only=True)
        tasks: dict[str, V.TaskNow] = {}
        for w in sorted({w for c in cands for w in c.uses}):
            st = s.state.get(w, TaskState(None, 0))
            c = s.curve_of(w)
            if not c.points:
                continue
            now = c.points[-1][1]
            done = c.exhausted or st.trials >= CONVERGED_TRIALS
            tasks[w] = V.TaskNow(st.trials, now, now if done else s.book.model.predict(c, CONVERGED_TRIALS).us)
        overhead, per_trial = s.cost.fit()
        return V.tolerance_plan(cands, tasks, lambda w, n: s.book.model.predict(s.curve_of(w), n).us,
                                tol=s.policy.finish_tolerance, step_min=s.cfg.tune_batch, per_trial_s=per_trial,
                                overhead_s=overhead, tasks_per_call=s.policy.finish_tasks_per_call)

    def finish_due(self) -> bool:
        """Reserve what finishing costs (``value.reserve_due``): the clock left is no more than
        the predicted seconds of ``finish_plan``, and those fit in ``FINISH_MAX_SHARE`` of the budget."""
        s = self.search
        if s.cfg.budget_s is None or not s.budget_left():
            return False
        need = sum(p.seconds for p in self.finish_plan())
        return V.reserve_due(need, self.time_left(), s.cfg.budget_s, s.policy.finish_max_share)

    def finish_choice(self) -> V.Choice | None:
        """The finish's next tuning call: the first tasks of ``finish_plan`` while the front is
        out of tolerance; then the front's best batch by optimistic hypervolume gain per second."""
        s = self.search
        cands = self.value_candidates(front_only=True)
        plan = self.finish_plan(cands)
        if not plan:
            return self.best_tuning(front_only=True, optimistic=True)
        batch, gains = V.plan_batch(plan, s.policy.finish_tasks_per_call)
        overhead, per_trial = s.cost.fit()
        value = V.tuning_gain(cands, gains, s.obj)
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
        s = self.search
        s.j.write("phase", phase="finish", why=why, time_left_s=self.time_left())
        while s.budget_left():
            choice = self.finish_choice()
            if choice is None:
                return
            n = s.trials
            self.tune_choice(choice, reason="finish")
            if s.trials == n:  # nothing could be tuned (every chosen task out of candidates)
                return

    def predicted_gate(self, rec: Rec, handle: Any) -> bool:
        """Between the plan and the accuracy estimator: False (the arch stopped and told) when
        its optimistic point is slower than ``--latency-max-ms`` or dominated by the front."""
        s = self.search
        train = s.cfg.train_rung
        x = s.features(rec)
        # with the training rung the accuracy predictor needs the screen score: no gate before it
        rec.acc_pred = None if train else s.apred.predict(x)
        if rec.acc_pred is not None:
            s.j.write("accuracy", key=rec.key, fidelity="predicted", value=rec.acc_pred, seconds=0.0)
        acc_opt = math.inf if train else s.apred.optimistic(x)
        s.predict_latency(rec)
        lat_opt = self.lat_opt[rec.key] = s.optimistic_ms(rec)
        front = s.front_points()
        if s.cfg.latency_max_ms is not None and lat_opt > s.cfg.latency_max_ms:
            s.stop_arch(rec, "latency_max", acc_opt, lat_opt)
            s.tell(handle, rec, (rec.acc_pred if rec.acc_pred is not None else s.obj.accuracy_ref, rec.lat_pred_ms))
            return False
        if front and pareto.dominated((acc_opt, lat_opt), front):
            s.stop_arch(rec, "predicted_dominated", acc_opt, lat_opt)
            s.tell(handle, rec, (rec.acc_pred, rec.lat_pred_ms))
            return False
        return True

    def accuracy_gate(self, rec: Rec, handle: Any) -> bool:
        """After the accuracy estimator: False (stopped and told) when the arch, at its
        accuracy (with the training rung: the optimistic trained accuracy), is dominated."""
        s = self.search
        lat_opt = self.lat_opt.pop(rec.key)
        front = s.front_points()
        acc = s.apred.optimistic(s.features(rec)) if s.cfg.train_rung else rec.acc  # trained: its optimistic bound
        if front and pareto.dominated((acc, lat_opt), front):
            s.stop_arch(rec, "accuracy_dominated", acc, lat_opt)
            s.tell(handle, rec, (s.acc_est(rec), rec.lat_pred_ms) if s.acc_est(rec) is not None else None)
            return False
        return True

    def finish_group(self, group: list[tuple[Rec, Any]]) -> None:
        """The expensive rungs of ``--overlap`` archs at once: each deferred if predictions say it
        cannot reach the front (all gated on the front as it is now); the others' new tasks tuned
        in one call (per task the largest budget any of them asks), then measured together
        (``Search.do_measure_many``: side by side on RPC boards), then each taken in order."""
        s = self.search
        go = []
        for rec, handle in group:
            gate = self.predicted_front_gate(rec)
            if gate is not None or not s.budget_left():
                a = s.acc_est(rec)
                s.stop_arch(rec, "deferred_dominated_by_predictions" if gate is not None else "deferred_budget",
                            a, gate if gate is not None else rec.lat_pred_ms)
                s.deferred.add(rec.key)
                s.tell(handle, rec, (a, rec.lat_pred_ms) if a is not None else None)
            else:
                go.append((rec, handle))
        if not go:
            return
        budgets: dict[str, int] = {}
        for rec, _ in go:
            for w, n in self.new_task_budgets(rec, s.cfg.tune_batch).items():
                budgets[w] = max(budgets.get(w, 0), n)
        s.tune(budgets, reason="new_tasks", archs=[r.key for r, _ in go] if len(go) > 1 else None)
        for (rec, handle), ok in zip(go, s.do_measure_many([r for r, _ in go])):
            if not ok:
                s.tell(handle, rec, None)
            elif s.cfg.train_rung:
                s.do_train(rec, handle)  # tells
            else:
                s.refresh_front()
                s.tell(handle, rec, (rec.acc, rec.ms))

    def refine(self) -> None:
        """Tune further the tasks that move the front (``refine_once``), repeatedly while tuning
        has had less than half of the run's time so far (then with a 10x lower gain threshold):
        screening is cheap per arch but adds up, and tuning shared tasks is what improves
        every candidate at once."""
        s = self.search
        p = s.policy
        for _ in range(p.refine_rounds):
            if not s.budget_left():
                return
            low = s.tune_seconds < p.tuning_share * s.work_seconds  # reported seconds: deterministic with the fake
            if not self.refine_once(p.refine_threshold_low if low else p.refine_threshold) or not low:
                return

    def refine_once(self, share: float) -> bool:
        """One refine step at gain threshold ``share`` of the candidates' kernel time: the tasks
        above it, at most ``Policy.refine_tasks`` (or ``--overlap`` K, if larger: K boards run K
        tasks' parts side by side), in one call; re-measures front members whose kernel sum
        dropped by > 10 %. True if it tuned."""
        s = self.search
        cfg = s.cfg
        front = s.front_points()
        cands = []
        for r in s.archive.values():
            if r.status != "evaluated" or r.acc is None:
                continue
            lat_opt = s.optimistic_ms(r)
            if r.key in s.front_keys or not pareto.dominated((r.acc, lat_opt), front):
                cands.append(r)
        if not cands:
            return False
        use: dict[str, int] = {}
        for r in cands:
            for t in r.tasks:
                use[t.workload] = use.get(t.workload, 0) + t.weight
        total_us = sum(s.kernel_sum_ms(r)[0] for r in cands) * 1000.0
        threshold = share * total_us
        gains = {}
        for w, u in use.items():
            st = s.state.get(w, TaskState(None, 0))
            if st.trials >= cfg.trials_per_task:
                continue
            step = min(cfg.tune_batch, cfg.trials_per_task - st.trials)
            c = s.curve_of(w)
            if c.exhausted or not c.points:
                continue
            p = s.book.model.predict(c, st.trials + step)
            gains[w] = (max(0.0, c.points[-1][1] - p.us) * u, step)
        most = max(s.policy.refine_tasks, cfg.overlap)
        chosen = sorted((w for w in gains if gains[w][0] >= threshold), key=lambda w: (-gains[w][0], w))[:most]
        for w in gains:
            if w not in chosen and w not in s.stopped_tasks:
                s.stopped_tasks.add(w)
                s.j.write("stop_task", workload=w, reason="gain_below_threshold", gain_pred_us=gains[w][0],
                             threshold_us=threshold)
        for w in chosen:
            s.stopped_tasks.discard(w)
        if chosen:
            s.tune({w: gains[w][1] for w in chosen}, reason="refine",
                      gain_pred_us=sum(gains[w][0] for w in chosen))
            for k in list(s.front_keys):
                r = s.archive[k]
                ks, _ = s.kernel_sum_ms(r)
                if r.sum_at_measure and ks < (1 - s.policy.remeasure_drop) * r.sum_at_measure and s.budget_left():
                    s.do_measure(r, remeasure=True)
            s.refresh_front()
            return True
        return False

    def new_task_budgets(self, rec: Rec, per_task: int) -> dict[str, int]:
        """Trials for the arch's tasks the database lacks: ``per_task`` for the heaviest
        (by weight x FLOPs, covering ``cover`` of the new tasks' FLOPs), a quarter of it
        (at least 2) for the light rest (pools, elementwise): the first trials replace TVM's
        default schedule, most of the gain; ``refine`` tunes further what matters."""
        s = self.search
        def trials(t: Task) -> int:
            return s.state.get(t.workload, TaskState(None, 0)).trials

        new = [t for t in rec.tasks if s.state.get(t.workload, TaskState(None, 0)).best_us is None
               and trials(t) < per_task]
        new.sort(key=lambda t: (-t.weight * t.flops, t.workload))
        total = sum(t.weight * t.flops for t in new)
        out, acc = {}, 0.0
        cover = s.policy.new_task_cover
        light = max(s.policy.light_task_min_trials, per_task // s.policy.light_task_divisor)
        for t in new:
            n = per_task if total <= 0 or acc < cover * total else light
            out[t.workload] = max(0, min(n, s.cfg.trials_per_task) - trials(t))
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
        s = self.search
        p = s.policy
        err = s.cal.summary().get("mape_online", p.gate_error_prior)
        margin = min(p.gate_margin_max, p.gate_margin + p.gate_error_factor * err)
        lat = s.cal.apply(s.kernel_sum_ms(rec)[0]) * (1 - margin)
        acc = rec.acc
        if s.cfg.train_rung:  # trained accuracy not known yet: its optimistic prediction, or no gate
            acc = s.apred.optimistic(s.features(rec)) if rec.score is not None else math.inf
            if not math.isfinite(acc):
                return None
        pts = []
        for r in s.archive.values():
            a = r.acc  # others at their known accuracy (with the training rung: trained ones only)
            if r.key == rec.key or a is None or not r.tasks:
                continue
            pts.append((a, s.cal.apply(s.kernel_sum_ms(r)[0])))
            if r.status == "evaluated" and r.ms is not None:
                pts.append((a, r.ms))
        return lat if pts and pareto.dominated((acc, lat), pts) else None

    def promote_deferred(self) -> None:
        """Deferred archs whose prediction now reaches the front are tuned and measured."""
        s = self.search
        limit = s.policy.promote_limit
        for k in sorted(s.deferred, key=lambda k: s.archive[k].n):
            if limit <= 0 or not s.budget_left():
                return
            rec = s.archive[k]
            if self.predicted_front_gate(rec) is None:
                s.deferred.discard(k)
                limit -= 1
                s.j.write("promote_arch", key=k, reason="prediction_reaches_front")
                s.tune(self.new_task_budgets(rec, s.cfg.tune_batch), reason="new_tasks")
                if s.do_measure(rec):
                    if s.cfg.train_rung:
                        s.do_train(rec, None)
                    s.refresh_front()
