"""The sequential baseline: NAS first, then compile (docs/search.md, "baselines").

Phase 1 (``Policy.sequential_nas_share`` of the budget): every proposal screened (plan and
accuracy) and ranked by a latency proxy (FLOPs, or the untuned measurement). Phase 2: the
proxy front's tasks tuned round-robin to ``--trials-per-task`` (keeping
``Policy.sequential_measure_reserve`` of the budget), then the front measured.
"""

from __future__ import annotations

from typing import Any, Callable

from cosearch.search import pareto
from cosearch.search.evaluator import TaskState
from cosearch.search.archive import Rec
from cosearch.search.strategies import Screening, Strategy, proposals


class Sequential(Strategy):
    name = "sequential"

    def run(self) -> str:
        s = self.search
        reason = "max_archs"
        if s.phase == 1:
            reason = self.nas()
        chosen = self.proxy_front()
        s.j.write("phase", phase=2, chosen=[r.key for r in chosen])
        return self.tune_front(chosen) or reason

    def nas(self) -> str:
        """Phase 1: screen proposals until its share of the budget; the reason it ended."""
        s = self.search
        cfg = s.cfg
        end = None if cfg.budget_s is None else s.policy.sequential_nas_share * cfg.budget_s
        screening = Screening(s, proposals(s, until=end))
        for rec, handle, ok in screening:
            if not ok:
                continue
            if cfg.proxy == "flops":
                rec.proxy = rec.flops / 1e6
                s.j.write("latency_pred", key=rec.key, ms=None, proxy=rec.proxy, source="flops", missing_tasks=0)
                rec.status = "evaluated"
            else:
                if not s.do_measure(rec):
                    s.tell(handle, rec, None)
                    continue
                rec.proxy = rec.ms
                s.refresh_front()
            rec.status = "evaluated"
            s.tell(handle, rec, (self.screen_acc(rec), rec.proxy))
            s.update_progress(phase=1)
        s.phase = 2
        s.j.write("phase", phase=2, reason=screening.reason)
        return screening.reason

    def proxy_front(self) -> list[Rec]:
        """The front by screen accuracy and proxy (with the training rung: trained fully, its
        trained front), planned."""
        s = self.search
        recs = [r for r in s.archive.values()
                if r.status == "evaluated" and self.screen_acc(r) is not None and r.proxy is not None]
        chosen = [recs[i] for i in pareto.pareto_indices([(self.screen_acc(r), r.proxy) for r in recs])]
        for r in chosen:
            if not r.tasks:
                try:
                    plan = s.ev.plan(r.arch)
                    r.tasks = list(plan.tasks)
                    s.learn_plan(plan)
                except Exception as e:  # noqa: BLE001
                    s.fail(r, "export", e)
        chosen = [r for r in chosen if r.status == "evaluated"]
        if s.cfg.train_rung:  # NAS first: train the screen front fully, keep its trained front
            for r in chosen:
                if r.acc is None and r.status == "evaluated" and s.budget_left():
                    s.do_train(r, None, early_stop=False)
            trained = [r for r in chosen if r.acc is not None and r.status == "evaluated"]
            chosen = [trained[i] for i in pareto.pareto_indices([(r.acc, r.proxy) for r in trained])]
        return chosen

    def tune_front(self, chosen: list[Rec]) -> str | None:
        """Phase 2: tune the chosen archs' tasks round-robin, then measure them; ``"budget"``
        when the clock (less the measuring reserve) ran out first."""
        s = self.search
        cfg = s.cfg
        reason = None
        wl = []
        for r in chosen:
            for t in r.tasks:
                if t.workload not in wl:
                    wl.append(t.workload)
        reserve = 0.0 if cfg.budget_s is None else s.policy.sequential_measure_reserve * cfg.budget_s

        def trials(w: str) -> int:
            return s.state.get(w, TaskState(None, 0)).trials

        while True:
            open_ = [w for w in wl if trials(w) < cfg.trials_per_task]
            if not open_:
                break
            if cfg.budget_s is not None and s.now() >= cfg.budget_s - reserve:
                reason = "budget"
                break
            step = {w: min(cfg.tune_batch, cfg.trials_per_task - trials(w))
                    for w in open_[:s.policy.sequential_tasks_per_call]}
            before = {w: trials(w) for w in step}
            s.tune(step, reason="tune_front")
            # a task that got no trial has no candidate left (or its call failed): it is done
            done = {w for w in step if trials(w) <= before[w]}
            # keep the order fair: rotate
            wl = [w for w in wl if w not in step] + [w for w in wl if w in step and w not in done]
            s.update_progress(phase=2)
        for r in chosen:
            s.do_measure(r, remeasure=r.ms is not None)
        s.refresh_front()
        return reason

    def screen_acc(self, rec: Rec) -> float | None:
        """What the sequential baseline ranks by in its NAS phase: the cheap estimator's score."""
        return rec.score if self.search.cfg.train_rung else rec.acc

    def replay_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], None]]:
        def measured(ev: dict[str, Any], r: Rec | None) -> None:
            if r is not None and ev.get("ok") and not ev.get("final") and self.search.phase == 1:
                r.proxy = r.ms  # phase 1 with the untuned proxy: the measurement is the proxy

        return {"measure": measured}
