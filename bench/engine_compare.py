"""Joint vs sequential on the real engine: N seeds x one wall budget, fronts re-measured interleaved.

    python bench/engine_compare.py --space nb201 --seeds 0,1,2 --budget 10m --work-dir /tmp/engine-cmp
    python bench/engine_compare.py --space mbv2 --estimator naswot --seeds 0,1,2 --budget 10m --work-dir ...

Per seed one ``cosearch compare --strategies joint,sequential`` (``run_compare``) on the
named target, real TVM, each strategy from its own copy of an empty schedule database and
one reference point fixed before either runs. Then every exported front artifact of both
strategies is loaded and re-timed in one process, interleaved: ``--rounds`` rounds, each
timing every artifact at 1 and 2 threads in turn (``measure_interleaved``, one round each),
so machine noise hits both strategies alike; an artifact's latency is the median of its
better thread count's samples. The hypervolume of each re-measured front (the compare's
reference point, the same accuracies) is the comparison; the search's own final figure is
kept beside it.

nb201 accuracy is the ``table:`` oracle over the 725 NAS-Bench-201 architectures of
``../shared/data/nb201_subset725.csv`` (CIFAR-10 200-epoch validation accuracy, NASLib,
Apache-2.0; derived ``arch,accuracy`` CSV in ``bench/results/nb201_subset725_table.csv``).
Where a co-search benchmark of this CPU exists (``bench/results/cobench-<space>-<machine key>``),
each front is also scored against its true front (``cosearch.cobench.score``); a benchmark
of another CPU is never used.

Resumable: a seed whose ``compare.json`` exists is reused, a half-finished one is run again
(a compare is one unit). Times things: run it alone on a quiet machine. Writes
``bench/results/engine_compare_<space>.json`` (resolved config, CPU, machine key) and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine  # noqa: E402

STRATEGIES = ("joint", "sequential")


def run_seed(cfg, out: Path) -> dict:
    from cosearch.search.compare import run_compare

    done = out / "compare.json"
    if done.is_file():
        return json.loads(done.read_text())
    if out.exists():  # a compare killed mid-way: it is one unit, run it again
        shutil.rmtree(out)
    start = out.parent / f"{out.name}-start"
    if start.exists():
        shutil.rmtree(start)
    return run_compare(cfg, list(STRATEGIES), out, schedules=str(start), progress=False)


def remeasure(out: Path, data: dict, rounds: int) -> dict[str, list[dict]]:
    """Every front artifact of every strategy, timed interleaved at 1 and 2 threads."""
    from cosearch.compile.deploy.artifact import load_artifact
    from cosearch.compile.deploy.measure import MeasureConfig, measure_interleaved

    items = []
    for s in STRATEGIES:
        for p in data["strategies"][s]["pareto"]:
            art = load_artifact(out / p["artifact"])
            items.append((s, p, art, {1: [], 2: []}))
    cfg = MeasureConfig(repeat=5, warmup=1)
    for _ in range(rounds):
        for _s, _p, art, samples in items:
            lat = measure_interleaved(art.module, art.inputs, threads=(1, 2), rounds=1, config=cfg)
            for t, v in lat.items():
                samples[t].append(v.median_ms)
    res: dict[str, list[dict]] = {s: [] for s in STRATEGIES}
    for s, p, _art, samples in items:
        med = {t: statistics.median(v) for t, v in samples.items()}
        t_best = min(med, key=med.get)
        res[s].append({"arch": p["arch"], "accuracy": p["accuracy"], "search_ms": p["latency_ms"],
                       "remeasured_ms": med[t_best], "threads": t_best,
                       "by_threads_ms": {str(t): m for t, m in med.items()}})
    return res


def bench_scores(space: str, key: str, oracle: str, out: Path) -> dict | None:
    bench = RESULTS / f"cobench-{space}-{key}"
    if not bench.is_dir() or not oracle.startswith("table:"):
        return None
    from cosearch.cobench.score import Truth

    truth = Truth(str(bench), oracle)
    return {"bench": str(bench.relative_to(RESULTS.parent.parent)), "true_front": truth.summary(),
            "strategies": {s: truth.score_result(out / s) for s in STRATEGIES}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="nb201", choices=["nb201", "mbv2"])
    ap.add_argument("--estimator", default=None, help="default: the nb201 table oracle / naswot for mbv2")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--target", default="host")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved re-measurement rounds")
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from bench.search_efficiency import derived_table
    from cosearch.compile.target import load_target
    from cosearch.search import pareto
    from cosearch.search.config import SearchConfig, parse_duration

    budget = parse_duration(args.budget)
    est = args.estimator or (f"table:{derived_table(RESULTS / 'nb201_subset725_table.csv')}"
                             if args.space == "nb201" else "naswot")
    key = load_target(args.target).machine_key()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        cfg = SearchConfig(space=args.space, estimator=est, target=args.target, budget_s=budget, seed=seed,
                           evaluator="engine")
        out = work / f"{args.space}-s{seed}"
        t0 = time.perf_counter()
        data = run_seed(cfg, out)
        print(f"seed {seed}: compare done ({time.perf_counter() - t0:.0f} s); re-measuring the fronts", flush=True)
        obj = pareto.Objectives.from_dict(data["reference_point"])
        fronts = remeasure(out, data, args.rounds)
        row = {"seed": seed, "reference_point": data["reference_point"], "strategies": {}}
        for s in STRATEGIES:
            r = data["strategies"][s]
            res = json.loads((out / s / "result.json").read_text())
            pts = [(p["accuracy"], p["remeasured_ms"]) for p in fronts[s]]
            row["strategies"][s] = {
                "hv_remeasured": pareto.hypervolume(pts, obj), "hv_search_final": r["hypervolume"],
                "evaluated": r["evaluated"], "trials": r["trials"], "wall_s": r["wall_s"],
                "proposed": res.get("proposed"), "stopped_early": res.get("stopped_early"),
                "front_vs_converged": res.get("front_vs_converged"),
                "predictors": res.get("predictors"), "front": fronts[s]}
        j, q = (row["strategies"][s]["hv_remeasured"] for s in STRATEGIES)
        row["joint_over_sequential"] = j / q if q > 0 else None
        row["benchmark"] = bench_scores(args.space, key, est, out)
        rows.append(row)
        print(f"seed {seed}: hypervolume re-measured joint {j:.4f} sequential {q:.4f} ratio {row['joint_over_sequential']:.4f}",
              flush=True)
    ratios = [r["joint_over_sequential"] for r in rows if r["joint_over_sequential"]]
    result = {"bench": "engine_compare", "machine": machine() | {"machine_key": key}, "when": time.strftime("%Y-%m-%d"),
              "config": vars(args) | {"budget_s": budget, "estimator": est, "strategies": list(STRATEGIES)},
              "source": "nb201 table: shared/data/nb201_subset725.csv (NASLib NAS-Bench-201, Apache-2.0)",
              "summary": {"seeds": len(rows), "joint_ge_sequential": sum(x >= 1.0 for x in ratios),
                          "ratio_median": statistics.median(ratios) if ratios else None,
                          "ratio_min": min(ratios) if ratios else None},
              "rows": rows,
              "note": "hv_remeasured: the exported fronts re-timed in one process, interleaved, each artifact at its "
                      "better of 1 and 2 threads; hv_search_final: the search's own final measurement"}
    path = Path(args.out) if args.out else RESULTS / f"engine_compare_{args.space}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'seed':>4} {'joint hv':>9} {'seq hv':>9} {'ratio':>7} {'j trials':>8} {'s trials':>8} {'j eval':>6} {'s eval':>6}")
    for r in rows:
        j, q = r["strategies"]["joint"], r["strategies"]["sequential"]
        print(f"{r['seed']:>4} {j['hv_remeasured']:>9.4f} {q['hv_remeasured']:>9.4f} {r['joint_over_sequential']:>7.4f} "
              f"{j['trials']:>8} {q['trials']:>8} {j['evaluated']:>6} {q['evaluated']:>6}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
