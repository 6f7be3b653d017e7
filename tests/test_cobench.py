"""Co-search benchmarks: the format, the convergence rule, the curve lookup, the replay
evaluator (determinism, refusal of architectures outside it), scoring against a
hand-computed front -- on a small synthetic benchmark written in the documented format --
and a tiny real build (real TVM tuning, few trials) killed with kill -9 and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, kill_when
from cosearch.cobench import store
from cosearch.cobench.store import Bench, Convergence, Curve
from cosearch.errors import CosearchError

SPACE = {"space": "nb201", "C": 16, "N": 5, "num_classes": 10, "resolution": 32}
# six architectures with distinct isomorphism keys
ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
    "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|",
]
OUTSIDE = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|"
# (accuracy, converged latency ms): the true front is archs 0 (slow, best), 5 and 3 (fast)
TRUTH = [(0.94, 30.0), (0.90, 35.0), (0.85, 12.0), (0.60, 2.0), (0.88, 9.0), (0.91, 10.0)]
# workloads per arch (weight 1 each) and their converged µs
WORKLOADS = {"c3": 400.0, "c1": 80.0, "pool": 20.0, "stem": 10.0, "head": 5.0}
USES = [["stem", "c3", "head"], ["stem", "c1", "head"], ["stem", "pool", "c3", "head"], ["stem", "head"],
        ["stem", "c3", "head"], ["stem", "c1", "c3", "head"]]


def write_synthetic_bench(path: Path, *, seeds=(0, 1)) -> Path:
    """A benchmark in the documented format with hand-set numbers (no TVM)."""
    path.mkdir(parents=True, exist_ok=True)
    store.write_json(path / store.HEADER, {
        "format": store.FORMAT, "version": store.VERSION, "space": SPACE, "machine_key": "synthetic--test",
        "cpu": "none (hand-written)", "target": {"name": "synthetic"}, "convergence": Convergence().to_dict(),
        "tuning": {"seeds": list(seeds), "chunk": 32, "batch": 8, "config": {}},
        "measure": {"threads": [1, 2], "rounds": 3, "config": {"repeat": 10}}, "estimator": "params"})
    from cosearch.space import create_space

    space = create_space("nb201")
    arch_lines, task_lines = [], []
    for i, a in enumerate(ARCHS):
        k = space.key(a)
        arch_lines += [{"event": "want", "key": k, "arch": space.canonical(a), "source": "archs"},
                       {"event": "plan", "key": k, "arch": a, "tasks": [[w, 1] for w in USES[i]], "plan_s": 1.7}]
        ms = TRUTH[i][1]
        arch_lines.append({"event": "measure", "key": k, "median_ms": ms, "p10_ms": ms * 0.95, "p90_ms": ms * 1.05,
                           "threads": 2, "kernel_sum_ms": sum(WORKLOADS[w] for w in USES[i]) / 1000,
                           "seconds": {"plan": 1.0, "estimate": 0.5, "compile": 2.0, "measure": 6.0},
                           "estimate": {"estimator": "params", "score": 100.0 - ms}})
    for w, us in WORKLOADS.items():
        task_lines += [{"event": "task", "workload": w, "name": w, "op": "conv2d", "flops": 1e6, "shapes": []},
                       {"event": "untuned", "workload": w, "us": us * 10}]
        for s in seeds:
            f = 1.0 + 0.1 * s  # seed 1 converges 10 % slower
            pts = [[8, us * 4 * f, 4.0], [16, us * 2 * f, 8.0], [32, us * 1.2 * f, 16.0], [64, us * f, 32.0]]
            task_lines.append({"event": "curve", "workload": w, "seed": s, "trials": 64, "converged": "flat",
                               "points": pts})
    store.append_events(path / store.ARCHS, arch_lines)
    store.append_events(path / store.TASKS, task_lines)
    store.append_events(path / store.CALLS, [{"event": "call", "seed": 0, "run": "r", "t0": 0, "t1": 10,
                                             "trials": 64, "overhead_s": 3.0}])
    (path / "table.csv").write_text("arch,accuracy\n" + "".join(f"{a},{acc}\n" for a, (acc, _) in zip(ARCHS, TRUTH)))
    return path


def test_synthetic_archs_are_distinct():
    from cosearch.space import create_space

    space = create_space("nb201")
    assert len({space.key(a) for a in ARCHS + [OUTSIDE]}) == len(ARCHS) + 1


@pytest.fixture()
def synth(tmp_path) -> Path:
    return write_synthetic_bench(tmp_path / "bench")


# ------------------------------------------------------------------ pure parts
def test_convergence_rule():
    c = Convergence(min_trials=32, max_trials=96, window=16, min_gain=0.01)
    assert c.verdict([]) is None
    assert c.verdict([(16, 10.0, 1), (24, 9.0, 2)]) is None  # too few trials
    assert c.verdict([(16, 10.0, 1), (32, 9.95, 2)]) == "flat"  # 0.5 % over the last 16 trials
    assert c.verdict([(16, 10.0, 1), (32, 9.0, 2)]) is None  # 10 % gain: not flat
    assert c.verdict([(16, 10.0, 1), (96, 5.0, 9)]) == "max_trials"
    with pytest.raises(CosearchError, match="exceeds max_trials"):
        Convergence(min_trials=300, max_trials=256)


def test_a_call_killed_before_its_curves_were_written_is_caught_up_from_the_history(synth):
    """A build killed between a call's history and its curve line: the history wins, so the
    resumed build neither re-tunes a converged workload nor counts its trials from zero."""
    from cosearch.cobench.build import catch_up, seed_dir
    from cosearch.compile.storage import history

    b = Bench(synth)
    w = "fresh"  # a workload with no curve of seed 0 yet
    conv = Convergence(min_trials=4, max_trials=8, window=4, min_gain=0.01)
    history.append(seed_dir(synth, 0), [history.event("batch", w, run="r1", trials=4, best_us=50.0),
                                        history.event("batch", w, run="r1", trials=4, best_us=40.0)])
    catch_up(synth, b, 0, conv, [w, "c3"])
    c = b.curves[w][0]
    assert c.trials == 8 and c.converged == "max_trials" and c.final_us == 40.0
    assert b.curves["c3"][0].trials == 64  # a recorded curve ahead of the (empty) history is kept
    n = len(list(store.read_events(synth / store.TASKS)))
    catch_up(synth, b, 0, conv, [w])  # idempotent: nothing behind any more
    assert len(list(store.read_events(synth / store.TASKS))) == n


def test_curve_lookup():
    c = Curve("w", 0, [(8, 40.0, 4.0), (16, 20.0, 8.0), (32, 12.0, 16.0)])
    assert c.best_at(0) is None
    assert c.best_at(4) == 40.0  # below the first batch: the first batch's best
    assert c.best_at(8) == 40.0 and c.best_at(15) == 40.0 and c.best_at(16) == 20.0
    assert c.best_at(1000) == 12.0  # past the end: the last best
    assert c.seconds_at(0) == 0.0
    assert c.seconds_at(4) == pytest.approx(2.0)
    assert c.seconds_at(24) == pytest.approx(12.0)
    # past the end: the mean seconds per trial after the first batch, (16 - 4) / (32 - 8) = 0.5
    assert c.seconds_at(40) == pytest.approx(16.0 + 8 * 0.5)


def test_bench_reader_and_info(synth):
    b = Bench(synth)
    info = b.info()
    assert info["tasks"] == len(WORKLOADS) and info["tasks_converged"] == len(WORKLOADS)
    assert info["archs_measured"] == len(ARCHS) and info["tuning_seeds"] == [0, 1]
    assert info["trials_per_task"] == {"min": 64, "median": 64, "max": 64}
    assert b.converged_us("c3") == 400.0  # the best seed's
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "info", str(synth)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["machine_key"] == "synthetic--test"


def test_a_torn_last_line_is_skipped(synth):
    with open(synth / store.ARCHS, "a") as fh:
        fh.write('{"v":1,"event":"measure","key":"x","med')
    assert len(Bench(synth).measured()) == len(ARCHS)
    store.append_events(synth / store.ARCHS, [{"event": "fail", "key": "nothing", "stage": "plan", "error": "e"}])
    assert list(store.read_events(synth / store.ARCHS))[-1]["key"] == "nothing"  # the torn line was ended


# ------------------------------------------------------------------ replay
def _replay(synth, tmp_path, seed=0, name="state"):
    from cosearch.cobench.replay import ReplayEvaluator
    from cosearch.space import create_space

    return ReplayEvaluator(create_space("nb201"), None, synth, schedules_dir=tmp_path / name, seed=seed)


def test_replay_follows_the_recorded_curves(synth, tmp_path):
    ev = _replay(synth, tmp_path)
    p = ev.plan(ARCHS[0])
    assert [t.workload for t in p.tasks] == USES[0] and p.seconds == 1.0 and ev.sim == 1.0
    assert all(s.best_us is None and s.trials == 0 for s in ev.task_states(p).values())
    c3 = ev.curve("c3")
    res = ev.tune(p.tasks, {"c3": 16})
    assert res.best_us["c3"] == c3.best_at(16) and res.trials == 16
    assert res.seconds == pytest.approx(3.0 + 8.0)  # call set-up + the curve's seconds for 16 trials
    res = ev.tune(p.tasks, {"c3": 16})
    assert res.best_us["c3"] == c3.best_at(32) and res.seconds == pytest.approx(3.0 + 8.0)
    assert ev.task_states(p)["c3"].trials == 32
    # the untuned tasks run their fallback: latency above the converged one
    m = ev.measure(ARCHS[0])
    assert m.ok and m.ms > TRUTH[0][1] * 1.2
    # tuned to the end of every curve with the better seed: the recorded latency (up to the spread)
    ev.tune(p.tasks, {w: 64 for w in USES[0]})
    exact = ev.latency_now_ms(ev.entry(ARCHS[0]))
    assert exact == pytest.approx(TRUTH[0][1] * sum(ev.curve(w).final_us for w in USES[0]) /
                                  sum(WORKLOADS[w] for w in USES[0]))
    # a resumed evaluator (a new process) sees the trials spent
    again = _replay(synth, tmp_path)
    assert again.task_states(p)["c3"].trials == 96


def test_replay_spends_nothing_past_an_exhausted_curve(synth, tmp_path):
    store.append_events(synth / store.TASKS, [
        {"event": "curve", "workload": "head", "seed": s, "trials": 1, "converged": "exhausted",
         "points": [[1, 5.0, 0.5]]} for s in (0, 1)])
    ev = _replay(synth, tmp_path)
    p = ev.plan(ARCHS[3])
    res = ev.tune(p.tasks, {"head": 8, "stem": 8})
    assert res.trials_per_task == {"head": 1, "stem": 8} and res.best_us["head"] == 5.0
    assert res.seconds == pytest.approx(3.0 + 0.5 + 4.0)
    assert ev.tune(p.tasks, {"head": 8}).trials == 0


def test_sequential_ends_when_a_front_task_has_no_candidate_left(synth, tmp_path):
    """A task MetaSchedule can give no more trials (an exhausted design space) costs nothing on
    replay: the sequential baseline's tuning phase must drop it instead of asking forever."""
    store.append_events(synth / store.TASKS, [
        {"event": "curve", "workload": "head", "seed": s, "trials": 1, "converged": "exhausted",
         "points": [[1, 5.0, 0.5]]} for s in (0, 1)])
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--strategy", "sequential", "--evaluator",
                        f"replay:{synth}", "--estimator", f"table:{synth / 'table.csv'}", "--budget", "600m",
                        "--calibration-archs", "3", "--out", str(tmp_path / "seq"), "--no-progress"],
                       capture_output=True, text=True, timeout=120)  # it asked forever before
    assert r.returncode == 0, r.stderr
    tunes = [json.loads(ln) for ln in (tmp_path / "seq" / "journal.jsonl").open() if '"event":"tune"' in
             ln.replace(" ", "")]
    assert tunes and sum(1 for e in tunes if e["trials"] == 0) <= 1


