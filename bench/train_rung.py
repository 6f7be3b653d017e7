"""The joint search's training rung with and without its learning-curve early stop,
side by side on the same seeds: epochs (training time) saved and the front's quality.

Runs on ``FakeEvaluator`` (simulated compiler and simulated learning curves, the
*real* ``LearningCurvePredictor`` rule and search loop), so it takes seconds and the
true final accuracy of every stopped architecture is known: ``hv_if_completed`` is
the hypervolume the front would have had if the stopped archs had been trained to
the end (at their measured latency). The real-TVM version is a `cosearch search
--estimator naswot+train` run (minutes per architecture on this CPU).

    python bench/train_rung.py                    # seeds 0,1,2; 1500 simulated s; 6 epochs

Writes bench/results/train_rung.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results  # noqa: E402


def _run(seed: int, budget: float, epochs: int, early_stop: bool, work: Path) -> dict:
    from cosearch.search import pareto
    from cosearch.search.api import run_search
    from cosearch.search.testing import FakeEvaluator
    from cosearch.search.journal import read_journal
    from cosearch.search.config import SearchConfig
    from cosearch.search.loop import Search
    from cosearch.space import create_space

    cfg = SearchConfig(strategy="joint", space="nb201", estimator="synthetic+train", evaluator="fake",
                       budget_s=budget, seed=seed, train_epochs=epochs)
    name = f"s{seed}-{'stop' if early_stop else 'full'}"
    orig = Search.needed_accuracy
    if not early_stop:
        Search.needed_accuracy = lambda self, ms: None  # no threshold: the rule never stops
    try:
        res = run_search(cfg, work / name, schedules=str(work / name / "sched"), progress=False)
    finally:
        Search.needed_accuracy = orig
    evs = read_journal(work / name / "journal.jsonl")
    tr = [e for e in evs if e["event"] == "accuracy" and e.get("fidelity") == "train"]
    meas = {e["key"]: e["ms"] for e in evs if e["event"] == "measure" and e.get("ok") and not e.get("final")}
    arch = {e["key"]: e["arch"] for e in evs if e["event"] == "propose"}
    ev = FakeEvaluator(create_space("nb201"), None, schedules_dir=work / "probe", seed=seed, train_epochs=epochs)
    obj = pareto.Objectives.from_dict(res["objectives"])
    done = [(e["final"], meas[e["key"]]) for e in tr if not e["stopped"]]
    full = done + [(ev.true_accuracy(arch[e["key"]]), meas[e["key"]]) for e in tr if e["stopped"]]
    t = res["training"]
    return {"seed": seed, "early_stop": early_stop, "proposed": res["proposed"], "trained": t["trained"],
            "stopped": t["stopped"], "epochs_run": t["epochs_run"], "epochs_planned": t["epochs_planned"],
            "train_s": t["seconds"], "hv": res["hypervolume"], "hv_search": pareto.hypervolume(done, obj),
            "hv_if_completed": pareto.hypervolume(full, obj), "front": len(res["pareto"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=float, default=1500.0, help="simulated seconds per run")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for stop in (True, False):
                rows.append(_run(seed, args.budget, args.epochs, stop, Path(tmp)))
    by = {(r["seed"], r["early_stop"]): r for r in rows}
    summary = []
    for seed in seeds:
        a, b = by[(seed, True)], by[(seed, False)]
        summary.append({"seed": seed, "epochs_share": a["epochs_run"] / a["epochs_planned"],
                        "stopped": a["stopped"], "trained_with_stop": a["trained"], "trained_without": b["trained"],
                        "hv_with_stop": a["hv"], "hv_without": b["hv"], "hv_ratio": a["hv"] / b["hv"] if b["hv"] else None,
                        "stop_kept_share_of_completed": a["hv_search"] / a["hv_if_completed"]
                        if a["hv_if_completed"] else None})
    path = write_results("train_rung", vars(args), rows, out=args.out, summary=summary,
                         note="FakeEvaluator (simulated compiler and curves), real learning-curve rule and loop; "
                              "same simulated budget with and without the rule's early stop")
    print_table(summary, ["seed", "epochs_share", "stopped", "trained_with_stop", "trained_without", "hv_with_stop",
                          "hv_without", "hv_ratio", "stop_kept_share_of_completed"])
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
