"""write_report / write_compare_report on synthetic run and compare folders
(journal events per the search contract, written by hand here)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from cosearch.errors import CosearchError
from cosearch.search.pareto import Objectives, hypervolume, pareto_indices
from cosearch.search.report import write_compare_report, write_report

OBJ = Objectives(accuracy_ref=0.5, accuracy_best=0.95, latency_ref_ms=20.0, latency_best_ms=1.0)


def _arch(i: int) -> str:
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    r = random.Random(i)
    o = [r.choice(ops) for _ in range(6)]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|#{i}"


def make_run(root: Path, n_archs: int = 60, seed: int = 0, torn: bool = True) -> dict:
    """A synthetic run folder: config.json, journal.jsonl (~8 events per architecture), result.json,
    pareto/<i>/ artifact folders. Returns result.json's content."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    ev: list[dict] = [{"v": 1, "event": "start", "t": 0.0, "resume": False, "config_hash": "abc"}]
    t = 0.0
    measured: list[tuple[float, float, str]] = []
    for n in range(n_archs):
        key, arch = f"k{n}", _arch(n)
        t += rng.uniform(0.5, 2.0)
        ev.append({"v": 1, "event": "propose", "t": t, "key": key, "arch": arch, "n": n})
        cheap = rng.uniform(0.4, 0.95)
        ev.append({"v": 1, "event": "accuracy", "t": t, "key": key, "fidelity": "cheap", "value": cheap,
                   "seconds": 0.01})
        full = min(0.97, cheap + rng.gauss(0, 0.03))
        ev.append({"v": 1, "event": "accuracy", "t": t + 0.1, "key": key, "fidelity": "full", "value": full,
                   "seconds": 0.5})
        pred = rng.uniform(1.5, 25.0)
        ev.append({"v": 1, "event": "latency_pred", "t": t + 0.2, "key": key, "ms": pred,
                   "source": rng.choice(["model", "db"]), "missing_tasks": rng.randint(0, 3)})
        if n % 7 == 3:
            ev.append({"v": 1, "event": "stop_arch", "t": t + 0.3, "key": key, "reason": "dominated",
                       "acc_opt": full + 0.01, "lat_opt_ms": pred * 0.9})
            continue
        if n % 11 == 5:
            ev.append({"v": 1, "event": "fail", "t": t + 0.3, "key": key, "stage": "compile",
                       "error": "TVMError: something <bad> & odd\nsecond line"})
            continue
        ev.append({"v": 1, "event": "tune", "t": t + 0.4, "workloads": [f"w{n % 5}"], "trials": 32,
                   "seconds": 1.0, "gain_pred_us": 5.0, "gain_us": 4.0})
        ms = pred * rng.uniform(1.1, 2.2)
        ev.append({"v": 1, "event": "measure", "t": t + 0.6, "key": key, "ms": ms, "pred_ms": pred, "ok": True,
                   "error": None, "seconds": 0.3})
        measured.append((full, ms, key))
        front = [measured[i] for i in pareto_indices(measured)]
        ev.append({"v": 1, "event": "front", "t": t + 0.7, "hypervolume": hypervolume(front, OBJ),
                   "points": [list(p) for p in front]})
        if n % 13 == 0:
            ev.append({"v": 1, "event": "stop_task", "t": t + 0.8, "workload": f"w{n % 5}", "reason": "low gain",
                       "gain_pred_us": 0.5})
    ev.append({"v": 1, "event": "done", "t": t + 1.0, "reason": "max_archs", "wall_s": t + 1.0})
    lines = [json.dumps(e) for e in ev]
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"v": 1, "event": "measure", "t": 99'  # killed mid-line
    (root / "journal.jsonl").write_text(text)
    front = [measured[i] for i in pareto_indices(measured)]
    pareto = []
    for i, (acc, ms, key) in enumerate(front):
        (root / "pareto" / str(i)).mkdir(parents=True, exist_ok=True)
        n = int(key[1:])
        pareto.append({"arch": _arch(n), "key": key, "accuracy": acc, "latency_ms": ms,
                       "latency_pred_ms": ms / 1.5, "artifact": f"pareto/{i}"})
    result = {"pareto": pareto, "hypervolume": hypervolume(front, OBJ), "objectives": OBJ.to_dict(),
              "evaluated": len(measured), "stopped_early": sum(1 for e in ev if e["event"] == "stop_arch"),
              "trials": 32 * len(measured), "wall_s": t + 1.0, "latency_calibration": {"scale": 1.6}}
    (root / "result.json").write_text(json.dumps(result))
    config = {"command": "search", "strategy": "joint", "space": "nb201", "estimator": "naswot",
              "target": {"name": "host", "identity": "llvm -mcpu=x"}, "budget": "30m", "seed": seed,
              "objectives": OBJ.to_dict(), "versions": {"tvm": "0.27.0"}}
    (root / "config.json").write_text(json.dumps(config))
    return result