def test_joint_tunes_the_front_past_the_cap_when_proposals_run_out(synth, tmp_path):
    """Six architectures are proposed in minutes of a 10-hour budget: the joint search then tunes
    its front's tasks past --trials-per-task, by value, up to convergence, and stops when no trial
    is predicted to pay (finalisation on replay)."""
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{synth}",
                        "--estimator", f"table:{synth / 'table.csv'}", "--budget", "600m", "--seed", "2",
                        "--calibration-archs", "3", "--out", str(tmp_path / "j"), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ev = [json.loads(ln) for ln in (tmp_path / "j" / "journal.jsonl").open()]
    assert any(e["event"] == "phase" and e.get("phase") == "finish" for e in ev)
    fin = [e for e in ev if e["event"] == "tune" and e.get("reason") == "finish"]
    assert fin and sum(e["trials"] for e in fin) > 0
    res = json.loads((tmp_path / "j" / "result.json").read_text())
    assert res["trials"] > 32 * 2  # more than the per-task cap allows the front's two heavy tasks
    assert res["wall_s"] < 600 * 60  # it stopped at convergence (or when nothing paid), not at the clock
    fc = res["front_vs_converged"]
    assert fc["points"] >= 1 and fc["median"] < 1.2  # the exported front's kernels near converged


