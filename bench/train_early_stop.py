"""Training fidelity: learning-curve prediction, early-stop savings, and how the
training-free front moves once trained.

Samples ``--archs`` distinct NB201 architectures (``--C``, N=5, 32x32), scores each
training-free (``--estimator``, default ``naswot``) and by size (MMACs, the
latency axis of both fronts here: the same for both, so the comparison isolates
the accuracy axis), then trains every one for ``--epochs`` epochs on the embedded
digits (``--limit`` images, seeded split) recording its validation curve and
seconds per epoch. Training is deterministic per seed, so a run stopped at epoch
``k`` would have produced exactly the first ``k`` points; early stopping is then
replayed exactly from the full curves:

1. **Prediction**: leave-one-architecture-out -- a ``LearningCurvePredictor`` fit
   on the other architectures' curves predicts each one's final accuracy from its
   first ``k`` epochs: mean absolute error and Spearman rho / Kendall tau vs the
   real final accuracy, per ``k``.
2. **Early stop**: over ``--orders`` random arrival orders, architectures arrive one
   at a time; the front threshold of one is the best final accuracy among finished
   architectures at its size or smaller (what it needs to be non-dominated); the
   predictor starts empty and learns online from completed runs (warm-up rule until
   ``--min-samples`` curves). Reported: training time spent vs training everything,
   and whether the final front (finished runs) equals the front of training
   everything (hypervolume ratio, architectures wrongly stopped).
3. **Front shift**: the training-free front (score x MMACs) vs the trained front
   (final validation accuracy x MMACs): overlap, Kendall tau of score vs accuracy,
   and the trained hypervolume of the training-free front's architectures.

``python bench/train_early_stop.py`` (defaults: 12 archs, C=8, 4 epochs, 900
images; about 5-10 minutes on 2 loaded cores) writes
``bench/results/train_early_stop.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, write_results  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit", type=int, default=900, help="images of digits used (stratified subset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--estimator", default="naswot")
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--orders", type=int, default=50, help="random arrival orders replayed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-margins", default="0.01,0.05,0.1",
                   help="early-stop replay for each minimum uncertainty margin (comma-separated)")
    p.add_argument("--replay", default=None, metavar="JSON",
                   help="skip training: replay prediction / early stop / front shift on the rows of a previous result")
    p.add_argument("--out", default=str(RESULTS / "train_early_stop.json"))
    return p.parse_args()


def front_threshold(size: float, done: list[tuple[float, float]]) -> float | None:
    """Accuracy needed to be non-dominated at ``size`` given finished (acc, size) points."""
    accs = [a for a, s in done if s <= size]
    return max(accs) if accs else None


def train_all(args, cfg, t_start):
    from cosearch.estimate import create_estimator
    from cosearch.estimate import signals as S
    from cosearch.space import create_space
    from cosearch.train.data import prepare_data
    from cosearch.train.trainer import train_arch

    space = create_space("nb201", C=args.C, N=args.N)
    rng = np.random.default_rng(args.seed)
    archs, keys = [], set()
    while len(archs) < args.archs:
        a = space.sample(rng)
        if space.key(a) not in keys and "nor_conv" in a:  # skip conv-free (untrainable) cells
            keys.add(space.key(a))
            archs.append(a)
    est = create_estimator(args.estimator, seed=args.seed)
    t0 = time.perf_counter()
    data = prepare_data("digits", space.input_shape(archs[0]), 10, seed=args.seed, limit=args.limit)
    t_data = time.perf_counter() - t0
    rows = []
    for i, a in enumerate(archs):
        t0 = time.perf_counter()
        score = est.estimate(space, a).score
        t_est = time.perf_counter() - t0
        macs = S.count_macs(space.build(a, seed=0), space.input_shape(a, 1)) / 1e6
        r = train_arch(space, a, data, cfg)
        rows.append({"arch": a, "score": score, "estimate_s": round(t_est, 3), "mmacs": macs, "curve": r.curve,
                     "final": r.curve[-1], "epoch_s": r.train_seconds, "train_s": round(r.seconds, 3)})
        print(f"[{time.perf_counter() - t_start:6.0f}s] {i + 1}/{len(archs)} final {r.curve[-1]:.3f} "
              f"curve {[round(v, 3) for v in r.curve]} {r.seconds:.1f}s", flush=True)
    return rows, data.config(), t_data, len(data.x_train), len(data.x_val)


def main() -> int:
    args = parse()
    from scipy.stats import kendalltau, spearmanr

    from cosearch.search.pareto import Objectives, hypervolume, pareto_indices
    from cosearch.train.predictor import LearningCurvePredictor
    from cosearch.train.trainer import TrainConfig

    t_start = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    if args.replay:
        import json

        prev = json.loads(Path(args.replay).read_text())
        rows = prev["rows"]
        for k in ("archs", "C", "N", "epochs", "limit", "batch_size", "lr", "estimator", "seed"):
            setattr(args, k, prev["config"][k])
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        data_cfg, t_data = prev["config"]["data"], prev["config"]["data_seconds"]
        n_train, n_val = data_cfg["split"]["train"], data_cfg["split"]["val"]
    else:
        rows, data_cfg, t_data, n_train, n_val = train_all(args, cfg, t_start)
    E = args.epochs
    finals = np.array([r["final"] for r in rows])

    # 1. leave-one-out prediction from the first k epochs
    pred_rows = []
    for k in range(1, E):
        preds = []
        for i, r in enumerate(rows):
            p = LearningCurvePredictor(None, min_samples=2, seed=args.seed)
            for j, o in enumerate(rows):
                if j != i:
                    p.observe(o["arch"], o["curve"], E)
            preds.append(p.predict(r["curve"][:k], E)[0])
        preds = np.array(preds)
        last = np.array([r["curve"][k - 1] for r in rows])
        pred_rows.append({
            "k": k, "mae": float(np.mean(np.abs(preds - finals))),
            "mae_last_value": float(np.mean(np.abs(last - finals))),
            "spearman": float(spearmanr(preds, finals)[0]), "kendall": float(kendalltau(preds, finals)[0]),
            "spearman_last_value": float(spearmanr(last, finals)[0]),
        })

    # 2. early stop replayed over random arrival orders
    sizes = [r["mmacs"] for r in rows]
    full_pts = [(r["final"], r["mmacs"]) for r in rows]
    obj = Objectives(accuracy_ref=0.0, accuracy_best=1.0, latency_ref_ms=max(sizes) * 1.05,
                     latency_best_ms=min(sizes) * 0.95)
    hv_full = hypervolume(full_pts, obj)
    full_front = set(pareto_indices(full_pts))
    total_full = sum(sum(r["epoch_s"]) for r in rows)
    def replay(min_margin: float) -> dict:
        orng = np.random.default_rng(args.seed + 1)  # the same orders for every setting
        sims = []
        for _ in range(args.orders):
            order = orng.permutation(len(rows))
            p = LearningCurvePredictor(None, min_samples=args.min_samples, min_margin=min_margin, seed=args.seed)
            done: list[tuple[float, float]] = []
            finished, spent, stopped, by_rule = [], 0.0, [], {"model": 0, "flat": 0}
            for i in order:
                r = rows[i]
                thr = front_threshold(r["mmacs"], done)
                stop_at = None
                for k in range(1, E):
                    d = p.decide(r["curve"][:k], E, thr)
                    if d.stop:
                        stop_at = k
                        by_rule[d.rule] = by_rule.get(d.rule, 0) + 1
                        break
                if stop_at is None:
                    spent += sum(r["epoch_s"])
                    finished.append(int(i))
                    done.append((r["final"], r["mmacs"]))
                    p.observe(r["arch"], r["curve"], E)
                else:
                    spent += sum(r["epoch_s"][:stop_at])
                    stopped.append(int(i))
            pts = [full_pts[i] for i in finished]
            front = {finished[j] for j in pareto_indices(pts)}
            sims.append({"time_fraction": spent / total_full, "stopped": len(stopped), **by_rule,
                         "wrongly_stopped": len(full_front & set(stopped)), "front_equal": front == full_front,
                         "hv_ratio": hypervolume(pts, obj) / hv_full if hv_full else 1.0})
        return {
            "min_margin": min_margin, "orders": args.orders,
            "time_fraction_mean": float(np.mean([s["time_fraction"] for s in sims])),
            "time_saved_mean": 1 - float(np.mean([s["time_fraction"] for s in sims])),
            "stopped_mean": float(np.mean([s["stopped"] for s in sims])),
            "stopped_by_model_mean": float(np.mean([s["model"] for s in sims])),
            "stopped_by_flat_mean": float(np.mean([s["flat"] for s in sims])),
            "front_equal_share": float(np.mean([s["front_equal"] for s in sims])),
            "hv_ratio_mean": float(np.mean([s["hv_ratio"] for s in sims])),
            "hv_ratio_min": float(np.min([s["hv_ratio"] for s in sims])),
            "wrongly_stopped_mean": float(np.mean([s["wrongly_stopped"] for s in sims])),
            "train_seconds_all": total_full,
        }

    es = [replay(float(m)) for m in args.min_margins.split(",")]

    # 3. training-free front vs trained front (same size axis)
    tf_pts = [(r["score"], r["mmacs"]) for r in rows]
    tf_front = set(pareto_indices(tf_pts))
    shift = {
        "training_free_front": sorted(tf_front), "trained_front": sorted(full_front),
        "overlap": len(tf_front & full_front), "jaccard": len(tf_front & full_front) / len(tf_front | full_front),
        "kendall_score_vs_final": float(kendalltau([r["score"] for r in rows], finals)[0]),
        "hv_trained_front": hv_full,
        "hv_training_free_front_trained": hypervolume([full_pts[i] for i in tf_front], obj),
    }
    shift["hv_ratio"] = shift["hv_training_free_front_trained"] / hv_full if hv_full else 1.0
    config = {**vars(args), "train": cfg.to_dict(), "data": data_cfg, "data_seconds": round(t_data, 3)}
    out = write_results("train_early_stop", config, rows, args.out, prediction=pred_rows, early_stop=es,
                        front_shift=shift, seconds=round(time.perf_counter() - t_start, 1))

    print(f"\n{len(rows)} NB201 archs (C={args.C}), {E} epochs on digits ({n_train} train / "
          f"{n_val} val), {total_full:.0f} s of training")
    print("k  MAE(pred)  MAE(last value)  rho(pred)  tau(pred)  rho(last value)")
    for pr in pred_rows:
        print(f"{pr['k']}  {pr['mae']:.3f}      {pr['mae_last_value']:.3f}            {pr['spearman']:.2f}       "
              f"{pr['kendall']:.2f}       {pr['spearman_last_value']:.2f}")
    print(f"early stop replayed over {args.orders} arrival orders (warm-up rule until {args.min_samples} curves):")
    print("min margin  time vs all  saved  stopped (model/flat)  front equal  HV ratio mean (min)  wrongly stopped")
    for e in es:
        print(f"{e['min_margin']:<10}  {e['time_fraction_mean']:.2f}x        {e['time_saved_mean']:>4.0%}   "
              f"{e['stopped_mean']:.1f} ({e['stopped_by_model_mean']:.1f}/{e['stopped_by_flat_mean']:.1f})        "
              f"{e['front_equal_share']:>4.0%}         {e['hv_ratio_mean']:.3f} ({e['hv_ratio_min']:.3f})        "
              f"{e['wrongly_stopped_mean']:.2f}")
    print(f"front shift: training-free front {sorted(tf_front)} vs trained {sorted(full_front)}: overlap "
          f"{shift['overlap']}, Jaccard {shift['jaccard']:.2f}, tau(score, final) {shift['kendall_score_vs_final']:.2f}, "
          f"trained HV of the training-free front {shift['hv_ratio']:.3f}x the trained front's")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