def _html(path: Path) -> str:
    assert path.exists()
    return path.read_text()


def test_report_of_a_run(tmp_path):
    result = make_run(tmp_path / "run")
    out = write_report(tmp_path / "run")
    assert out == tmp_path / "run" / "report.html"
    html = _html(out)
    for name in ("front", "hypervolume", "latency", "accuracy", "decisions"):
        png = tmp_path / "run" / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert html.count("data:image/png;base64,") == 5
    assert len(result["pareto"]) >= 2
    for p in result["pareto"]:
        assert p["arch"] in html  # the arch string, escaped-safe (no < > & in it)
        assert f"cosearch run {tmp_path / 'run' / p['artifact']}" in html
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html
    # journal contents surfaced
    assert "torn" in html  # the killed last line is reported
    assert "TVMError: something &lt;bad&gt; &amp; odd" in html  # escaped, first line only
    assert "dominated" in html and "low gain" in html
    assert "median |error|" in html
    assert "No architecture was evaluated" not in html


def test_latency_error_numbers(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ev = [
        {"v": 1, "event": "latency_pred", "t": 0.0, "key": "a", "ms": 10.0, "source": "db"},
        {"v": 1, "event": "measure", "t": 1.0, "key": "a", "ms": 20.0, "pred_ms": None, "ok": True},  # 50 %
        {"v": 1, "event": "measure", "t": 2.0, "key": "b", "ms": 10.0, "pred_ms": 9.0, "ok": True},  # 10 %
        {"v": 1, "event": "measure", "t": 3.0, "key": "c", "ms": 10.0, "pred_ms": 10.0, "ok": True},  # 0 %
        {"v": 1, "event": "measure", "t": 4.0, "key": "d", "ms": None, "pred_ms": 3.0, "ok": False, "error": "x"},
    ]
    (run / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in ev) + "\n")
    html = _html(write_report(run))
    assert "median |error|" in html
    assert re.search(r"<td>all</td><td class=\"n\">3</td><td class=\"n\">10.0 %</td><td class=\"n\">50.0 %</td>", html)
    assert "result.json is missing" in html and "config.json is missing" in html
    assert (run / "report" / "latency.png").exists()


def test_report_of_an_empty_run(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"strategy": "joint", "objectives": OBJ.to_dict()}))
    (run / "journal.jsonl").write_text(
        json.dumps({"v": 1, "event": "start", "t": 0.0, "resume": False, "config_hash": "x"}) + "\n"
        + json.dumps({"v": 1, "event": "done", "t": 1.0, "reason": "budget", "wall_s": 1.0}) + "\n")
    (run / "result.json").write_text(json.dumps({"pareto": [], "hypervolume": 0.0, "evaluated": 0}))
    html = _html(write_report(run))
    assert "No architecture was evaluated (0 evaluated)" in html
    assert "No Pareto point." in html
    assert "result.json has no &#x27;trials&#x27;" in html  # missing optional fields are reported
    assert not (run / "report" / "front.png").exists()


