"""The fake compiler shares tasks across architectures the way the real plan does.

``FakeEvaluator`` (``cosearch.search.testing``) stands in for TVM in the search-logic
tests and in ``bench/search_efficiency.py --evaluator fake``; what it must get right is
*which architectures share which task*, since that is what makes tuning one arch pay
for the next. Here its plans are compared with ``EngineEvaluator.plan`` (real TVM import
and MetaSchedule task extraction, no tuning) on NB201 and MBV2 architectures: sampled
ones plus one chosen per space to exercise a sharing across different layers (NB201: an
arch without ``nor_conv_3x3``, whose reduction blocks still hold that conv's shape;
MBV2: a last stage of expansion 4 and depth 2, whose second block expands 320w to 1280w
channels like the final 1x1 conv).

The fake names a task by the shape it computes (``nor_conv_3x3:32@16``: a 3x3 conv of
32 channels at 16x16; ``pw:24x96@16``: a 1x1 conv of 24 to 96 channels at 16x16, ...)
and simulates the kernels that carry the tuning effort: convolutions, depthwise
convolutions, pools and the classifier (``MODELLED``). ``fake_name`` reads the same name
off a real task's shapes. Agreement means: per arch, the fake's task names are the names
of the real plan's workloads of those kinds; the real workloads behind one name are held
by the same archs (a name never merges workloads that are shared differently); and where
a name stands for one workload, its weight (calls in the network) is the real one, within
one (see the test). The
fake lumps the parts of NB201's reduction block (stride-2 conv, shortcut pool and 1x1
conv: always together) into one ``reduce`` task, and does not simulate elementwise,
reduction and layout kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.search.evaluator import append_trials_log, read_trials_log
from cosearch.search.testing import FakeEvaluator, nb201_cell_kernels
from cosearch.space import create_space
from cosearch.space.nb201 import EDGES

MODELLED = {"conv2d", "depthwise_conv2d", "pool", "dense"}
CHOSEN = {"nb201": "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|",
          "mbv2": "w0.5-k3e6d2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d2"}
SAMPLED = 5


def fake_name(space: str, op_kind: str, shapes: tuple) -> str:
    """The fake's name of a real task, from its op kind and shapes (input first, output last)."""
    x, out = shapes[0], shapes[-1]
    if op_kind == "dense":
        return f"head:{x[1]}"
    ci, r, co, r2 = x[1], x[2], out[1], out[2]
    if op_kind == "pool":  # NB201: the cell's 3x3 pool keeps the size; the shortcut's 2x2 halves it
        return f"avg_pool_3x3:{ci}@{r}" if r2 == r else f"reduce:{2 * ci}@{r2}"
    k = shapes[1][-1]
    if op_kind == "depthwise_conv2d":
        return f"dw:{ci}k{k}s{r // r2}@{r}"
    if ci == 3:
        return f"stem:{co}@{r}"
    if space == "nb201":
        return f"nor_conv_{k}x{k}:{co}@{r}" if ci == co and r2 == r else f"reduce:{co}@{r2}"
    return f"pw:{ci}x{co}@{r}" if ci < co else f"pwl:{ci}x{co}@{r2}"


@pytest.fixture(scope="module", params=["nb201", "mbv2"])
def plans(request, tmp_path_factory):
    from cosearch.compile.target import load_target
    from cosearch.search.engine_evaluator import EngineEvaluator

    space = create_space(request.param)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(SAMPLED)] + [space.canonical(CHOSEN[space.name])]
    tmp = tmp_path_factory.mktemp(f"plans-{space.name}")
    fake = FakeEvaluator(space, None, schedules_dir=tmp / "fake")
    real = EngineEvaluator(space, None, load_target("host"), schedules_dir=tmp / "engine")
    return space.name, archs, [fake.plan(a) for a in archs], [real.plan(a) for a in archs]


