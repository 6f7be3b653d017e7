"""The budget rule (``cosearch.search.value``): tuning trials chosen by predicted hypervolume
gain per second, on constructed fronts where the right choice is known."""

from __future__ import annotations

import math

import pytest

from cosearch.search import pareto
from cosearch.search.value import (CallCost, Candidate, TaskNow, TuneOption, choose_batch, estimated_points,
                                   plan_batch, reserve_due, tolerance_plan, tuning_gain)

OBJ = pareto.Objectives(accuracy_ref=0.0, accuracy_best=100.0, latency_ref_ms=10.0, latency_best_ms=0.0)

# two front points and one dominated architecture; "conv_fast" is used only by the fast front
# point, "conv_big" only by the accurate one, "conv_dom" only by the dominated architecture
CANDS = [
    Candidate("fast", 70.0, 2.0, 1000.0, {"conv_fast": 10, "relu": 4}),
    Candidate("accurate", 90.0, 6.0, 3000.0, {"conv_big": 20, "relu": 4}),
    Candidate("dominated", 60.0, 8.0, 4000.0, {"conv_dom": 30}),
]


def test_estimated_points_scale_latency_by_the_kernel_sum_saved():
    pts = estimated_points(CANDS, {"conv_big": 50.0})  # 20 calls x 50 µs = 1000 of 3000 µs
    assert pts[1] == (90.0, pytest.approx(4.0)) and pts[0] == (70.0, 2.0)
    assert estimated_points(CANDS, {"conv_big": 1e6})[1][1] == pytest.approx(6.0 * 0.05)  # floored, never <= 0


def test_a_task_only_dominated_architectures_use_is_worth_nothing():
    assert tuning_gain(CANDS, {"conv_dom": 10.0}, OBJ) == pytest.approx(0.0, abs=1e-12)
    assert tuning_gain(CANDS, {"conv_big": 10.0}, OBJ) > 0


def test_choose_batch_prefers_gain_per_second():
    opts = [TuneOption("conv_big", 32, 30.0, 16.0),  # a big gain at a high price
            TuneOption("conv_fast", 32, 20.0, 4.0),  # less gain, four times cheaper
            TuneOption("conv_dom", 32, 100.0, 1.0)]  # the largest, cheapest gain: on no front point
    one = choose_batch(CANDS, opts, OBJ, overhead_s=0.0, max_tasks=1)
    v_big = tuning_gain(CANDS, {"conv_big": 30.0}, OBJ) / 16.0
    v_fast = tuning_gain(CANDS, {"conv_fast": 20.0}, OBJ) / 4.0
    assert one is not None and one.batch == ({"conv_fast": 32} if v_fast > v_big else {"conv_big": 32})
    assert "conv_dom" not in one.batch
    assert one.rate == pytest.approx(max(v_big, v_fast))


def test_a_shared_set_up_pulls_more_tasks_into_one_call():
    opts = [TuneOption("conv_big", 32, 30.0, 4.0), TuneOption("conv_fast", 32, 20.0, 4.0)]
    cheap = choose_batch(CANDS, opts, OBJ, overhead_s=0.0)
    dear = choose_batch(CANDS, opts, OBJ, overhead_s=60.0)
    assert dear is not None and set(dear.batch) == {"conv_big", "conv_fast"}  # one set-up for both
    assert dear.seconds == pytest.approx(68.0)
    assert cheap is not None and len(cheap.batch) == 1  # without set-up, the better one alone has the best rate


def test_the_clock_left_bounds_the_batch_and_nothing_of_value_is_none():
    opts = [TuneOption("conv_big", 32, 30.0, 16.0), TuneOption("conv_fast", 32, 20.0, 4.0)]
    c = choose_batch(CANDS, opts, OBJ, overhead_s=2.0, max_seconds=10.0)
    assert c is not None and c.batch == {"conv_fast": 32} and c.seconds <= 10.0
    assert choose_batch(CANDS, opts, OBJ, overhead_s=2.0, max_seconds=5.0) is None  # nothing fits
    assert choose_batch(CANDS, [TuneOption("conv_dom", 32, 100.0, 1.0)], OBJ, overhead_s=0.0) is None
    assert choose_batch(CANDS, [TuneOption("conv_big", 32, 0.0, 1.0)], OBJ, overhead_s=0.0) is None


