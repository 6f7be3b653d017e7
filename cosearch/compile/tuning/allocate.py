"""Where the trials of a tuning call go.

First one batch to every task the database lacks (an untuned task runs a seeded,
unmeasured fallback schedule at best: ``cosearch.compile.codegen.fallback``); the rest in
proportion to ``weight x best µs / sqrt(1 + trials spent)`` (a task without a measurement:
the prior ``plan.expected_us``, so a 224x224 conv outranks a small pool;
``TuneConfig.first_round`` < 1 leaves part of the budget to this second stage), an
estimate of the time each task still costs the model per trial spent on it, capped per
task (``TuneConfig.trials_per_task``).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Sequence

from cosearch.compile.plan import PlannedTask, TaskStatus, kernel_us, unique_tasks
from cosearch.compile.tuning.config import TRIALS_PER_S

if TYPE_CHECKING:
    from cosearch.compile.tuning.config import TuneConfig


#: under a clock (``TuneConfig.max_seconds``) trials are allocated up to this many times what the
#: clock is expected to allow (``tune.TRIALS_PER_S``), not up to ``trials`` (10**6 with
#: ``TuneConfig.long``): allocating 10**6 trials one batch at a time took 34 s (SqueezeNet, batches
#: of 4) and 60 s (ShuffleNet, batches of 3) of 2-minute clocks (bench/results/allocate_clock.json;
#: found: 2 trials ran in 40 s on the NB201 net), and 1.0 trial/s was measured on 2 cores
CLOCK_TRIALS_MARGIN = 20



def trials_to_allocate(config: "TuneConfig", trials: int, n_tasks: int, batch: int) -> int:
    """``trials``, or under a clock at most ``CLOCK_TRIALS_MARGIN`` x what it is expected to allow
    (never less than one batch per task)."""
    if config.max_seconds is None:
        return trials
    return min(trials, max(batch * n_tasks, int(config.max_seconds * TRIALS_PER_S * CLOCK_TRIALS_MARGIN)))


def allocate(tasks: Sequence[PlannedTask], st: dict[str, TaskStatus], trials: int, batch: int,
             per_task_cap: int | None = None) -> dict[str, int]:
    """Per-workload trial budgets summing to at most ``trials`` (see module docstring)."""
    budgets: dict[str, int] = {}
    uniq, weight = unique_tasks(tasks)
    if not uniq or trials <= 0:
        return {}
    cap = per_task_cap if per_task_cap is not None else trials
    left = trials
    new = [w for w in uniq if not st[w].in_db]
    for w in sorted(new, key=lambda w: -weight[w] * uniq[w].features.flops):
        give = min(batch, cap, left)
        if give <= 0:
            break
        budgets[w] = give
        left -= give

    def score(w: str) -> float:
        spent = st[w].trials_spent + budgets.get(w, 0)
        return weight[w] * kernel_us(uniq[w], st[w]) / math.sqrt(1 + spent)

    # greedy, one batch at a time to the highest score (ties: the larger workload key); a heap, as a
    # clock-bounded tuning allocates up to ``trials`` = 10**6 (a linear scan per batch took 40 s there)
    rank = {w: i for i, w in enumerate(sorted(uniq))}
    heap = [(-score(w), -rank[w], w) for w in uniq if budgets.get(w, 0) < cap]
    heapq.heapify(heap)
    while left > 0 and heap:
        _, _, w = heapq.heappop(heap)
        give = min(batch, cap - budgets.get(w, 0), left)
        budgets[w] = budgets.get(w, 0) + give
        left -= give
        if budgets[w] < cap:
            heapq.heappush(heap, (-score(w), -rank[w], w))
    return budgets