@pytest.mark.tvm
def test_fake_tasks_are_the_real_plans_tasks(plans):
    """Per arch, the fake's tasks are the real plan's (of the simulated kinds), by shape."""
    space, archs, fake, real = plans
    for arch, f, r in zip(archs, fake, real):
        want = {fake_name(space, t.op_kind, t.shapes) for t in r.tasks if t.op_kind in MODELLED}
        got = {t.workload for t in f.tasks}
        assert got == want, f"{arch}: only in the fake {sorted(got - want)}, only in the real plan {sorted(want - got)}"


@pytest.mark.tvm
def test_archs_share_a_fake_task_as_they_share_its_real_workloads(plans):
    """The real workloads behind one fake name are held by the same archs, and a name standing
    for one workload has its weight in every arch."""
    space, archs, fake, real = plans
    holders: dict[str, dict[str, set[int]]] = {}  # fake name -> real workload -> archs holding it
    for i, r in enumerate(real):
        for t in r.tasks:
            if t.op_kind in MODELLED:
                holders.setdefault(fake_name(space, t.op_kind, t.shapes), {}).setdefault(t.workload, set()).add(i)
    shared = 0
    for name, by_workload in holders.items():
        sets = {frozenset(s) for s in by_workload.values()}
        assert len(sets) == 1, f"{name!r} merges real workloads held by different archs: {by_workload}"
        shared += len(next(iter(sets))) > 1
        if len(by_workload) == 1:
            (workload,) = by_workload
            for i in next(iter(sets)):
                fw = {t.workload: t.weight for t in fake[i].tasks}[name]
                rw = {t.workload: t.weight for t in real[i].tasks}[workload]
                # within one: MetaSchedule's extracted weight can exceed the calls by one (NB201
                # |nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|:
                # 16 for the 15 calls of its first stage's 3x3 conv in the lowered module)
                assert abs(fw - rw) <= 1, f"{archs[i]}: {name!r} weighs {fw} in the fake, {rw} in the real plan"
    assert shared >= 3  # the sample really exercises sharing


@pytest.mark.parametrize("arch, kernels", [
    # node 2 reaches the output only through ``none``: its two convs are dead
    ("|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|none~2|",
     {"avg_pool_3x3": 1}),
    # two pools of x are one kernel; the pool of node 1 (x through a skip) too
    ("|skip_connect~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
     {"avg_pool_3x3": 1, "nor_conv_3x3": 2}),
    # a conv of a zero node still runs (the zero is x * 0, not a constant)
    ("|none~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|", {"nor_conv_1x1": 1, "nor_conv_3x3": 1}),
])
def test_nb201_cell_kernels(arch, kernels):
    space = create_space("nb201")
    got = {op: n for op, n in nb201_cell_kernels(space.ops(arch), EDGES).items() if n}
    assert got == kernels


def test_clock_restarts_and_trials_log_survives_a_torn_line(tmp_path):
    """``restart_clock`` zeroes the simulated seconds (what the calibration spent); the trial
    log is JSON lines: a line torn by a kill is skipped and the next append still reads."""
    space = create_space("nb201")
    ev = FakeEvaluator(space, None, schedules_dir=tmp_path)
    plan = ev.plan(space.sample(np.random.default_rng(0)))
    assert ev.extra_seconds() == FakeEvaluator.COST["plan"]
    ev.restart_clock()
    assert ev.extra_seconds() == 0.0
    ev.tune(plan.tasks, {plan.tasks[0].workload: 4})
    with open(ev.db_path, "a") as fh:
        fh.write('{"v": 1, "workload": "stem:16@32", "tri')  # killed mid-write
    append_trials_log(ev.db_path, {plan.tasks[0].workload: 2})
    assert read_trials_log(ev.db_path) == {plan.tasks[0].workload: 6}
    again = FakeEvaluator(space, None, schedules_dir=tmp_path)
    assert again.task_states(plan)[plan.tasks[0].workload].trials == 6