def test_replay_is_deterministic_under_a_seed(synth, tmp_path):
    def run(seed, name):
        ev = _replay(synth, tmp_path, seed=seed, name=name)
        out = []
        for a in ARCHS:
            p = ev.plan(a)
            ev.tune(p.tasks, {t.workload: 8 for t in p.tasks})
            out.append(ev.measure(a).ms)
        return out, [ev.curve(w).seed for w in WORKLOADS], ev.sim

    assert run(0, "a") == run(0, "b")
    assert run(0, "c")[0] != run(3, "d")[0]  # another seed: other noise


def test_replay_refuses_an_architecture_outside_the_benchmark(synth, tmp_path):
    ev = _replay(synth, tmp_path)
    with pytest.raises(CosearchError, match="not in the benchmark"):
        ev.plan(OUTSIDE)
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "info", str(synth), "--arch", OUTSIDE],
                       capture_output=True, text=True)
    assert_one_line_error(r, "not in the benchmark")
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{tmp_path / 'nothing'}",
                        "--budget", "1m", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert_one_line_error(r, "not a benchmark")


def test_replayed_search_is_deterministic_and_scored(synth, tmp_path):
    """A replayed joint search: the same seed gives the same journal; scoring is against the
    hand-computed true front."""
    def search(name):
        r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{synth}",
                            "--estimator", f"table:{synth / 'table.csv'}", "--budget", "10m", "--seed", "1",
                            "--calibration-archs", "3", "--out", str(tmp_path / name), "--no-progress"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [{k: v for k, v in json.loads(line).items()} for line in (tmp_path / name / "journal.jsonl").open()]

    a, b = search("s1"), search("s2")
    assert a == b
    assert max(e["t"] for e in a) <= 10 * 60 + 120  # the simulated clock bounds the run
    from cosearch.cobench.score import Truth

    truth = Truth(synth, f"table:{synth / 'table.csv'}")
    # the true front by hand: (0.60, 2 ms), (0.88, 9 ms), (0.91, 10 ms), (0.94, 30 ms)
    assert [(a_, m) for a_, m, _ in truth.front] == [(0.60, 2.0), (0.88, 9.0), (0.91, 10.0), (0.94, 30.0)]
    obj = truth.obj
    assert (obj.accuracy_ref, obj.accuracy_best, obj.latency_ref_ms) == (0.60, 0.94, 52.5)
    # hypervolume by hand in normalised units: accuracy (a - 0.60) / 0.34, latency (52.5 - m) / 52.5
    hand = sum(((acc - 0.60) / 0.34) * ((52.5 - m) / 52.5 - (52.5 - m_next) / 52.5)
               for (acc, m), m_next in zip([(0.94, 30.0), (0.91, 10.0), (0.88, 9.0)], [52.5, 30.0, 10.0]))
    assert truth.hv == pytest.approx(hand)
    s = truth.score_result(tmp_path / "s1")
    assert 0 < s["ratio_converged"] <= 1 + 1e-9 and s["ratio_measured"] >= 0
    assert s["curve"] and s["curve"][-1][0] <= s["wall_s"] + 1e-6
    ex = s["exported_vs_converged"]
    result = json.loads((tmp_path / "s1" / "result.json").read_text())
    by_hand = sorted(p["latency_ms"] / truth.bench.archs[truth.key(p["arch"])].ms for p in result["pareto"])
    assert ex["points"] == len(by_hand) > 0 and ex["max"] == pytest.approx(by_hand[-1])
    assert ex["within"] == pytest.approx(sum(v <= 1.1 for v in by_hand) / len(by_hand))
    b_ = truth.brute
    assert b_["shared_s"] < b_["independent_s"]