def test_call_cost_fits_set_up_and_per_trial():
    c = CallCost(overhead_s=5.0, per_trial_s=0.4)
    assert c.fit() == (5.0, 0.4)  # the prior before any call
    c.add(10, 7.0)
    assert c.fit() == (5.0, pytest.approx(0.2))  # the prior's set-up, the run's own rate
    for t in (20, 40, 80):
        c.add(t, 3.0 + 0.25 * t)
    o, p = c.fit()
    assert o == pytest.approx(3.0, abs=1.5) and p == pytest.approx(0.25, abs=0.03)
    c.add(0, 5.0), c.add(5, math.inf)  # ignored
    assert len(c.calls) == 4


# the finish: a front where "conv_fast" is far from converged (50 µs now, 20 predicted), on a
# curve that reaches 30 µs at 64 trials and 22 at 128; "conv_big" is within tolerance already
FRONT = [Candidate("fast", 70.0, 2.0, 520.0, {"conv_fast": 10, "relu": 4}),
         Candidate("accurate", 90.0, 6.0, 2020.0, {"conv_big": 20, "relu": 4})]
TASKS = {"conv_fast": TaskNow(32, 50.0, 20.0), "conv_big": TaskNow(32, 100.0, 95.0), "relu": TaskNow(1, 5.0, 5.0)}
CURVE = {("conv_fast", 64): 30.0, ("conv_fast", 128): 22.0, ("conv_big", 64): 98.0, ("conv_big", 128): 96.0}


def _plan(tasks=TASKS, front=FRONT, **kw):
    args = dict(tol=0.10, step_min=8, per_trial_s=0.5, overhead_s=8.0, tasks_per_call=8)
    return tolerance_plan(front, tasks, lambda w, n: CURVE[(w, n)], **{**args, **kw})


def test_tolerance_plan_tunes_only_what_brings_the_front_within_tolerance():
    plan = _plan()
    # fast: goal 1.1 x (10 x 20 + 4 x 5) = 242 µs; 64 trials leave 320, 128 leave 240
    assert [(p.workload, p.trials) for p in plan] == [("conv_fast", 32), ("conv_fast", 64)]
    assert plan[0].seconds == pytest.approx(32 * 0.5 + 8.0 / 8) and plan[1].seconds == pytest.approx(64 * 0.5)
    assert [p.gain_us for p in plan] == [pytest.approx(20.0), pytest.approx(8.0)]
    assert plan_batch(plan, 8) == ({"conv_fast": 96}, {"conv_fast": pytest.approx(28.0)})
    # within tolerance already (or nothing predicted to gain): nothing to do
    assert _plan(tasks={**TASKS, "conv_fast": TaskNow(32, 21.0, 20.0)}) == []
    assert _plan(front=[FRONT[1]]) == []


def test_tolerance_plan_takes_the_cheapest_excess_first_and_stops_at_convergence():
    # both points out of tolerance: conv_big now 200 µs (converged 95) falls to 96 at 64 trials
    tasks = {**TASKS, "conv_big": TaskNow(32, 200.0, 95.0)}
    plan = _plan(tasks=tasks)
    assert plan[0].workload == "conv_big"  # removes 1,908 µs of excess in 17 s; conv_fast 200
    assert {p.workload for p in plan} == {"conv_big", "conv_fast"}
    # near the trial cap, a step stops at it and counts as converged
    near = {**TASKS, "conv_fast": TaskNow(250, 50.0, 20.0)}
    plan = _plan(tasks=near, converged_trials=256)
    assert [(p.workload, p.trials, p.gain_us) for p in plan] == [("conv_fast", 6, pytest.approx(30.0))]


def test_reserve_due_starts_the_finish_when_its_cost_is_due_and_affordable():
    assert reserve_due(100.0, 90.0, 600.0, 0.5)  # 100 s of finishing left for, 90 s on the clock
    assert not reserve_due(100.0, 200.0, 600.0, 0.5)  # not yet: keep exploring
    assert not reserve_due(400.0, 100.0, 600.0, 0.5)  # it cannot complete in half the budget
    assert not reserve_due(0.0, 10.0, 600.0, 0.5)  # nothing to finish
