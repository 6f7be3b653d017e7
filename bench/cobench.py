"""Strategies on a co-search benchmark: joint, sequential and brute replayed, many seeds x budgets.

    python bench/cobench.py --bench bench/results/cobench-nb201-<key> \\
        --oracle table:bench/results/nb201_subset725_table.csv --seeds 20 --budgets 2m,5m,10m,20m \\
        --work-dir /tmp/cobench-runs --out bench/results/cobench_nb201.json

Per (budget, seed) one ``cosearch compare --evaluator replay:BENCH`` (``run_compare``):
every strategy on the same simulated budget and reference point, each from an empty
database, scored against the benchmark's true front (``cosearch.cobench.score``). Reported
per strategy and budget: median and worst hypervolume ratio to the true front at converged
latency (did it find the right architectures?) and at its own measured latency (what it
exported), the median first time it reached 95 % / 99 % of the true front (of the runs that
did; ``reached`` counts them), and its clock over the two brute forces (``independent``: each
architecture tuned alone to convergence; ``shared``: each task once). Runs are resumable
(a finished ``compare.json`` is reused; ``--rescore`` scores it again with today's scoring) and run in ``--workers`` processes (replays time
nothing, so they may run in parallel -- but not beside a benchmark build, which does).
Writes the JSON (with the resolved config and the benchmark's CPU) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine, print_table  # noqa: E402


def one(bench: str, oracle: str, strategies: list[str], budget_s: float, seed: int, out: str,
        rescore: bool = False) -> dict:
    from cosearch.search.compare import run_compare
    from cosearch.search.config import SearchConfig

    out_p = Path(out)
    if (out_p / "compare.json").exists():
        data = json.loads((out_p / "compare.json").read_text())
        if rescore:  # the finished runs scored again with today's scoring (cosearch.cobench.score)
            from cosearch.cobench.score import Truth

            truth = Truth(bench, oracle)
            for s in data["strategies"]:
                data["strategies"][s]["truth"] = truth.score_result(out_p / s)
        return data
    if out_p.exists():
        import shutil

        shutil.rmtree(out_p)  # an unfinished compare: start it again
    from cosearch.cobench.store import open_bench

    b = open_bench(bench)
    sp = b.space_config
    name = sp.pop("space")
    cfg = SearchConfig(space=name, space_settings=sp, estimator=oracle, evaluator=f"replay:{bench}",
                       budget_s=budget_s, seed=seed)
    t0 = time.perf_counter()
    data = run_compare(cfg, strategies, out_p, progress=False)
    data["replay_wall_s"] = time.perf_counter() - t0
    return data


def summarize(runs: list[tuple[float, int, dict]], strategies: list[str]) -> list[dict]:
    rows = []
    for budget in sorted({b for b, _, _ in runs}):
        for s in strategies:
            ts = [d["strategies"][s]["truth"] for b, _, d in runs if b == budget]
            if not ts:
                continue
            conv = [t["ratio_converged"] for t in ts]
            meas = [t["ratio_measured"] for t in ts]

            def med(key):
                vals = [t[key] for t in ts if t.get(key) is not None]
                return (statistics.median(vals) if vals else None), len(vals)

            ex = [t["exported_vs_converged"] for t in ts if t.get("exported_vs_converged", {}).get("points")]
            exr = [e for e in ex if e.get("run", {}).get("points")]
            t95, n95 = med("t95_measured_s")
            t99, n99 = med("t99_measured_s")
            rows.append({"budget_min": budget / 60, "strategy": s, "seeds": len(ts),
                         "ratio_conv_median": statistics.median(conv), "ratio_conv_worst": min(conv),
                         "ratio_meas_median": statistics.median(meas), "ratio_meas_worst": min(meas),
                         "t95_meas_s": t95, "reached95": n95, "t99_meas_s": t99, "reached99": n99,
                         "vs_brute_indep": statistics.median(t["compute_vs_brute"]["independent"] for t in ts),
                         "vs_brute_shared": statistics.median(t["compute_vs_brute"]["shared"] for t in ts),
                         "evaluated": statistics.median(t["evaluated"] or 0 for t in ts),
                         "trials": statistics.median(t["trials"] or 0 for t in ts),
                         # exported front points over their converged latency: median of the runs' medians,
                         # worst point of any run, share of all points within 10 %
                         "exported_median": statistics.median(e["median"] for e in ex) if ex else None,
                         "exported_worst": max(e["max"] for e in ex) if ex else None,
                         "exported_within10": (sum(e["within"] * e["points"] for e in ex)
                                               / sum(e["points"] for e in ex)) if ex else None,
                         # the same over the latency tuning to convergence gives the run itself (the
                         # tuning-seed curves it followed: score.Truth.exported_vs_converged)
                         "exported_run_median": statistics.median(e["run"]["median"] for e in exr) if exr else None,
                         "exported_run_worst": max(e["run"]["max"] for e in exr) if exr else None,
                         "exported_run_within10": (sum(e["run"]["within"] * e["run"]["points"] for e in exr)
                                                   / sum(e["run"]["points"] for e in exr)) if exr else None})
    return rows


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (col, worst, label) in zip(axes, (("ratio_conv_median", "ratio_conv_worst", "at converged latency"),
                                             ("ratio_meas_median", "ratio_meas_worst", "at its own measured latency"))):
        for s in dict.fromkeys(r["strategy"] for r in rows):
            rs = [r for r in rows if r["strategy"] == s]
            x = [r["budget_min"] for r in rs]
            ax.plot(x, [r[col] for r in rs], marker="o", label=f"{s} (median)")
            ax.plot(x, [r[worst] for r in rs], linestyle=":", color=ax.lines[-1].get_color(), label=f"{s} (worst)")
        ax.set_xscale("log")
        ax.set_xlabel("simulated budget (min)")
        ax.set_title(f"hypervolume / true front, {label}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ratio")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    from cosearch.cli_args import duration_s

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--oracle", required=True, help="table:CSV of the accuracies the fronts are scored with")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budgets", default="2m,5m,10m,20m")
    ap.add_argument("--strategies", default="joint,sequential,brute")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--out", default=str(RESULTS / "cobench_nb201.json"))
    ap.add_argument("--finished-only", action="store_true",
                    help="summarise the (budget, seed) runs already finished in --work-dir, run nothing")
    ap.add_argument("--rescore", action="store_true",
                    help="score finished runs again with today's scoring instead of their stored truth")
    args = ap.parse_args(argv)
    from cosearch.cobench.score import Truth
    from cosearch.cobench.store import open_bench

    budgets = [duration_s("--budgets", b.strip()) for b in args.budgets.split(",") if b.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    work = Path(args.work_dir)
    jobs = [(b, s, str(work / f"b{int(b)}" / f"s{s}")) for b in budgets for s in range(args.seeds)]
    if args.finished_only:
        jobs = [j for j in jobs if (Path(j[2]) / "compare.json").exists()]
    t0 = time.perf_counter()
    results: list[tuple[float, int, dict]] = []
    if args.workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [(b, s, pool.submit(one, args.bench, args.oracle, strategies, b, s, d, args.rescore)) for b, s, d in jobs]
            for b, s, f in futs:
                results.append((b, s, f.result()))
                print(f"cobench: budget {b / 60:g} min seed {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    else:
        for b, s, d in jobs:
            results.append((b, s, one(args.bench, args.oracle, strategies, b, s, d, args.rescore)))
            print(f"cobench: budget {b / 60:g} min seed {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = summarize(results, strategies)
    bench = open_bench(args.bench)
    truth = Truth(bench, args.oracle)
    info = bench.info()
    out = Path(args.out)
    data = {"bench": "cobench", "config": {**vars(args), "budgets_s": budgets, "strategies": strategies},
            "machine": machine(), "benchmark": {k: info[k] for k in ("path", "machine_key", "cpu", "tasks",
                                                                     "archs_measured", "tuning_seeds",
                                                                     "trials_per_task", "build_seconds")},
            "truth": {k: v for k, v in truth.summary().items() if k != "true_front"} | {
                "true_front_points": len(truth.front)},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "replay_seconds": time.perf_counter() - t0,
            "rows": rows,
            "runs": [{"budget_s": b, "seed": s, "strategies": {k: {kk: vv for kk, vv in v["truth"].items() if kk != "curve"}
                                                                for k, v in d["strategies"].items()}}
                     for b, s, d in results]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=str) + "\n")
    plot(rows, out.with_suffix(".png"), f"{info['machine_key']} ({info['cpu']}), {info['archs_measured']} archs, "
         f"{args.seeds} seeds; true front from {args.oracle.split('/')[-1]}")
    print_table(rows, ["budget_min", "strategy", "ratio_conv_median", "ratio_conv_worst", "ratio_meas_median",
                       "ratio_meas_worst", "exported_median", "exported_within10", "exported_run_median",
                       "exported_run_within10", "t95_meas_s", "reached95",
                       "vs_brute_indep", "vs_brute_shared", "evaluated", "trials"])
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
