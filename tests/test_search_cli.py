"""`cosearch search` from the command line: resume after kill -9 (FakeEvaluator run in a
subprocess), bad input -> one line + exit 2 + nothing written, compare."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import kill_when

from cosearch.search.journal import read_journal

FAKE = ["--evaluator", "fake", "--estimator", "synthetic", "--space", "nb201", "--no-progress"]


def _cmd(verb: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cosearch", verb, *args]


def _run(verb: str, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(verb, *args), capture_output=True, text=True, timeout=300, env=env)


def test_resume_after_kill_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    def ready() -> bool:
        evs = read_journal(out / "journal.jsonl") if (out / "journal.jsonl").exists() else []
        return sum(e["event"] == "measure" for e in evs) >= 6

    kill_when(_cmd("search", *FAKE, "--max-archs", "30", "--seed", "2", "--out", str(out)), ready,
              env={"COSEARCH_FAKE_SLEEP": "0.03"})
    before = read_journal(out / "journal.jsonl")
    assert not any(e["event"] == "done" for e in before), "the run ended before the kill; slow it down"
    done_keys = {e["key"] for e in before if e["event"] == "measure" and e.get("ok")}
    r = _run("search", "--resume", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    evs = read_journal(out / "journal.jsonl")
    starts = [e for e in evs if e["event"] == "start"]
    assert [s["resume"] for s in starts] == [False, True]
    # no completed evaluation repeated: one search measurement per key (re-measures and finals excepted)
    first = Counter(e["key"] for e in evs if e["event"] == "measure" and not e.get("remeasure") and not e.get("final"))
    assert max(first.values()) == 1
    # nothing lost: what was measured before the kill is still in the archive / result
    result = json.loads((out / "result.json").read_text())
    assert result["proposed"] == 30
    proposed = [e["key"] for e in evs if e["event"] == "propose"]
    completed = {e["key"] for e in evs if e["event"] in ("measure", "stop_arch", "fail")}
    assert done_keys <= completed
    # every proposal ends decided exactly once, except those in flight at the kill (proposed and
    # not yet decided: forgotten by design, docs/search.md "Resume"), at most one generation
    # (a deferred arch is stopped, and may later be promoted and measured: one decision)
    deferred = {e["key"] for e in evs if e["event"] == "stop_arch" and str(e.get("reason", "")).startswith("deferred")}
    decided = Counter(e["key"] for e in evs if e["event"] == "fail"
                      or (e["event"] == "stop_arch" and e["key"] not in deferred)
                      or (e["event"] == "measure" and not e.get("remeasure") and not e.get("final")))
    assert max(decided.values()) == 1
    decided = set(decided) | deferred
    decided_before = {e["key"] for e in before if e["event"] in ("measure", "stop_arch", "fail")}
    in_flight = {e["key"] for e in before if e["event"] == "propose"} - decided_before
    assert set(proposed) == decided | in_flight and len(set(proposed)) == 30
    assert len(in_flight) <= 16  # --population: one generation
    assert result["evaluated"] + result["stopped_early"] + result["failed"] == len(decided)
    ts = [e["t"] for e in evs]
    assert ts[len(before)] >= before[-1]["t"]  # time is monotonic across the resume
    # a finished search resumed again does no new work
    r2 = _run("search", "--resume", str(out), "--no-progress")
    assert r2.returncode == 0 and len(read_journal(out / "journal.jsonl")) == len(evs)


@pytest.mark.parametrize("args, needle", [
    (["--strategy", "greedy", "--max-archs", "3"], "unknown strategy 'greedy'"),
    (["--space", "nb999", "--max-archs", "3"], "unknown space 'nb999'"),
    (["--estimator", "oracle", "--max-archs", "3"], "unknown estimator 'oracle'"),
    (["--budget", "0s"], "--budget"),
    (["--budget", "soon"], "--budget"),
    (["--max-archs", "-2"], "--max-archs"),
    ([], "give a budget"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    out = tmp_path / "out"
    base = [a for a in FAKE]
    for flag in ("--space", "--estimator"):
        if flag in args:
            i = base.index(flag)
            del base[i:i + 2]
    r = _run("search", *base, *args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_out_and_resume_folders_are_checked(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = _run("search", *FAKE, "--max-archs", "2", "--out", str(other))
    assert r.returncode == 2 and "holds something else" in r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    r = _run("search", "--resume", str(other))
    assert r.returncode == 2 and "not a search folder" in r.stderr
    run = tmp_path / "run"
    r = _run("search", *FAKE, "--max-archs", "3", "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert "cosearch run" in r.stdout and (run / "result.json").exists()
    # the accuracy axis is named for what it holds, in result.json, the summary and the report
    result = json.loads((run / "result.json").read_text())
    assert result["objectives"]["accuracy_label"] == "synthetic score"
    assert "synthetic score" in r.stdout and "synthetic score" in (run / "report.html").read_text()
    r = _run("search", "--resume", str(run), "--max-archs", "4")
    assert r.returncode == 2 and "other settings" in r.stderr and "max_archs" in r.stderr
    r = _run("search", *FAKE, "--max-archs", "3", "--out", str(run))
    assert r.returncode == 2 and "--resume" in r.stderr


def test_compare_gives_each_strategy_its_own_database(tmp_path):
    out = tmp_path / "cmp"
    r = _run("compare", *FAKE, "--budget", "120s", "--strategies", "joint,sequential", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "compare.json").read_text())
    assert set(data["strategies"]) == {"joint", "sequential"}
    ref = data["reference_point"]
    for s in ("joint", "sequential"):
        cfg = json.loads((out / s / "config.json").read_text())
        assert cfg["objectives"] == ref  # identical reference point
        assert Path(cfg["schedules"]).resolve() == (out / s / "schedules").resolve()
        run = data["strategies"][s]
        assert run["curve"][0] == [0.0, 0.0] and run["wall_s"] > 0
        for p in run["pareto"]:
            assert (out / p["artifact"]).is_dir()
    assert "joint" in data["time_to_95"]
    # the printed hypervolume is in the objectives' units (the normalised one can exceed 1)
    from cosearch.search.pareto import Objectives

    obj = Objectives.from_dict(ref)
    assert f"hypervolume: {obj.area_units}" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("joint "))
    assert float(row.split()[1].replace(",", "")) == pytest.approx(obj.area(data["strategies"]["joint"]["hypervolume"]),
                                                                   rel=1e-3)
    r = _run("compare", *FAKE, "--budget", "60s", "--strategies", "joint,greedy", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "greedy" in r.stderr and not (tmp_path / "x").exists()


def _result(hv: float, label: str | None) -> dict:
    obj = {"accuracy_ref": 360.0, "accuracy_best": 400.0, "latency_ref_ms": 300.0, "latency_best_ms": 0.0}
    if label is not None:
        obj["accuracy_label"] = label
    return {"strategy": "joint", "proposed": 30, "evaluated": 14, "stopped_early": 16, "failed": 0, "trials": 174,
            "wall_s": 108.1, "hypervolume": hv, "objectives": obj,
            "pareto": [{"arch": "a", "accuracy": 420.0, "latency_ms": 30.0}]}


def test_summary_names_the_accuracy_axis_and_prints_no_normalised_value_above_1(tmp_path):
    """A front more accurate than the calibration's best gives a normalised hypervolume above 1
    (1.35 here); the summary prints the hypervolume in the objectives' units instead."""
    from cosearch.search.api import summary_text

    text = summary_text(tmp_path, _result(1.35, "naswot score"), None)
    head = text.splitlines()[:3]
    assert "1.35" not in "\n".join(head)
    assert f"hypervolume {1.35 * 40 * 300:,.0f} naswot score × ms" in head[1]
    assert "reference point (naswot score 360, 300 ms)" in head[1]
    assert head[2].split()[:3] == ["#", "naswot", "score"] and "accuracy" not in head[2]
    assert "420.000" in text.splitlines()[3]
    # a result written before the axis had a name keeps the generic name
    assert "accuracy" in summary_text(tmp_path, _result(0.5, None), None).splitlines()[2]