def test_report_of_a_single_point_run_and_stale_plots(tmp_path):
    run = tmp_path / "one"
    make_run(run, n_archs=1, torn=False)
    res = json.loads((run / "result.json").read_text())
    assert res["evaluated"] == 1 and len(res["pareto"]) == 1
    (run / "report").mkdir()
    (run / "report" / "accuracy.png").write_bytes(b"old")
    html = _html(write_report(run))
    assert res["pareto"][0]["arch"] in html
    assert (run / "report" / "front.png").exists()
    assert (run / "report" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_report_bad_folders(tmp_path):
    with pytest.raises(CosearchError, match="not a folder"):
        write_report(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    with pytest.raises(CosearchError, match="not a search run folder"):
        write_report(tmp_path / "other")


def test_report_of_500_events_reads_once_and_draws_each_plot_once(tmp_path, monkeypatch):
    """What keeps the report of a long run fast, checked without a clock (the cores are shared):
    the journal is read once, each plot is one figure (none per event) with fixed margins
    (a constrained or tight layout engine costs ~0.2 s a figure), and every event is counted."""
    from cosearch import jsonl
    from cosearch.search.report import plots

    make_run(tmp_path / "big", n_archs=80, seed=3)
    n = len((tmp_path / "big" / "journal.jsonl").read_text().splitlines())
    assert n >= 500
    reads, figures = [], []
    real_read, real_png = jsonl.read, plots.png
    monkeypatch.setattr(jsonl, "read", lambda path, **kw: reads.append(path) or real_read(path, **kw))
    monkeypatch.setattr(plots, "png", lambda fig: figures.append(fig) or real_png(fig))
    html = _html(write_report(tmp_path / "big"))
    assert reads == [tmp_path / "big" / "journal.jsonl"]
    assert len(figures) == 5 == html.count("data:image/png;base64,")  # no training rung in this run
    assert all(f.get_layout_engine() is None for f in figures)
    assert re.search(r'<div class="v">80</div><div class="l">proposed</div>', html)


def _make_compare(root: Path) -> dict:
    strategies = {}
    for s, (scale, seed) in {"joint": (1.0, 1), "sequential": (0.8, 2), "brute": (1.02, 3)}.items():
        make_run(root / s, n_archs=20, seed=seed, torn=False)
        res = json.loads((root / s / "result.json").read_text())
        curve = [[10.0 * i, min(1.0, scale * res["hypervolume"] * (1 - 0.5 ** (i + 1)))] for i in range(8)]
        strategies[s] = {"hypervolume": curve[-1][1], "wall_s": 80.0, "curve": curve,
                         "pareto": [{"arch": p["arch"], "accuracy": p["accuracy"], "latency_ms": p["latency_ms"],
                                     "artifact": f"{s}/{p['artifact']}"} for p in res["pareto"]]}
    data = {"reference_point": OBJ.to_dict(), "strategies": strategies, "time_to_95": {"joint": 30.0},
            "time_to_99": {"joint": 50.0}}
    (root / "compare.json").write_text(json.dumps(data))
    return data


def test_compare_report(tmp_path):
    data = _make_compare(tmp_path / "cmp")
    out = write_compare_report(tmp_path / "cmp")
    assert out == tmp_path / "cmp" / "compare.html"
    html = _html(out)
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in html
    for name, s in data["strategies"].items():
        assert f"href=\"{name}/report.html\"" not in html  # no per-run report written yet
        for p in s["pareto"]:
            assert p["arch"] in html
            assert f"cosearch run {tmp_path / 'cmp' / p['artifact']}" in html
    assert "30.0 s" in html and "50.0 s" in html  # time to 95 / 99 %
    write_report(tmp_path / "cmp" / "joint")
    assert "href=\"joint/report.html\"" in _html(write_compare_report(tmp_path / "cmp"))


def test_compare_report_empty_and_missing(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(CosearchError, match="compare.json is missing"):
        write_compare_report(tmp_path / "c")
    (tmp_path / "c" / "compare.json").write_text(json.dumps({"strategies": {"joint": {"hypervolume": 0.0,
                                                                                        "curve": [],
                                                                                        "pareto": []}}}))
    html = _html(write_compare_report(tmp_path / "c"))
    assert "No Pareto point." in html and "no &#x27;reference_point&#x27;" in html
    assert not (tmp_path / "c" / "compare.png").exists()


def test_odd_journal_and_checked_stop_decisions(tmp_path):
    run = tmp_path / "odd"
    run.mkdir()
    lines = [
        json.dumps({"v": 1, "event": "propose", "key": "a", "arch": {"depth": [2, 3]}, "n": 0}),  # no "t"
        json.dumps({"v": 2, "event": "propose", "t": 0.1, "key": "z", "arch": "future", "n": 1}),  # other version
        "[1, 2, 3]",  # not an object
        "{not json",  # malformed, not last
        json.dumps({"v": 1, "event": "accuracy", "t": 0.2, "key": "a", "value": "oops"}),  # bad value
        json.dumps({"v": 1, "event": "accuracy", "t": 0.3, "key": "a", "fidelity": "full", "value": 0.7}),
        json.dumps({"v": 1, "event": "stop_arch", "t": 0.4, "key": "a", "reason": "dominated", "acc_opt": 0.72,
                    "lat_opt_ms": 4.0}),
        json.dumps({"v": 1, "event": "measure", "t": 0.5, "key": "a", "ms": 5.0, "ok": True}),  # measured later
        json.dumps({"v": 1, "event": "front", "t": 0.6, "hypervolume": 0.1, "points": [[0.8, 3.0, "b"]]}),
        json.dumps({"v": 1, "event": "fail", "t": 0.7}),  # no key, stage, error
    ]
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    (run / "result.json").write_text(json.dumps({"pareto": [{"arch": {"depth": [2, 3]}, "accuracy": 0.8,
                                                             "latency_ms": 3.0}], "objectives": {"bad": 1}}))
    html = _html(write_report(run))
    assert "2 malformed journal line(s) ignored" in html
    assert "1 journal line(s) of another version" in html
    assert "Objectives unusable" in html
    # the stopped architecture was measured later: optimistic latency 4.0 <= 5.0, and (0.7, 5.0) is dominated
    # by the final front point (0.8, 3.0)
    assert "1 architecture(s) stopped early were measured later" in html
    assert "for 1, and 1 are indeed dominated" in html
    assert "{&quot;depth&quot;:[2,3]}" in html  # non-string arch rendered as compact JSON
    assert (run / "report" / "front.png").exists()


def test_report_names_the_accuracy_axis_and_shows_hypervolume_in_its_units(tmp_path):
    """A naswot run whose front beats the calibration's best: normalised hypervolume 1.35 > 1.
    The report names the axis "naswot score" (derived from the estimator for a run written
    before objectives carried the name) and shows the hypervolume in score × ms."""
    run = tmp_path / "naswot"
    run.mkdir()
    obj = {"accuracy_ref": 360.0, "accuracy_best": 400.0, "latency_ref_ms": 300.0, "latency_best_ms": 0.0}
    front = [[420.0, 30.0, "a"]]
    ev = [{"v": 1, "event": "start", "t": 0.0},
          {"v": 1, "event": "accuracy", "t": 0.5, "key": "a", "fidelity": "full", "value": 420.0},
          {"v": 1, "event": "measure", "t": 1.0, "key": "a", "ms": 30.0, "ok": True},
          {"v": 1, "event": "front", "t": 1.0, "hypervolume": 1.35, "points": front},
          {"v": 1, "event": "done", "t": 2.0, "wall_s": 2.0}]
    (run / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in ev) + "\n")
    (run / "config.json").write_text(json.dumps({"command": "search", "search": {"estimator": "naswot"},
                                                 "objectives": obj}))
    (run / "result.json").write_text(json.dumps({"pareto": [{"arch": "a", "accuracy": 420.0, "latency_ms": 30.0}],
                                                 "hypervolume": 1.35, "objectives": obj}))
    html = _html(write_report(run))
    area = f"{1.35 * 40.0 * 300.0:,.0f}"
    assert re.search(rf'<div class="v">{area}</div><div class="l">hypervolume \(naswot score × ms\)</div>', html)
    assert ">1.35<" not in html
    assert "<th>naswot score</th>" in html and "<td>naswot score (max)</td>" in html
    # the name stored with the objectives wins
    labelled = obj | {"accuracy_label": "table accuracy (t.csv)"}
    (run / "result.json").write_text(json.dumps({"pareto": [], "hypervolume": 0.0, "objectives": labelled}))
    assert "table accuracy (t.csv) × ms" in _html(write_report(run))