def test_run_converged_latency_follows_the_curves_the_replay_follows(synth, tmp_path):
    """Scoring "within 10 % of converged" on replay: the latency tuning to convergence gives the
    run itself (each task at the end of the tuning seed's curve it follows; seed 1 converges 10 %
    slower here), next to the benchmark's converged latency (the primary seed's)."""
    from cosearch.cobench.replay import followed_curve, run_converged_ms

    bench = Bench(synth)
    for seed in range(6):
        ev = _replay(synth, tmp_path, seed=seed, name=f"rc{seed}")
        for i, a in enumerate(bench.measured()):
            f = {w: 1.0 + 0.1 * followed_curve(bench, w, seed).seed for w in WORKLOADS}
            assert {w: followed_curve(bench, w, seed).seed for w in WORKLOADS} == \
                {w: ev.curve(w).seed for w in WORKLOADS}
            hand = a.ms * sum(WORKLOADS[w] * f[w] for w, _ in a.tasks) / sum(WORKLOADS[w] for w, _ in a.tasks)
            assert run_converged_ms(bench, a, seed) == pytest.approx(hand)
            for w, _ in a.tasks:  # ... which is the replay's own latency with every task converged
                ev.trials[w] = 64
            assert ev.latency_now_ms(a) == pytest.approx(hand)


