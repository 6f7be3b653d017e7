"""What a batch of tuning trials is worth to the front: predicted hypervolume gain per second.

Every measured architecture's latency falls with its tasks' predicted gains
(``curves.CurveModel``), weighted by their use in it:
``ms' = ms * (1 - sum(weight * gain_us) / kernel_sum_us)``; a batch's value is the
hypervolume of these estimated points after it minus before (``tuning_gain``), its cost the
predicted seconds of its trials plus one call's set-up (``CallCost``: least squares over the
run's own tuning calls). ``choose_batch`` grows a batch greedily, one task at a time, while
the rate improves: a call's set-up is paid once, so tasks that would not pay alone share it.
Tasks no front candidate uses have no value, so trials go where the front needs them.

The joint search uses it when its proposals run out with the clock left
(``loop.Search.finish_front``): the front's tasks are tuned past the per-task cap, up to
``CONVERGED_TRIALS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

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
