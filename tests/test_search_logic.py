"""Search logic with the FakeEvaluator (a simulated compiler, for search-logic tests only):
determinism under a seed, strategies, early-stop decisions, journal torn-line tolerance."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from cosearch.errors import CosearchError
from cosearch.search import pareto
from cosearch.search.testing import FakeEvaluator
from cosearch.search.journal import Journal, read_journal
from cosearch.search.config import POLICY, Policy, SearchConfig
from cosearch.search.loop import Search
from cosearch.search.strategies import STRATEGIES
from cosearch.space import create_space

OBJ = pareto.Objectives(accuracy_ref=50.0, accuracy_best=100.0, latency_ref_ms=300.0, latency_best_ms=0.0)


def _search(tmp: Path, name: str, policy: Policy = POLICY, **kw) -> Search:
    cfg = SearchConfig(**{"space": "nb201", "estimator": "synthetic", "evaluator": "fake", "max_archs": 12, **kw})
    space = create_space("nb201")
    ev = FakeEvaluator(space, None, schedules_dir=tmp / name / "sched", seed=cfg.seed)
    return Search(cfg, tmp / name, ev, schedules_dir=tmp / name / "sched", objectives=OBJ, policy=policy)


def _events(d: Path, kind: str) -> list[dict]:
    return [e for e in read_journal(d / "journal.jsonl") if e["event"] == kind]


def test_joint_is_deterministic_under_a_seed(tmp_path):
    r1 = _search(tmp_path, "a", seed=3).run()
    r2 = _search(tmp_path, "b", seed=3).run()
    _search(tmp_path, "c", seed=4).run()
    arch = lambda d: [e["arch"] for e in _events(tmp_path / d, "propose")]  # noqa: E731
    assert arch("a") == arch("b") and len(arch("a")) == 12
    assert arch("a") != arch("c")
    assert [p["arch"] for p in r1["pareto"]] == [p["arch"] for p in r2["pareto"]]
    assert r1["hypervolume"] == pytest.approx(r2["hypervolume"])
    assert r1["hypervolume"] > 0 and r1["pareto"]
    keys = [e["key"] for e in _events(tmp_path / "a", "propose")]
    assert len(keys) == len(set(keys))  # an isomorphic arch is never evaluated twice
    assert (tmp_path / "a" / "result.json").exists() and (tmp_path / "a" / "pareto" / "0").is_dir()


@pytest.mark.parametrize("strategy", ["sequential", "brute"])
def test_baselines_run_on_the_same_code_path(tmp_path, strategy):
    res = _search(tmp_path, strategy, strategy=strategy, max_archs=8, subset=8, trials_per_task=16).run()
    assert res["evaluated"] >= 1 and res["pareto"]
    tunes = _events(tmp_path / strategy, "tune")
    assert tunes and sum(e["trials"] for e in tunes) == res["trials"]
    if strategy == "brute":  # every task of every arch tuned to the full per-task budget
        ev = FakeEvaluator(create_space("nb201"), None, schedules_dir=tmp_path / strategy / "sched")
        assert ev.trials and all(n == 16 for n in ev.trials.values())


def _front_before(events: list[dict], stop: dict) -> list[tuple]:
    """The front (``front`` events) as it was when ``stop`` was journaled."""
    front: list[tuple] = []
    for e in events:
        if e is stop:
            return front
        if e["event"] == "front":
            front = [tuple(p) for p in e["points"]]
    raise AssertionError("stop event not in the journal")


def test_screening_gates_stop_archs_before_their_expensive_rungs(tmp_path):
    """The joint loop's gates, on the path the product takes (``Search.run``): an arch whose
    optimistic latency exceeds ``--latency-max-ms`` is stopped before its accuracy is estimated;
    one whose true accuracy at its optimistic latency is dominated by the front of the moment
    is stopped before tuning and measuring; every measured arch passed both."""
    free = _search(tmp_path, "free", max_archs=40).run()
    lat_max = sorted(p["latency_search_ms"] for p in free["pareto"])[len(free["pareto"]) // 2]
    _search(tmp_path, "gated", max_archs=40, latency_max_ms=lat_max).run()
    events = read_journal(tmp_path / "gated" / "journal.jsonl")
    stops = [e for e in events if e["event"] == "stop_arch"]
    full = {e["key"] for e in events if e["event"] == "accuracy" and e["fidelity"] == "full"}
    measured = {e["key"] for e in events if e["event"] == "measure" and not e.get("final")}
    by_latency = [e for e in stops if e["reason"] == "latency_max"]
    by_accuracy = [e for e in stops if e["reason"] == "accuracy_dominated"]
    assert by_latency and by_accuracy
    for e in by_latency:
        assert e["lat_opt_ms"] > lat_max
        assert e["key"] not in full and e["key"] not in measured
    for e in by_accuracy:
        assert pareto.dominated((e["acc_opt"], e["lat_opt_ms"]), _front_before(events, e))
        assert e["key"] in full and e["key"] not in measured
    opt = {e["key"]: e["opt_ms"] for e in events if e["event"] == "latency_pred"}
    assert measured and all(opt[k] <= lat_max for k in measured)
    assert all(k in full for k in measured)


def test_refine_tunes_only_tasks_whose_predicted_gain_reaches_the_threshold(tmp_path):
    """Refine (after each generation) tunes at most ``Policy.refine_tasks`` tasks whose predicted
    gain reaches the threshold and journals a ``stop_task`` for each other; with a threshold
    nothing reaches it never tunes."""
    _search(tmp_path, "default", max_archs=24).run()
    tunes = _events(tmp_path / "default", "tune")
    refines = [e for e in tunes if e.get("reason") == "refine"]
    assert refines and all(1 <= len(e["workloads"]) <= POLICY.refine_tasks and e["trials"] > 0 for e in refines)
    events = read_journal(tmp_path / "default" / "journal.jsonl")
    stops = [i for i, e in enumerate(events) if e["event"] == "stop_task"]
    assert stops and any(events[i]["gain_pred_us"] < events[i]["threshold_us"] for i in stops)
    for i in stops:  # a task reaching the threshold is left out only for the top refine_tasks
        if events[i]["gain_pred_us"] >= events[i]["threshold_us"]:
            step = next(e for e in events[i:] if e["event"] == "tune")
            assert step["reason"] == "refine" and len(step["workloads"]) == POLICY.refine_tasks
    never = dataclasses.replace(POLICY, refine_threshold=math.inf, refine_threshold_low=math.inf)
    _search(tmp_path, "never", max_archs=24, policy=never).run()
    assert not [e for e in _events(tmp_path / "never", "tune") if e.get("reason") == "refine"]
    assert _events(tmp_path / "never", "stop_task")


def test_journal_tolerates_a_torn_last_line(tmp_path):
    j = Journal(tmp_path)
    j.write("start", resume=False)
    j.write("propose", key="k", arch="a", n=1)
    j.close()
    with open(tmp_path / "journal.jsonl", "ab") as fh:
        fh.write(b'{"v": 1, "event": "meas')
    evs = read_journal(tmp_path / "journal.jsonl")
    assert [e["event"] for e in evs] == ["start", "propose"]
    j2 = Journal(tmp_path, t0_offset=5.0)  # reopening drops the torn tail before appending
    j2.write("done", reason="budget")
    j2.close()
    evs = read_journal(tmp_path / "journal.jsonl")
    assert [e["event"] for e in evs] == ["start", "propose", "done"] and evs[-1]["t"] >= 5.0
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["start", "propose", "done"]
    # damage in the middle is not silently skipped
    (tmp_path / "journal.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    with pytest.raises(CosearchError, match="line 2"):
        read_journal(tmp_path / "journal.jsonl")


def test_failures_are_data(tmp_path):
    cfg = SearchConfig(space="nb201", estimator="synthetic", evaluator="fake", max_archs=10, seed=1)
    ev = FakeEvaluator(create_space("nb201"), None, schedules_dir=tmp_path / "sched", fail_rate=0.4)
    res = Search(cfg, tmp_path / "run", ev, schedules_dir=tmp_path / "sched", objectives=OBJ).run()
    fails = _events(tmp_path / "run", "fail")
    assert fails and all(f["stage"] == "compile" for f in fails)
    assert res["failed"] == len({f["key"] for f in fails}) and res["proposed"] == 10


class RacingFakeEvaluator(FakeEvaluator):
    """The fake compiler, whose tuning calls of several tasks end after the first task's trials
    (as a real call ends on MetaSchedule's join race, ``engine.scheduler_raced``)."""

    def __init__(self, *a, ended_early: bool = True, **kw) -> None:
        super().__init__(*a, **kw)
        self.flag = ended_early

    def tune(self, tasks, budgets):
        first = sorted(w for w, n in budgets.items() if n > 0)[:1]
        if len(budgets) < 2 or not first:
            return super().tune(tasks, budgets)
        res = super().tune(tasks, {w: budgets[w] for w in first})
        return dataclasses.replace(res, ended_early=self.flag)


@pytest.mark.parametrize("ended_early", [True, False])
def test_a_call_ended_early_does_not_mark_tasks_out_of_candidates(tmp_path, ended_early):
    """A task given no trial in a tuning call is out of candidates (its design space spent) --
    unless the call ended early for the tuner's own reason; then it stays tunable."""
    cfg = SearchConfig(space="nb201", estimator="synthetic", evaluator="fake", max_archs=6, seed=1)
    ev = RacingFakeEvaluator(create_space("nb201"), None, schedules_dir=tmp_path / "sched", seed=1,
                             ended_early=ended_early)
    s = Search(cfg, tmp_path / "run", ev, schedules_dir=tmp_path / "sched", objectives=OBJ)
    s.run()
    tunes = _events(tmp_path / "run", "tune")
    assert any(len(e["workloads"]) >= 2 for e in tunes)
    assert any(e.get("ended_early") for e in tunes) == ended_early
    exhausted = [w for w, c in s.book.curves.items() if c.exhausted]
    assert (not exhausted) if ended_early else exhausted


def test_tuning_takes_the_clock_only_when_it_beats_what_proposals_gained(tmp_path):
    """One currency (``Joint.tune_by_value``): the front's best tuning batch runs while its
    predicted hypervolume gain per second beats the last generations' realised gain per second."""
    window3 = dataclasses.replace(POLICY, switch_window=3)
    first = _search(tmp_path, "v", max_archs=8, seed=2, policy=window3)
    first.run()
    gens = list(first.generations)
    assert gens and all(sec > 0 and g >= 0 for sec, g in gens)
    s = Search(first.cfg, tmp_path / "v", first.ev, schedules_dir=tmp_path / "v" / "sched", objectives=OBJ,
               resume=True, policy=window3)
    assert [x for g in s.generations for x in g] == pytest.approx([x for g in gens for x in g])  # kept by resume
    n = s.trials
    s.generations = [(10.0, 1e9)] * 3  # proposals gained far more per second than tuning can
    s.strategy.tune_by_value()
    assert s.trials == n
    s.generations = [(10.0, 1e9)] * 2  # fewer generations than the window: no rate, no switch
    s.strategy.tune_by_value()
    assert s.trials == n
    s.generations = [(10.0, 0.0)] * 3  # proposals gained nothing: tuning the front pays more
    s.strategy.tune_by_value()
    assert s.trials > n
    assert any(e.get("reason") == "value" for e in _events(tmp_path / "v", "tune"))


def test_strategies_are_registered_plug_ins():
    assert STRATEGIES.names() == ["brute", "joint", "sequential"]
    assert all(STRATEGIES.get(n).name == n for n in STRATEGIES.names())
    with pytest.raises(CosearchError, match="unknown strategy 'greedy'; valid: brute, joint, sequential"):
        SearchConfig(strategy="greedy", max_archs=2)


def test_overlap_finishes_archs_together(tmp_path):
    """``--overlap K``: the joint strategy gates up to K screened archs on the same front, tunes
    their new tasks in one call (``archs`` of the ``tune`` event) and measures them as one group,
    in that order; K = 1 is the search without the option (same hash, no groups)."""
    base = dict(space="nb201", estimator="synthetic", evaluator="fake", max_archs=16, seed=5)
    assert SearchConfig(**base, overlap=1).hash() == SearchConfig(**base).hash() != SearchConfig(**base, overlap=4).hash()
    with pytest.raises(CosearchError, match="overlap"):
        SearchConfig(**base, overlap=0)
    _search(tmp_path, "one", seed=5, max_archs=16).run()
    assert not any(t.get("archs") for t in _events(tmp_path / "one", "tune"))
    assert not any("group" in m for m in _events(tmp_path / "one", "measure"))
    res = _search(tmp_path, "four", seed=5, max_archs=16, overlap=4).run()
    assert res["pareto"]
    events = read_journal(tmp_path / "four" / "journal.jsonl")
    together = [i for i, e in enumerate(events) if e["event"] == "tune" and e.get("archs")]
    assert together
    plans = {e["key"]: {t[0] for t in e["tasks"]} for e in events if e["event"] == "plan"}
    for i in together:
        tune = events[i]
        assert 2 <= len(tune["archs"]) <= 4
        # one call holds the new tasks of every arch of the group (each arch's tasks untuned before it)
        assert set(tune["workloads"]) <= set().union(*(plans[k] for k in tune["archs"]))
        measured = [e for e in events[i + 1:i + 1 + len(tune["archs"])]]
        assert [m["event"] for m in measured] == ["measure"] * len(tune["archs"])
        assert [m["key"] for m in measured] == tune["archs"]
        assert len({m["group"] for m in measured}) == 1
    groups = [e["group"] for e in events if e["event"] == "measure" and "group" in e]
    assert groups == sorted(groups)