COMMITTED = REPO / "bench" / "results" / "cobench-nb201-host--znver3-2c-3afece49"


def test_joint_reserves_what_finishing_the_front_costs_on_the_committed_benchmark(tmp_path):
    """20 simulated minutes of the joint search on the committed NB201 benchmark (seed 2): the
    finish starts before proposals run out, when the clock left is what bringing the front within
    10 % of its predicted converged latency costs (``reserve``), and the exported front lands
    within 10 % of the latency tuning to convergence gives the run (measured when written:
    every point, median 1.055; the search before the reserve: ratio to the true front 0.980
    against sequential's 0.986, now 0.998)."""
    table = REPO / "bench" / "results" / "nb201_subset725_table.csv"
    out = tmp_path / "j"
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{COMMITTED}",
                        "--estimator", f"table:{table}", "--budget", "20m", "--seed", "2", "--out", str(out),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ev = [json.loads(ln) for ln in (out / "journal.jsonl").open()]
    phases = [e for e in ev if e["event"] == "phase" and e.get("phase") == "finish"]
    assert phases and phases[0]["why"] == "reserve" and phases[0]["time_left_s"] <= 0.5 * 1200
    assert [e["reason"] for e in ev if e["event"] == "done"] == ["budget"]  # proposals had not run out
    fin = [e for e in ev if e["event"] == "tune" and e.get("reason") == "finish"]
    assert sum(e["trials"] for e in fin) > 200
    from cosearch.cobench.score import Truth

    s = Truth(COMMITTED, f"table:{table}").score_result(out)
    run = s["exported_vs_converged"]["run"]
    assert run["points"] >= 5 and run["within"] >= 0.8 and run["median"] <= 1.1
    assert s["ratio_measured"] >= 0.99


def test_score_cli(synth, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cosearch", "compare", "--evaluator", f"replay:{synth}",
                        "--estimator", f"table:{synth / 'table.csv'}", "--budget", "5m", "--calibration-archs", "3",
                        "--strategies", "joint,sequential", "--out", str(tmp_path / "cmp"), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["truth"]["true_hypervolume"] > 0
    for s in ("joint", "sequential"):
        assert 0 <= data["strategies"][s]["truth"]["ratio_converged"] <= 1 + 1e-9
    assert "Against the benchmark's true front" in (tmp_path / "cmp" / "compare.html").read_text()
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "score", str(synth), str(tmp_path / "cmp"),
                        "--oracle", f"table:{synth / 'table.csv'}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["runs"]) == 2


def test_estimates_table_is_a_second_oracle(synth, tmp_path):
    from cosearch.cobench.score import Truth

    out = tmp_path / "est.csv"
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "estimates", str(synth), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["archs"] == len(ARCHS) and json.loads(r.stdout)["estimator"] == ["params"]
    lines = out.read_text().splitlines()
    assert lines[0] == "arch,accuracy" and len(lines) == len(ARCHS) + 1
    truth = Truth(synth, f"table:{out}")
    assert len(truth.acc) == len(ARCHS)
    assert [k for _, _, k in truth.front] == [create_space_key(ARCHS[3])]  # score 100 - ms: the fastest wins all
    events = [json.loads(ln) for ln in (synth / store.ARCHS).read_text().splitlines()]
    for e in events:  # a benchmark without estimates: one line, exit 2
        e.pop("estimate", None)
    (synth / store.ARCHS).write_text("".join(json.dumps(e) + "\n" for e in events))
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "estimates", str(synth), "--out",
                        str(tmp_path / "none.csv")], capture_output=True, text=True)
    assert r.returncode == 2 and "no measured architecture has a recorded estimate" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "none.csv").exists()


