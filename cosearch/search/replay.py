"""``--resume``: a run's state rebuilt from its journal, one handler per event.

``Replay(search).run(events)`` rebuilds the archive (``Rec`` per proposed key, with its
plan, accuracies, latency prediction, measurement and status), the counters, the
calibration, the deferred archs and stopped tasks, the generations, the proposer's study
(from ``tell`` events) and the front; task states come from the schedule database. The
strategy adds handlers for the state only it keeps (``Strategy.replay_handlers``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from cosearch.search.archive import Rec, measured_front
from cosearch.search.evaluator import Plan, Task

Handler = Callable[[dict[str, Any], Any], None]


class Replay:
    def __init__(self, search: Any) -> None:
        self.search = search
        self.told: list[dict[str, Any]] = []

    #: events replayed without an archived arch (the others are skipped when their key is unknown)
    RUN_EVENTS = ("tune", "tell", "phase", "front", "start", "done", "stop_task", "generation")

    def run(self, events: list[dict[str, Any]]) -> float:
        """Rebuild the archive, predictors' calibration and the proposer from a journal
        (one handler per event: ``handlers``, then the strategy's own)."""
        s = self.search
        handlers = self.handlers()
        extra = s.strategy.replay_handlers()
        last_t = 0.0
        for ev in events:
            last_t = max(last_t, float(ev.get("t") or 0.0))
            e, key = ev.get("event"), ev.get("key")
            if e in ("plan", "accuracy", "tune", "measure") and not ev.get("final"):
                s.work_seconds += float(ev.get("seconds") or 0.0)
            if e == "propose":
                s.archive[key] = Rec(ev["arch"], key, int(ev["n"]))
                s.n_proposed = max(s.n_proposed, int(ev["n"]))
                continue
            r = s.archive.get(key) if key is not None else None
            if r is None and e not in self.RUN_EVENTS:
                continue
            for table in (handlers, extra):
                if e in table:
                    table[e](ev, r)
        # proposals that never completed are forgotten (they may be proposed again)
        for k in [k for k, r in s.archive.items() if r.status == "pending"]:
            del s.archive[k]
        # task states come from the database (it holds all completed tuning)
        for r in s.archive.values():
            if r.tasks:
                s.state.update(s.ev.task_states(Plan(r.arch, r.tasks)))
        s.proposer.replay(self.told)
        s.front_keys, s.hv = measured_front(s.archive, s.obj)
        return last_t

    def handlers(self) -> dict[str, Handler]:
        s = self.search
        return {"plan": self.plan, "accuracy": self.accuracy, "latency_pred": self.latency,
                "measure": self.measure, "stop_arch": self.stop, "promote_arch": self.promote,
                "fail": self.fail, "tune": self.tune, "tell": lambda ev, r: self.told.append(ev),
                "phase": self.phase, "stop_task": lambda ev, r: s.stopped_tasks.add(ev["workload"]),
                "generation": lambda ev, r: s.generations.append((float(ev["seconds"]), float(ev["hv_gain"]))),
                "done": self.done}

    def plan(self, ev: dict[str, Any], r: Rec) -> None:
        s = self.search
        r.tasks = [Task(w, int(wt), op, float(fl)) for w, wt, op, fl in ev["tasks"]]
        r.flops = float(ev["flops"])
        for t in r.tasks:
            s.task.setdefault(t.workload, t)

    def accuracy(self, ev: dict[str, Any], r: Rec) -> None:
        s = self.search
        fid = ev.get("fidelity")
        if fid == "full":
            r.acc = float(ev["value"])
        elif fid == "predicted":
            r.acc_pred = float(ev["value"])
        elif fid == "screen":
            r.score = float(ev["value"])
            r.acc_pred = ev.get("pred")
        elif fid == "train":
            s.train_seconds += float(ev.get("seconds") or 0.0)
            s.epochs_run += len(ev.get("curve") or [])
            s.epochs_planned += int(ev.get("epochs") or 0)
            if ev.get("stopped"):
                r.acc_pred = float(ev["value"])
                s.n_train_stopped += 1
            else:
                r.acc = float(ev["final"])

    def latency(self, ev: dict[str, Any], r: Rec) -> None:
        r.lat_pred_ms = ev.get("ms")
        if ev.get("proxy") is not None:
            r.proxy = float(ev["proxy"])
            r.status = "evaluated"

    def measure(self, ev: dict[str, Any], r: Rec) -> None:
        s = self.search
        s.groups = max(s.groups, int(ev.get("group") or 0))  # group numbers go on after a resume
        if ev.get("ok") and not ev.get("final"):
            if not ev.get("remeasure") and r.lat_pred_ms and r.ms is None:
                s.arch_err.append(math.log(r.lat_pred_ms / float(ev["ms"])))
            r.ms, r.sum_at_measure, r.status = float(ev["ms"]), ev.get("sum_ms"), "evaluated"
            if ev.get("sum_ms"):
                s.cal.add(float(ev["sum_ms"]), float(ev["ms"]))

    def stop(self, ev: dict[str, Any], r: Rec) -> None:
        s = self.search
        r.status = "stopped"
        if str(ev.get("reason", "")).startswith("deferred"):
            s.deferred.add(r.key)

    def promote(self, ev: dict[str, Any], r: Rec) -> None:
        self.search.deferred.discard(r.key)

    def fail(self, ev: dict[str, Any], r: Rec) -> None:
        r.status = "failed"

    def tune(self, ev: dict[str, Any], r: Rec | None) -> None:
        s = self.search
        s.trials += int(ev.get("trials") or 0)
        s.tune_seconds += float(ev.get("seconds") or 0.0)
        s.cost.add(int(ev.get("trials") or 0), float(ev.get("seconds") or 0.0))

    def phase(self, ev: dict[str, Any], r: Rec | None) -> None:
        if ev.get("phase") != "finish":
            self.search.phase = int(ev.get("phase", 1))

    def done(self, ev: dict[str, Any], r: Rec | None) -> None:
        self.search.done = True
