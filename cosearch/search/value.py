"""What a batch of tuning trials is worth to the front: predicted hypervolume gain per second.

Every measured architecture's latency falls with its tasks' predicted gains
(``curves.CurveModel``), weighted by their use in it:
``ms' = ms * (1 - sum(weight * gain_us) / kernel_sum_us)``; a batch's value is the
hypervolume of these estimated points after it minus before (``tuning_gain``), its cost the
predicted seconds of its trials plus one call's set-up (``CallCost``: least squares over the
run's own tuning calls). ``choose_batch`` grows a batch greedily, one task at a time, while
the rate improves: a call's set-up is paid once, so tasks that would not pay alone share it.
Tasks no front candidate uses have no value, so trials go where the front needs them.

The joint search finishes its front with it (``strategies.joint.Joint.finish_front``): the front's
tasks are tuned past the per-task cap, up to ``CONVERGED_TRIALS``, first by
``tolerance_plan`` (what brings every front point within a tolerance of its predicted
converged latency, cheapest first), then by ``choose_batch``. ``reserve_due`` says when to
start: when the clock left is what the plan costs, if that fits in a share of the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from cosearch.search import pareto

#: a task is not tuned past this many trials (the benchmark's convergence cap, docs/benchmark.md)
CONVERGED_TRIALS = 256


@dataclass(frozen=True)
class Candidate:
    """A measured architecture as the tuning value sees it."""

    key: str
    acc: float
    ms: float  # its latency now (measured, scaled by its kernel sum's change since)
    ksum_us: float  # its weighted kernel sum now, µs
    uses: Mapping[str, int]  # workload -> calls per inference


@dataclass(frozen=True)
class TuneOption:
    workload: str
    trials: int  # more trials
    gain_us: float  # predicted drop of the task's best µs after them (>= 0)
    seconds: float  # predicted seconds of the trials


@dataclass(frozen=True)
class Choice:
    batch: dict[str, int]  # workload -> more trials
    gain_us: dict[str, float]
    value: float  # predicted hypervolume gain
    seconds: float  # predicted seconds, set-up included

    @property
    def rate(self) -> float:
        return self.value / self.seconds if self.seconds > 0 else 0.0


def estimated_points(cands: Sequence[Candidate], gains: Mapping[str, float] | None = None) -> list[tuple[float, float]]:
    out = []
    for c in cands:
        ms = c.ms
        if gains:
            d = sum(c.uses.get(w, 0) * g for w, g in gains.items())
            if d > 0 and c.ksum_us > 0:
                ms = c.ms * max(0.05, 1.0 - d / c.ksum_us)
        out.append((c.acc, ms))
    return out


def tuning_gain(cands: Sequence[Candidate], gains: Mapping[str, float], obj: pareto.Objectives,
                base_hv: float | None = None) -> float:
    """Hypervolume of the candidates' estimated points after the tasks' gains, minus before."""
    if base_hv is None:
        base_hv = pareto.hypervolume(estimated_points(cands), obj)
    return pareto.hypervolume(estimated_points(cands, gains), obj) - base_hv


def choose_batch(cands: Sequence[Candidate], options: Sequence[TuneOption], obj: pareto.Objectives, *,
                 overhead_s: float, max_tasks: int = 8, max_seconds: float = math.inf) -> Choice | None:
    """The batch of options (one per workload) of best predicted hypervolume gain per second,
    grown greedily while the rate improves and its seconds fit ``max_seconds``; ``None`` when
    no option has any value."""
    base = pareto.hypervolume(estimated_points(cands), obj)
    opts = {o.workload: o for o in options if o.trials > 0 and o.gain_us > 0}
    chosen: dict[str, TuneOption] = {}
    best: Choice | None = None
    while opts and len(chosen) < max_tasks:
        step = None
        for w in sorted(opts):
            trial = {**chosen, w: opts[w]}
            gains = {k: o.gain_us for k, o in trial.items()}
            value = tuning_gain(cands, gains, obj, base)
            sec = overhead_s + sum(o.seconds for o in trial.values())
            if sec > max_seconds:
                continue
            c = Choice({k: o.trials for k, o in trial.items()}, gains, value, sec)
            if c.value > 0 and (step is None or c.rate > step.rate):
                step = c
        if step is None or (best is not None and step.rate <= best.rate):
            break
        best = step
        new = [w for w in step.batch if w not in chosen]
        chosen[new[0]] = opts.pop(new[0])
    return best


class CallCost:
    """Seconds of a tuning call = set-up + trials x per-trial, least squares over the run's
    calls (a prior until it has three calls of different sizes)."""

    def __init__(self, overhead_s: float = 5.0, per_trial_s: float = 0.4) -> None:
        self.prior = (overhead_s, per_trial_s)
        self.calls: list[tuple[int, float]] = []

    def add(self, trials: int, seconds: float) -> None:
        if trials > 0 and seconds > 0 and math.isfinite(seconds):
            self.calls.append((int(trials), float(seconds)))

    def fit(self) -> tuple[float, float]:
        if len({t for t, _ in self.calls}) < 3:
            if self.calls:  # the prior's set-up, the run's own per-trial rate
                o = self.prior[0]
                per = [max(0.01, (s - o) / t) for t, s in self.calls]
                return o, sorted(per)[len(per) // 2]
            return self.prior
        n = len(self.calls)
        mt = sum(t for t, _ in self.calls) / n
        ms = sum(s for _, s in self.calls) / n
        vt = sum((t - mt) ** 2 for t, _ in self.calls)
        p = sum((t - mt) * (s - ms) for t, s in self.calls) / vt if vt > 0 else self.prior[1]
        p = max(0.01, p)
        o = max(0.0, ms - p * mt)
        return o, p

    @property
    def overhead_s(self) -> float:
        return self.fit()[0]

    @property
    def per_trial_s(self) -> float:
        return self.fit()[1]


@dataclass(frozen=True)
class TaskNow:
    """A front task as the finish sees it: trials so far, best µs now, predicted converged µs
    (after ``CONVERGED_TRIALS``; equal to ``now_us`` when no more gain is possible)."""

    trials: int
    now_us: float
    conv_us: float


@dataclass(frozen=True)
class PlanStep:
    workload: str
    trials: int  # more trials
    seconds: float  # predicted, with its share of a call's set-up
    gain_us: float  # predicted drop of the task's best µs


def tolerance_plan(cands: Sequence[Candidate], tasks: Mapping[str, TaskNow], predict: Callable[[str, int], float], *,
                   tol: float, step_min: int, per_trial_s: float, overhead_s: float, tasks_per_call: int,
                   converged_trials: int = CONVERGED_TRIALS) -> list[PlanStep]:
    """What bringing every candidate's weighted kernel sum within ``tol`` of its predicted
    converged sum takes: greedy steps, each a doubling of one task's trials (at least
    ``step_min``, at most up to ``converged_trials``), the step that removes the most of the
    candidates' summed excess over their tolerance per predicted second first. ``predict(w, n)``:
    the task's predicted best µs after ``n`` trials in all. A task's first step also pays
    ``overhead_s / tasks_per_call`` (calls are shared). Empty: within tolerance as predicted."""
    now = {w: t.now_us for w, t in tasks.items()}
    trials = {w: t.trials for w, t in tasks.items()}
    conv = {w: min(t.now_us, t.conv_us) for w, t in tasks.items()}
    goals = [(c.uses, (1.0 + tol) * sum(u * conv.get(w, 0.0) for w, u in c.uses.items())) for c in cands]

    def excess() -> float:
        return sum(max(0.0, sum(u * now.get(w, 0.0) for w, u in uses.items()) - g) for uses, g in goals)

    plan: list[PlanStep] = []
    tuned: set[str] = set()  # tasks with a step already (their call's set-up is paid)
    left = excess()
    while left > 1e-9:
        best = None
        for w in sorted(now):
            if now[w] <= conv[w] * (1 + 1e-9) or trials[w] >= converged_trials:
                continue
            step = min(max(step_min, trials[w]), converged_trials - trials[w])
            total = trials[w] + step
            us = conv[w] if total >= converged_trials else max(conv[w], min(now[w], predict(w, total)))
            old, now[w] = now[w], us
            drop = left - excess()
            now[w] = old
            sec = step * per_trial_s + (0.0 if w in tuned else overhead_s / tasks_per_call)
            if drop > 0 and (best is None or drop / sec > best[0]):
                best = (drop / sec, PlanStep(w, step, sec, now[w] - us))
        if best is None:
            break
        st = best[1]
        plan.append(st)
        tuned.add(st.workload)
        now[st.workload] -= st.gain_us
        trials[st.workload] += st.trials
        left = excess()
    return plan


def plan_batch(plan: Sequence[PlanStep], max_tasks: int) -> tuple[dict[str, int], dict[str, float]]:
    """The next tuning call of a plan: its first ``max_tasks`` tasks, each with all its planned
    trials and predicted gain."""
    batch: dict[str, int] = {}
    gains: dict[str, float] = {}
    for p in plan:
        if p.workload in batch or len(batch) < max_tasks:
            batch[p.workload] = batch.get(p.workload, 0) + p.trials
            gains[p.workload] = gains.get(p.workload, 0.0) + p.gain_us
    return batch, gains


def reserve_due(need_s: float, time_left_s: float, budget_s: float, max_share: float) -> bool:
    """Reserve what finishing costs: finish now if the clock left is no more than the predicted
    ``need_s``, provided it fits in ``max_share`` of the budget (a finish that cannot complete
    would only take the clock from exploring)."""
    return 0.0 < need_s <= max_share * budget_s and time_left_s <= need_s