def create_space_key(arch: str) -> str:
    from cosearch.space import create_space

    return create_space("nb201").key(arch)


def test_build_refuses_bad_input(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "cosearch", "bench", "build", *args], capture_output=True,
                              text=True)

    assert_one_line_error(run("--out", str(tmp_path / "b")), "give the architectures")
    assert_one_line_error(run("--sample", "0", "--out", str(tmp_path / "b")), "--sample")
    (tmp_path / "a.txt").write_text("not an arch\n")
    assert_one_line_error(run("--archs", str(tmp_path / "a.txt"), "--out", str(tmp_path / "b")), "line 1")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("other")
    assert_one_line_error(run("--sample", "2", "--out", str(tmp_path / "x")), "holds something else")
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ a real build
TINY = ["--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1", "--space-opt", "resolution=8",
        "--min-trials", "4", "--max-trials", "4", "--window", "4", "--chunk", "4", "--workers", "1"]
TINY_ARCHS = ["|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
              "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"]


@pytest.mark.tvm
def test_tiny_real_build_resumes_after_kill_9(tmp_path):
    """Real TVM: plan, tune (two seeds) and measure two tiny architectures; killed with -9 in
    the middle of tuning, then resumed: finished calls are kept, nothing is planned twice."""
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(TINY_ARCHS) + "\n")
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "cosearch", "bench", "build", *TINY, "--archs", str(archs), "--out", str(out)]
    calls = out / store.CALLS
    kill_when(cmd, lambda: calls.exists() and calls.stat().st_size > 0, timeout=400)
    kept = list(store.read_events(calls))
    assert kept, "the build was killed before its first tuning call ended"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    prog = json.loads(r.stdout)
    assert prog["phase"] == "done" and prog["archs_measured"] == 2 and prog["tasks"] == prog["tasks_converged"] > 0
    assert list(store.read_events(calls))[:len(kept)] == kept  # append-only: the first session's calls stay
    b = Bench(out)
    plans = [e for e in store.read_events(out / store.ARCHS) if e["event"] == "plan"]
    assert len(plans) == 2
    for w in b.workloads():
        for s in (0, 1):
            c = b.curves[w][s]
            assert c.converged and c.trials <= 4
            assert all(p2[0] > p1[0] and p2[1] <= p1[1] and p2[2] >= p1[2] for p1, p2 in zip(c.points, c.points[1:]))
        assert b.untuned[w] > 0
    for a in b.measured():
        m = a.measured
        assert m["p10_ms"] <= m["median_ms"] <= m["p90_ms"] and set(m["by_threads"]) == {"1", "2"}
        assert m["median_ms"] == min(v["median_ms"] for v in m["by_threads"].values())
        assert {"plan", "plan_phase", "estimate", "compile", "measure"} <= set(m["seconds"])
    info = b.info()
    assert info["machine_key"].startswith("host--") and info["cpu"] and info["versions"]["apache-tvm"] != "absent"
    # the converged database compiles any of its architectures: a replayed search runs on it
    r = subprocess.run([sys.executable, "-m", "cosearch", "search", "--evaluator", f"replay:{out}",
                        "--space", "nb201", "--space-opt", "C=4", "--space-opt", "N=1", "--space-opt", "resolution=8",
                        "--estimator", "params", "--budget", "2m", "--calibration-archs", "2",
                        "--out", str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["pareto"]
    # anyone on the same CPU compiles any of its architectures from the shipped database
    r = subprocess.run([sys.executable, "-m", "cosearch", "bench", "export", str(out), "--arch", TINY_ARCHS[0],
                        "--out", str(tmp_path / "art")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "art" / "meta.json").read_text())
    assert meta["latency_ms"]["median"] > 0
    assert all(t["source"] in ("db", "untuned") for t in meta["tasks"]) and any(t["source"] == "db" for t in meta["tasks"])
    # a second build on the finished folder does nothing new
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout) == {**prog, "build_seconds": prog["build_seconds"]}
    assert time.time() - t0 < 120
