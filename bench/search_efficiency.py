"""Search efficiency: joint vs sequential vs brute, hypervolume vs wall time.

    python bench/search_efficiency.py --evaluator engine --budget 10m --seeds 0,1,2   # real TVM, this CPU (default)
    python bench/search_efficiency.py --evaluator fake      # the loop's logic only, never a result
    (strategy comparisons on recorded ground truth: bench/cobench.py, a replay of a benchmark)

Per space and seed, ``cosearch.search.compare.run_compare`` runs the three strategies at
the same wall budget, each on its own copy of an empty schedule database, with one
reference point fixed before the run. Reported: final hypervolume per strategy, the
time joint needs to reach 95 % / 99 % of *brute's* final hypervolume and the speed-up
``brute wall / joint time-to-x``, and the joint run's predictor accuracy (accuracy
predictor online RMSE / Kendall tau, latency calibration online error, task model
log-RMSE) and early-stop counts.

Spaces: ``nb201`` with a ``table:`` estimator over the 725 NAS-Bench-201 architectures
of ``../shared/data/nb201_subset725.csv`` (CIFAR-10 200-epoch validation accuracy from
NASLib's NAS-Bench-201 data, Apache-2.0; the bench writes a derived ``arch,accuracy``
CSV to ``bench/results/nb201_subset725_table.csv``, rows with dataset == cifar10), the
search restricted to those archs; and ``mbv2`` with a training-free estimator
(``naswot`` on the engine; the FakeEvaluator's synthetic score with ``--evaluator fake``).

With ``--evaluator fake`` every number comes from the simulated compiler: it measures
the *loop* (proposals, early stopping, task sharing), not TVM. Writes
``bench/results/search_efficiency.json`` and ``search_efficiency.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, ROOT, machine  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "nb201_subset725.csv"


def derived_table(out: Path) -> Path:
    rows = []
    with open(SOURCE, newline="") as fh:
        for r in csv.DictReader(fh):
            if r.get("dataset", "cifar10") == "cifar10":
                rows.append((r["arch"], r["val_accuracy"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "accuracy"])
        w.writerows(rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # strategy comparisons on recorded ground truth: bench/cobench.py (replay of a benchmark);
    # fake measures the loop's logic only and is never a result
    ap.add_argument("--evaluator", default="engine", choices=["fake", "engine"])
    ap.add_argument("--budget", default=None, help="wall budget per strategy (default 600s fake / 10m engine)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--spaces", default="nb201,mbv2")
    ap.add_argument("--target", default="host")
    ap.add_argument("--trials-per-task", type=int, default=None)
    ap.add_argument("--subset", type=int, default=200, help="brute's subset (it stops at the budget)")
    ap.add_argument("--keep", default=None, help="keep the run folders here")
    args = ap.parse_args()

    from cosearch.search.compare import run_compare, time_to
    from cosearch.search.config import SearchConfig, parse_duration

    budget = parse_duration(args.budget or ("600s" if args.evaluator == "fake" else "10m"))
    table = derived_table(RESULTS / "nb201_subset725_table.csv")
    estimators = {"nb201": f"table:{table}",
                  "mbv2": "synthetic" if args.evaluator == "fake" else "naswot"}
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="search-eff-"))
    rows = []
    for space in [s for s in args.spaces.split(",") if s]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            kw = {} if args.trials_per_task is None else {"trials_per_task": args.trials_per_task}
            cfg = SearchConfig(space=space, estimator=estimators[space], target=args.target, budget_s=budget,
                               seed=seed, evaluator=args.evaluator, subset=args.subset, **kw)
            out = work / f"{space}-s{seed}"
            if out.exists():
                shutil.rmtree(out)
            t0 = time.perf_counter()
            # an empty starting database per compare (engine: under the run folder, not the repo's schedules/)
            data = run_compare(cfg, ["joint", "sequential", "brute"], out, schedules=str(work / f"{space}-s{seed}-start"),
                               progress=False)
            st = data["strategies"]
            brute_hv = st["brute"]["hypervolume"]
            joint_res = json.loads((out / "joint" / "result.json").read_text())
            row = {"space": space, "seed": seed, "budget_s": budget, "elapsed_s": time.perf_counter() - t0,
                   "hypervolume": {s: r["hypervolume"] for s, r in st.items()},
                   "curves": {s: r["curve"] for s, r in st.items()},
                   "evaluated": {s: r["evaluated"] for s, r in st.items()},
                   "stopped_early": {s: r["stopped_early"] for s, r in st.items()},
                   "trials": {s: r["trials"] for s, r in st.items()},
                   "wall_s": {s: r["wall_s"] for s, r in st.items()},
                   "joint_predictors": joint_res.get("predictors"),
                   "joint_latency_calibration": joint_res.get("latency_calibration")}
            for level in (0.95, 0.99):
                t = time_to(st["joint"]["curve"], level * brute_hv) if brute_hv > 0 else None
                row[f"joint_time_to_{int(level * 100)}_of_brute_s"] = t
                row[f"speedup_{int(level * 100)}"] = (st["brute"]["wall_s"] / t) if t else None
            rows.append(row)
            print(f"{space} seed {seed}: HV " + ", ".join(f"{s} {h:.4f}" for s, h in row["hypervolume"].items())
                  + f"; joint reaches 95% of brute at {row['joint_time_to_95_of_brute_s']} s "
                    f"(speed-up {row['speedup_95']})", flush=True)
    result = {"bench": "search_efficiency", "evaluator": args.evaluator, "machine": machine(),
              "config": vars(args) | {"budget_s": budget, "estimators": estimators},
              "source": "nb201: shared/data/nb201_subset725.csv (NASLib NAS-Bench-201, Apache-2.0), cifar10 val_accuracy",
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_efficiency.json").write_text(json.dumps(result, indent=1) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        spaces = sorted({r["space"] for r in rows})
        fig, axes = plt.subplots(1, len(spaces), figsize=(6 * len(spaces), 4), squeeze=False)
        colors = {"joint": "C0", "sequential": "C1", "brute": "C2"}
        for ax, sp in zip(axes[0], spaces):
            for r in (r for r in rows if r["space"] == sp):
                for s, c in r["curves"].items():
                    xs, ys = zip(*c)
                    ax.step(xs, ys, where="post", color=colors[s], alpha=0.7,
                            label=s if r["seed"] == rows[0]["seed"] else None)
            ax.set_title(f"{sp} ({args.evaluator})")
            ax.set_xlabel("wall s")
            ax.set_ylabel("hypervolume")
            ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "search_efficiency.png", dpi=110)
    except ImportError:
        pass
    print(f"{'space':<6} {'seed':>4} {'joint':>7} {'seq':>7} {'brute':>7} {'t95 s':>7} {'x95':>6} {'t99 s':>7} {'x99':>6}")
    for r in rows:
        h = r["hypervolume"]
        f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        print(f"{r['space']:<6} {r['seed']:>4} {h['joint']:>7.4f} {h['sequential']:>7.4f} {h['brute']:>7.4f} "
              f"{f(r['joint_time_to_95_of_brute_s']):>7} {f(r['speedup_95']):>6} "
              f"{f(r['joint_time_to_99_of_brute_s']):>7} {f(r['speedup_99']):>6}")
    print(f"wrote {RESULTS / 'search_efficiency.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
