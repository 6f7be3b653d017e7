"""How well do the training-free estimators rank NAS-Bench-201 architectures?

Data: ``../shared/data/nb201_subset725.csv`` (relative to the repo root;
``--data`` overrides) - NAS-Bench-201 architectures with their 200-epoch
validation accuracy and zero-cost proxy scores from NASLib (automl/NASLib,
``naslib/data/zc_nasbench201.json``, Apache-2.0). Only the CIFAR-10 rows are used.

For each architecture (all 725, or a seeded ``--limit N`` subset) every
estimator's signals and seconds are computed; then Kendall tau / Spearman rho
(scipy.stats) of every signal and combination against ``val_accuracy``; the
Spearman agreement of our synflow / NASWOT / flops / params with the file's
NASLib columns; and learned combinations (least squares on standardised
signals, fit on a seeded half, tau/rho reported on the other half only).

    python bench/proxy_correlation.py [--limit N] [--seed S] [--out bench/results/proxy_correlation.json]

Writes the JSON (partial results every ``--save-every`` archs, atomically) and
``<out>.config.json``; prints a table at the end.

``--mbv2 N`` (section for the ``mbv2`` space, which has no accuracy table): N
architectures sampled with ``numpy.random.default_rng(--seed)``; every
estimator's signals and seconds (wall and process CPU); the agreement (Kendall
tau / Spearman rho, directions applied so positive = agree on "better") of every
signal with every other and with FLOPs, of the TE-NAS rank combination and of
``zc-all``'s rank fallback (the unlearned equal-weight rank sum it uses off
NAS-Bench-201). Writes ``bench/results/proxy_correlation_mbv2.json`` (never the
NB201 file) and prints a table. ``--shard K/N`` / ``--merge PARTS --mbv2 N``
work as for the main run. Kendall tau against trained accuracy is added once
short training exists.

    OMP_NUM_THREADS=1 python bench/proxy_correlation.py --mbv2 30 --shard 0/2 &
    OMP_NUM_THREADS=1 python bench/proxy_correlation.py --mbv2 30 --shard 1/2; wait
    python bench/proxy_correlation.py --mbv2 30 --merge bench/results/proxy_correlation_mbv2.part*of2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time

import numpy as np
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "nb201_subset725.csv")
DEFAULT_OUT = os.path.join(ROOT, "bench", "results", "proxy_correlation.json")
DEFAULT_OUT_MBV2 = os.path.join(ROOT, "bench", "results", "proxy_correlation_mbv2.json")
CITATION = ("NAS-Bench-201 architectures, 200-epoch validation accuracy and zero-cost proxy scores "
            "from NASLib (automl/NASLib, naslib/data/zc_nasbench201.json, Apache-2.0)")

ESTIMATORS = ["tenas", "meco", "naswot", "swap", "synflow", "params", "flops"]
#: signal -> direction (+1: higher predicts better accuracy)
SIGNALS = {"ntk_cond": -1, "linear_regions": +1, "meco": +1, "naswot": +1, "swap": +1, "synflow": +1,
           "params": +1, "flops": +1}
AGREEMENT = {"synflow": "synflow", "naswot": "nwot", "flops": "flops", "params": "params"}
LEARNED = {
    "zc": ["naswot", "synflow", "flops"],
    "tenas-flops": ["ntk_cond", "linear_regions", "flops"],
    "tenas+zc": ["ntk_cond", "linear_regions", "naswot", "synflow", "flops"],
    "meco+flops": ["meco", "flops"],
    "meco+zc": ["meco", "naswot", "synflow", "flops"],
    "meco+tenas+zc": ["meco", "ntk_cond", "linear_regions", "naswot", "synflow", "flops"],
    "all": ["meco", "ntk_cond", "linear_regions", "naswot", "synflow", "flops", "params"],
}
#: unlearned rank sums (no fitted parameters; directions from SIGNALS)
RANK_SUMS = {
    "tenas": ["ntk_cond", "linear_regions"],
    "tenas+naswot": ["ntk_cond", "linear_regions", "naswot"],
    "tenas+naswot+flops": ["ntk_cond", "linear_regions", "naswot", "flops"],
    "meco+flops": ["meco", "flops"],
    "meco+naswot+flops": ["meco", "naswot", "flops"],
    "meco+tenas": ["meco", "ntk_cond", "linear_regions"],
    "meco+tenas+naswot+flops": ["meco", "ntk_cond", "linear_regions", "naswot", "flops"],
}
#: XGBoost settings, fixed before looking at any held-out half (not tuned)
XGB_PARAMS = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.05, "subsample": 0.8,
              "min_child_weight": 2, "nthread": 1}
XGB_ROUNDS = 300


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into a fit half and a held-out half."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


def load_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        sys.exit(f"proxy_correlation: data file {path!r} not found (use --data)")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "cifar10"]
    for r in rows:
        r["val_accuracy"] = float(r["val_accuracy"])
    return rows


def corr(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.all(x == x[0]):
        return {"tau": None, "rho": None, "n": int(len(x))}
    return {"tau": round(float(stats.kendalltau(x, y)[0]), 4),
            "rho": round(float(stats.spearmanr(x, y)[0]), 4), "n": int(len(x))}


def transform(sig: str, v: np.ndarray) -> np.ndarray:
    from cosearch.estimate.combine import transform as t

    return np.array([t(sig, float(a)) for a in v])


def standardise_columns(X: np.ndarray, feats: list[str], train) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of raw signal values -> ``combine.standardise`` with mean/std of f(value)
    over the ``train`` rows that are not degenerate sentinels (exactly what the
    shipped ``CombinedEstimator`` computes from its stored constants)."""
    from cosearch.estimate.combine import is_sentinel, standardise
    from cosearch.estimate.combine import transform as t

    mu, sd = np.zeros(len(feats)), np.ones(len(feats))
    Z = np.zeros_like(X, dtype=float)
    for j, f in enumerate(feats):
        vals = np.array([t(f, float(v)) for v in X[train, j] if not is_sentinel(float(v))])
        mu[j], sd[j] = vals.mean(), (vals.std() if vals.std() > 0 else 1.0)
        Z[:, j] = [standardise(f, float(v), mu[j], sd[j]) for v in X[:, j]]
    return Z, mu, sd


def fit_predict(model: str, X: np.ndarray, acc: np.ndarray, train, test, seed: int,
                feats: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """Fit on rows ``train`` (only), predict rows ``test``; ``X`` holds *raw* signal values
    of ``feats``. ``linear``: least squares of the standardised accuracy rank on the
    signals standardised (``standardise_columns``: log where the estimator logs, mean/std
    of the train rows, clipped)
    (weights returned as ``signal -> (w, mean, std)``); ``xgb``: XGBoost regression of the
    accuracy rank (``XGB_PARAMS``, fixed)."""
    feats = feats or [f"x{j}" for j in range(X.shape[1])]  # unnamed columns: no log
    if model == "linear":
        Z, mu, sd = standardise_columns(X, feats, train)
        w = fit_weights(Z[train], acc[train])
        return Z[test] @ w, {"fit": corr(Z[train] @ w, acc[train]),
                             "weights": [[round(float(a), 6), round(float(m), 6), round(float(s), 6)]
                                         for a, m, s in zip(w, mu, sd)]}
    import xgboost as xgb

    bst = train_xgb(X, acc, train, feats, seed)
    Xt = xgb.DMatrix(np.stack([transform(f, X[:, j]) for j, f in enumerate(feats)], axis=1), feature_names=feats)
    pred = bst.predict(Xt)
    return pred[test], {"fit": corr(pred[train], acc[train])}


def train_xgb(X: np.ndarray, acc: np.ndarray, train, feats: list[str], seed: int):
    """XGBoost regression of the accuracy rank (``XGB_PARAMS``, ``XGB_ROUNDS``, fixed) on
    f(signal) (trees are invariant to monotone transforms; f keeps dumps readable)."""
    import xgboost as xgb

    Xf = np.stack([transform(f, X[train, j]) for j, f in enumerate(feats)], axis=1)
    y = stats.rankdata(acc[train]) / len(train)
    return xgb.train({**XGB_PARAMS, "seed": seed}, xgb.DMatrix(Xf, label=y, feature_names=feats), XGB_ROUNDS)


def export_xgb(result_path: str, set_name: str, out: str) -> dict:
    """Retrain the ``set_name`` XGBoost model on fit half A of ``result_path`` (same data,
    parameters and seed as the analysis, so the same trees) and save it to ``out`` with its
    provenance as a model attribute; returns the provenance."""
    res = json.load(open(result_path))
    records, seed = res["records"], res["config"]["seed"]
    feats = LEARNED[set_name]
    acc = np.array([r["val_accuracy"] for r in records])
    X = np.array([[r["signals"][f] for f in feats] for r in records], dtype=float)
    fit, held = halves(len(records), seed)
    bst = train_xgb(X, acc, fit, feats, seed)
    entry = res["summary"]["learned"][set_name]["xgb"]
    prov = {"features": feats, "transform": "cosearch.estimate.combine.transform (log for LOG_SIGNALS)",
            "target": "rank(val_accuracy)/n on the fit half", "params": XGB_PARAMS, "rounds": XGB_ROUNDS,
            "seed": seed, "data": CITATION, "n_rows": len(records),
            "split": f"fit half A of halves({len(records)}, seed={seed}) ({len(fit)} rows)",
            "held_out_half_B": entry["fit_A_test_B"]["held_out"],
            "cv5_within_fit_half_A": entry["cv5_within_fit_half_A"],
            "made_by": f"python bench/proxy_correlation.py --export-xgb {set_name}:<path> --out {os.path.relpath(result_path, ROOT)}"}
    bst.set_attr(provenance=json.dumps(prov, sort_keys=True))
    tmp = out + ".tmp.json"
    bst.save_model(tmp)
    os.replace(tmp, out)
    return prov


def inner_cv(model: str, X: np.ndarray, acc: np.ndarray, rows, seed: int, k: int = 5,
             feats: list[str] | None = None) -> float | None:
    """Mean Kendall tau of ``k``-fold cross-validation *within* ``rows`` (the fit half):
    the model-selection criterion that never looks at the held-out half."""
    rows = np.asarray(rows)
    if len(rows) < 4 * k:
        return None
    parts = np.array_split(np.random.default_rng(seed + 1).permutation(rows), k)
    taus = []
    for i in range(k):
        test = parts[i]
        train = np.concatenate([parts[j] for j in range(k) if j != i])
        pred, _ = fit_predict(model, X, acc, train, test, seed, feats)
        taus.append(corr(pred, acc[test])["tau"])
    return round(float(np.mean(taus)), 4)


def fit_weights(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares of the (rank-transformed, standardised) accuracy on standardised signals."""
    yr = stats.rankdata(y)
    yr = (yr - yr.mean()) / yr.std()
    w, *_ = np.linalg.lstsq(X, yr, rcond=None)
    return w


def analyse(records: list[dict], seed: int) -> dict:
    acc = np.array([r["val_accuracy"] for r in records])
    sig = {s: np.array([r["signals"][s] for r in records]) for s in SIGNALS if all(s in r["signals"] for r in records)}
    out: dict = {"n": len(records), "signals": {}, "combinations": {}, "agreement_with_naslib": {}, "learned": {}}
    for s, d in SIGNALS.items():
        if s in sig:
            out["signals"][s] = corr(d * sig[s], acc)
    if "ntk_cond" in sig and "linear_regions" in sig:
        from cosearch.estimate.tenas import FORMULA_A, FORMULA_B

        rank = stats.rankdata(-sig["ntk_cond"]) + stats.rankdata(sig["linear_regions"])
        out["combinations"]["tenas (rank, population)"] = corr(rank, acc)
        lc, lr = np.log(np.maximum(sig["ntk_cond"], 1)), np.log(np.maximum(sig["linear_regions"], 1))
        out["combinations"]["tenas (formula, single-arch)"] = corr(-FORMULA_A * lc + FORMULA_B * lr, acc)
        out["formula_constants_measured"] = {"A=1/std(log ntk_cond)": float(1 / lc.std()) if lc.std() > 0 else None,
                                             "B=1/std(log linear_regions)": float(1 / lr.std()) if lr.std() > 0 else None}
    # unlearned rank sums, on all rows and on each half
    fit, held = halves(len(records), seed)
    for name, feats in RANK_SUMS.items():
        if all(f in sig for f in feats):
            def rs(idx, feats=feats):
                return sum(stats.rankdata(SIGNALS[f] * sig[f][idx]) for f in feats)
            everything = np.arange(len(records))
            out["combinations"][f"rank sum {name}"] = {**corr(rs(everything), acc), "fit_half": corr(rs(fit), acc[fit]),
                                                       "held_out_half": corr(rs(held), acc[held])}
    # learned combinations: seeded half split, fit on one half, tau/rho on the other; then swapped
    out["split"] = {"seed": seed, "fit": len(fit), "held_out": len(held),
                    "how": "numpy default_rng(seed).permutation(n): first n//2 fit, rest held out"}
    for name, feats in LEARNED.items():
        if not all(f in sig for f in feats) or len(fit) < 5:
            continue
        X = np.stack([sig[f] for f in feats], axis=1)
        entry: dict = {"features": feats}
        for model in ("linear", "xgb"):
            folds = []
            for a, b in ((fit, held), (held, fit)):
                pred, extra = fit_predict(model, X, acc, a, b, seed, feats)
                folds.append({"held_out": corr(pred, acc[b]), **extra})
            mean_tau = (folds[0]["held_out"]["tau"] + folds[1]["held_out"]["tau"]) / 2 \
                if folds[0]["held_out"]["tau"] is not None and folds[1]["held_out"]["tau"] is not None else None
            entry[model] = {"cv5_within_fit_half_A": inner_cv(model, X, acc, fit, seed, feats=feats),
                            "fit_A_test_B": folds[0], "fit_B_test_A": folds[1],
                            "mean_held_out_tau": None if mean_tau is None else round(mean_tau, 4)}
        out["learned"][name] = entry
    if "flops" in sig:
        out["learned"]["flops alone on the held-out half B"] = {"held_out": corr(sig["flops"][held], acc[held])}
    for ours, theirs in AGREEMENT.items():
        if ours in sig:
            vals = [(r["signals"][ours], float(r["file"][theirs])) for r in records if r["file"].get(theirs)]
            a, b = zip(*vals)
            out["agreement_with_naslib"][f"{ours} vs file {theirs}"] = round(float(stats.spearmanr(a, b)[0]), 4)
    secs: dict = {}
    for e in {k for r in records for k in r["seconds"]}:
        v = np.array([r["seconds"][e] for r in records if e in r["seconds"]])
        secs[e] = {"mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
                   "max": round(float(v.max()), 3)}
    out["seconds_per_arch"] = secs
    return out


def print_learned(summ: dict) -> None:
    for k, v in summ["learned"].items():
        if "held_out" in v:
            print(f"{'held-out B: ' + k:48s} {v['held_out']['tau']!s:>7s} {v['held_out']['rho']!s:>7s}")
            continue
        for m in ("linear", "xgb"):
            e = v[m]
            print(f"{'learned ' + m + ' ' + k:40s} cvA {e['cv5_within_fit_half_A']!s:>7s}"
                  f"  A->B {e['fit_A_test_B']['held_out']['tau']!s:>7s}"
                  f"  B->A {e['fit_B_test_A']['held_out']['tau']!s:>7s}  mean {e['mean_held_out_tau']!s:>7s}")


def write_json(path: str, obj: dict) -> None:
    from cosearch.fsio import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


# -- ablation ------------------------------------------------------------------------------
#: (variant name, signal it measures, direction, estimator kind, kwargs, repeat index)
ABLATION_VARIANTS = [
    ("ntk B16 default r0", "ntk", -1, "ntk", {}, 0),
    ("ntk B16 default r1", "ntk", -1, "ntk", {}, 1),
    ("ntk B16 default r2", "ntk", -1, "ntk", {}, 2),
    ("ntk B16 kaiming r0", "ntk", -1, "ntk", {"init": "kaiming"}, 0),
    ("ntk B32 default r0", "ntk", -1, "ntk", {"batch_size": 32}, 0),
    ("ntk B16 default N=1 net r0", "ntk", -1, "ntk", {"ntk_settings": {"N": 1}}, 0),
    ("lr 1000 C1N1R8 default r0", "lr", +1, "lr", {}, 0),
    ("lr 1000 C1N1R8 default r1", "lr", +1, "lr", {}, 1),
    ("lr 1000 C1N1R8 default r2", "lr", +1, "lr", {}, 2),
    ("lr 3000 C1N1R8 default r0", "lr", +1, "lr", {"lr_samples": 3000}, 0),
    ("lr 1000 C1N1R8 kaiming r0", "lr", +1, "lr", {"init": "kaiming"}, 0),
    ("lr 1000 C2N1R8 default r0", "lr", +1, "lr", {"lr_settings": {"C": 2, "N": 1, "resolution": 8}}, 0),
    ("lr 1000 C1N2R8 default r0", "lr", +1, "lr", {"lr_settings": {"C": 1, "N": 2, "resolution": 8}}, 0),
    ("naswot B32 default", "naswot", +1, "naswot", {}, 0),
    ("naswot B64 default", "naswot", +1, "naswot", {"batch_size": 64}, 0),
    ("naswot B32 kaiming", "naswot", +1, "naswot", {"init": "kaiming"}, 0),
    ("synflow default", "synflow", +1, "synflow", {}, 0),
    ("flops", "flops", +1, "flops", {}, 0),
    ("params", "params", +1, "params", {}, 0),
]

#: second ablation pass (``--variants meco``), run after MeCo was added
MECO_VARIANTS = [
    ("meco B8 s1 default", "meco", +1, "meco", {}, 0),
    ("meco B2 s1 default", "meco", +1, "meco", {"batch_size": 2}, 0),
    ("meco B32 s1 default", "meco", +1, "meco", {"batch_size": 32}, 0),
    ("meco B8 s4 default", "meco", +1, "meco", {"samples": 4}, 0),
    ("meco B8 s1 kaiming", "meco", +1, "meco", {"init": "kaiming"}, 0),
    ("meco B1 eval default", "meco", +1, "meco", {"batch_size": 1}, 0),
    ("swap B16 default", "swap", +1, "swap", {"batch_size": 16}, 0),
]


VARIANT_SETS = {"base": ABLATION_VARIANTS, "meco": MECO_VARIANTS}


def ablation_record(space, arch: str, seed: int, cache: dict, variants: list) -> tuple[dict, dict, dict]:
    """Every variant's value, wall seconds and CPU seconds for one arch."""
    from cosearch.estimate import create_estimator

    vals, wall, cpu = {}, {}, {}
    for name, _sig, _d, kind, kw, r in variants:
        key = (kind, json.dumps(kw, sort_keys=True))
        if key not in cache:
            cache[key] = create_estimator("tenas" if kind in ("ntk", "lr") else kind, seed=seed, **kw)
        est = cache[key]
        t0, c0 = time.perf_counter(), time.process_time()
        if kind == "ntk":
            v, sing = est.ntk_once(space, arch, r)
        elif kind == "lr":
            v = float(est.regions_once(space, arch, r))
        else:
            v = next(iter(est.estimate(space, arch).signals.values()))
        vals[name] = float(v)
        wall[name], cpu[name] = round(time.perf_counter() - t0, 4), round(time.process_time() - c0, 4)
    return vals, wall, cpu


def timing(records: list[dict], n: str) -> dict:
    w = np.array([r["wall"][n] for r in records])
    c = np.array([r["cpu"][n] for r in records])
    return {"wall_s": {"mean": round(float(w.mean()), 3), "median": round(float(np.median(w)), 3)},
            "cpu_s": {"mean": round(float(c.mean()), 3), "median": round(float(np.median(c)), 3)}}


def analyse_ablation(records: list[dict]) -> dict:
    acc = np.array([r["val_accuracy"] for r in records])
    known = [v for vs in VARIANT_SETS.values() for v in vs]
    V = {n: np.array([r["values"][n] for r in records]) for n, *_ in known
         if all(n in r["values"] for r in records)}
    direction = {n: d for n, _s, d, *_ in known}
    rows = {}
    if "ntk B16 default r2" not in V:
        return {"n": len(records), "variants": {n: {"alone": corr(direction[n] * v, acc), **timing(records, n)}
                                                for n, v in V.items()}}
    mean3 = {"ntk B16 default mean r0-2": np.mean([V[f"ntk B16 default r{r}"] for r in range(3)], axis=0),
             "lr 1000 C1N1R8 default mean r0-2": np.mean([V[f"lr 1000 C1N1R8 default r{r}"] for r in range(3)], axis=0)}
    direction.update({"ntk B16 default mean r0-2": -1, "lr 1000 C1N1R8 default mean r0-2": +1})
    allv = {**V, **mean3}
    base_ntk, base_lr = V["ntk B16 default r0"], V["lr 1000 C1N1R8 default r0"]
    for n, v in allv.items():
        row = {"alone": corr(direction[n] * v, acc)}
        if n.startswith("ntk"):
            row["tenas rank with lr base"] = corr(stats.rankdata(-v) + stats.rankdata(base_lr), acc)
        if n.startswith("lr"):
            row["tenas rank with ntk base"] = corr(stats.rankdata(-base_ntk) + stats.rankdata(v), acc)
        if n in V:
            row.update(timing(records, n))
        rows[n] = row
    both3 = stats.rankdata(-mean3["ntk B16 default mean r0-2"]) + stats.rankdata(mean3["lr 1000 C1N1R8 default mean r0-2"])
    rows["tenas rank: ntk mean r0-2 + lr mean r0-2"] = {"alone": corr(both3, acc)}
    return {"n": len(records), "variants": rows}


def run_ablation(args) -> int:
    """Variants on ``--ablation N`` archs drawn from the *fit* half of the seeded split of
    all CIFAR-10 rows (the held-out half is never looked at while choosing settings)."""
    import torch

    from cosearch.space import create_space

    rows = load_rows(args.data)
    fit, _held = halves(len(rows), args.seed)
    pick = [int(i) for i in fit[: args.ablation]]
    k, n = args.shard
    pick = pick[k::n]
    space = create_space(args.space)
    stem = os.path.splitext(args.out)[0] + ("" if args.variants == "base" else f".{args.variants}")
    out = stem + ".json" if n == 1 else f"{stem}.part{k}of{n}.json"
    config = {"data": os.path.abspath(args.data), "citation": CITATION, "dataset": "cifar10",
              "subset": f"first {args.ablation} of the fit half of halves(725, seed={args.seed}), shard {k}/{n}",
              "seed": args.seed, "space": space.config(), "variants": VARIANT_SETS[args.variants],
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "note": "shared 2-core machine: wall seconds noisy; cpu_s = process CPU time (all threads)"}
    records, cache = [], {}
    t_start = time.perf_counter()
    for i, idx in enumerate(pick):
        r = rows[idx]
        arch = space.canonical(r["arch"])
        vals, wall, cpu = ablation_record(space, arch, args.seed, cache, VARIANT_SETS[args.variants])
        records.append({"row": idx, "arch": arch, "val_accuracy": r["val_accuracy"], "values": vals,
                        "wall": wall, "cpu": cpu})
        if (i + 1) % 5 == 0 or i + 1 == len(pick):
            write_json(out, {"config": config, "complete": i + 1 == len(pick),
                             "elapsed_seconds": round(time.perf_counter() - t_start, 1),
                             "summary": analyse_ablation(records), "records": records})
            print(f"[{i + 1}/{len(pick)}] {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


# -- mbv2 section (no accuracy: agreement between signals and with FLOPs) ------------------------
#: zc-all's learned features: the signals its rank fallback ranks off NAS-Bench-201
ZC_ALL_FEATURES = ["meco", "ntk_cond", "linear_regions", "naswot", "synflow", "flops"]


def analyse_mbv2(records: list[dict]) -> dict:
    sig = {n: np.array([r["signals"][n] for r in records], float) for n in SIGNALS
           if records and all(n in r["signals"] for r in records)}
    directed = {n: SIGNALS[n] * v for n, v in sig.items()}
    combos = {}
    if "ntk_cond" in sig and "linear_regions" in sig:
        combos["tenas (rank)"] = stats.rankdata(-sig["ntk_cond"]) + stats.rankdata(sig["linear_regions"])
        from cosearch.estimate.tenas import space_defaults

        a, b = space_defaults("mbv2")["formula"]
        lc, lr = np.log(np.maximum(sig["ntk_cond"], 1.0)), np.log(np.maximum(sig["linear_regions"], 1.0))
        combos["tenas (formula, single-arch)"] = -a * lc + b * lr
    feats = [f for f in ZC_ALL_FEATURES if f in directed]
    if feats:
        combos["zc-all rank fallback"] = sum(stats.rankdata(directed[f]) for f in feats)
    cols = {**directed, **combos}
    names = list(cols)
    pair = {a: {b: corr(cols[a], cols[b])["tau"] for b in names} for a in names}
    vs_flops = {n: corr(v, sig["flops"]) for n, v in cols.items() if n != "flops"} if "flops" in sig else {}
    secs = {}
    for n in (records[0]["seconds"] if records else {}):
        w = np.array([r["seconds"][n] for r in records])
        c = np.array([r["cpu"][n] for r in records])
        secs[n] = {"wall_mean": round(float(w.mean()), 3), "wall_median": round(float(np.median(w)), 3),
                   "wall_max": round(float(w.max()), 3), "cpu_mean": round(float(c.mean()), 3)}
    if secs and all(f in secs for f in ("meco", "tenas", "naswot", "synflow", "flops")):
        secs["zc-all (sum of its components)"] = {
            "wall_mean": round(sum(secs[f]["wall_mean"] for f in ("meco", "tenas", "naswot", "synflow", "flops")), 3)}
    flags = {f: int(sum(r["signals"].get(f, 0.0) for r in records))
             for f in ("ntk_singular", "naswot_singular", "synflow_degenerate")}
    ranges = {n: {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())} for n, v in sig.items()}
    consts = {}
    if "ntk_cond" in sig and "linear_regions" in sig:  # how tenas.SPACE_DEFAULTS["mbv2"]["formula"] is made
        consts = {"A=1/std(log ntk_cond)": round(float(1 / lc.std()), 4) if lc.std() > 0 else None,
                  "B=1/std(log linear_regions)": round(float(1 / lr.std()), 4) if lr.std() > 0 else None}
    return {"n": len(records), "formula_constants_measured": consts,
            "directions": {n: SIGNALS[n] for n in sig}, "tau_between": pair,
            "vs_flops": vs_flops, "seconds_per_arch": secs, "degenerate_counts": flags, "ranges": ranges,
            "fidelities": sorted({f for r in records for f in r.get("fidelity", {}).values()})}


def print_mbv2(res: dict) -> None:
    summ = res["summary"]
    print(f"\nmbv2: N = {summ['n']} sampled architectures (seed {res['config']['seed']}), no accuracy yet")
    print(f"{'signal (direction applied)':34s} {'tau vs flops':>12s} {'rho vs flops':>12s} {'range (min / median / max)':>34s}")
    for n, v in summ["vs_flops"].items():
        r = summ["ranges"].get(n)
        rng = f"{r['min']:.4g} / {r['median']:.4g} / {r['max']:.4g}" if r else ""
        print(f"{n:34s} {v['tau']!s:>12s} {v['rho']!s:>12s} {rng:>34s}")
    names = list(summ["tau_between"])
    short = {n: n.replace(" ", "")[:8] for n in names}
    print("\nKendall tau between signals:")
    print(" " * 30 + " ".join(f"{short[n]:>8s}" for n in names))
    for a in names:
        print(f"{a:30s}" + " ".join(f"{summ['tau_between'][a][b] if summ['tau_between'][a][b] is not None else '-':>8}"
                                    for b in names))
    print("\nseconds per arch (wall mean / median / max, cpu mean):")
    for n, v in summ["seconds_per_arch"].items():
        print(f"  {n:32s} " + " / ".join(str(v[k]) for k in ("wall_mean", "wall_median", "wall_max", "cpu_mean") if k in v))
    print("degenerate:", summ["degenerate_counts"], " fidelities:", summ["fidelities"])


def run_mbv2(args) -> int:
    import torch

    from cosearch.estimate import create_estimator
    from cosearch.space import create_space

    if args.mbv2 <= 0:
        sys.exit(f"proxy_correlation: --mbv2 must be positive, got {args.mbv2}")
    space = create_space("mbv2")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.mbv2)]
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    ests = {n: create_estimator(n, seed=args.seed) for n in names}
    k, n_shards = args.shard
    base, _ = os.path.splitext(args.out)
    config = {"space": space.config(), "sample": f"{args.mbv2} x space.sample(numpy.random.default_rng({args.seed}))",
              "seed": args.seed, "estimators": {n: e.config() for n, e in ests.items()},
              "applied": {n: e.applied(space, []) for n, e in ests.items()},
              "torch_threads": torch.get_num_threads(), "shards": n_shards, "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
              "torch": torch.__version__,
              "note": "random standard-normal inputs; shared 2-core machine (other jobs running), timings noisy"}
    write_json(base + ".config.json", config)
    out = args.out if n_shards == 1 else f"{base}.part{k}of{n_shards}.json"
    mine = list(range(len(archs)))[k::n_shards]
    records: list[dict] = []
    t_start = time.perf_counter()
    for i, idx in enumerate(mine):
        rec = {"row": idx, "arch": archs[idx], "signals": {}, "seconds": {}, "cpu": {}, "fidelity": {}}
        for n, e in ests.items():
            c0 = time.process_time()
            est = e.estimate(space, archs[idx])
            rec["signals"].update(est.signals)
            rec["seconds"][n] = round(est.seconds, 4)
            rec["cpu"][n] = round(time.process_time() - c0, 4)
            rec["fidelity"][n] = est.fidelity
        records.append(rec)
        done = i + 1
        if done % 5 == 0 or done == len(mine):
            result = {"config": config, "complete": done == len(mine),
                      "elapsed_seconds": round(time.perf_counter() - t_start, 1),
                      "summary": analyse_mbv2(records), "records": records}
            write_json(out, result)
            print(f"[{done}/{len(mine)}] {time.perf_counter() - t_start:.0f} s", flush=True)
    if n_shards > 1:
        print(f"shard {k}/{n_shards} done: merge with --mbv2 {args.mbv2} --merge {base}.part*of{n_shards}.json")
        return 0
    print_mbv2(result)
    return 0


def merge_parts(paths: list[str], out: str, kind: str, seed: int) -> dict:
    """Combine the records of shard files into one result (summary recomputed)."""
    parts = [json.load(open(p)) for p in paths]
    by_key: dict = {}
    for r in (r for p in parts for r in p["records"]):
        key = r.get("row", r["arch"])
        if key in by_key:  # a second variant set on the same arch: union of its values
            for f in ("values", "wall", "cpu"):
                by_key[key][f].update(r[f])
        else:
            by_key[key] = r
    records = [by_key[k] for k in sorted(by_key, key=lambda x: (isinstance(x, str), x))]
    summary = {"ablation": analyse_ablation, "mbv2": analyse_mbv2}.get(kind, lambda r: analyse(r, seed))(records)
    res = {"config": parts[0]["config"], "merged_from": [os.path.basename(p) for p in paths],
           "complete": all(p["complete"] for p in parts),
           "elapsed_seconds": max(p["elapsed_seconds"] for p in parts), "summary": summary, "records": records}
    if "citation" in parts[0]:
        res = {"citation": parts[0]["citation"], **res}
    write_json(out, res)
    return res


def parse_shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"--shard must be K/N with 0 <= K < N, got {text!r}")
    return int(k), int(n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=None, help="use a seeded subset of N CIFAR-10 rows")
    p.add_argument("--seed", type=int, default=0, help="subset, split and estimator seed")
    p.add_argument("--space", default="nb201")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--tenas", default="{}", help="JSON of TENASEstimator keyword arguments")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--save-every", type=int, default=20)
    p.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="K/N",
                   help="process rows K, K+N, ... and write <out>.partKofN.json (merge with --merge)")
    p.add_argument("--variants", choices=sorted(VARIANT_SETS), default="base", help="ablation variant set")
    p.add_argument("--export-xgb", metavar="SET:PATH", help="save the XGBoost model of learned SET fit on half A "
                   "of the --out result file to PATH and exit")
    p.add_argument("--merge", nargs="+", metavar="PART", help="merge shard files into --out and exit")
    p.add_argument("--ablation", type=int, default=None, metavar="N",
                   help="run the settings ablation on N archs of the fit half instead (--out proxy_ablation.json)")
    p.add_argument("--mbv2", type=int, default=None, metavar="N",
                   help="mbv2 section: signals' agreement with each other and FLOPs on N sampled archs "
                        "(--out proxy_correlation_mbv2.json)")
    args = p.parse_args(argv)
    if args.mbv2 is not None and args.out == DEFAULT_OUT:
        args.out = DEFAULT_OUT_MBV2
    if args.export_xgb:
        set_name, _, path = args.export_xgb.partition(":")
        prov = export_xgb(args.out, set_name, path)
        print(f"wrote {path}: held-out tau {prov['held_out_half_B']['tau']}")
        return 0
    if args.merge:
        kind = "ablation" if args.ablation is not None else "mbv2" if args.mbv2 is not None else "main"
        res = merge_parts(args.merge, args.out, kind, args.seed)
        print(f"merged {len(res['records'])} records into {args.out}")
        if kind == "mbv2":
            print_mbv2(res)
        return 0
    if args.mbv2 is not None:
        return run_mbv2(args)
    if args.ablation is not None:
        if args.out == DEFAULT_OUT:
            args.out = os.path.join(ROOT, "bench", "results", "proxy_ablation.json")
        return run_ablation(args)

    import torch

    from cosearch.estimate import create_estimator
    from cosearch.space import create_space

    rows = load_rows(args.data)
    if args.limit is not None:
        if args.limit <= 0:
            sys.exit(f"proxy_correlation: --limit must be positive, got {args.limit}")
        idx = np.random.default_rng(args.seed).permutation(len(rows))[: args.limit]
        rows = [rows[i] for i in sorted(idx)]
    space = create_space(args.space)
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    kw = {"tenas": json.loads(args.tenas)}
    ests = {n: create_estimator(n, seed=args.seed, **kw.get(n, {})) for n in names}
    config = {"data": os.path.abspath(args.data), "citation": CITATION, "dataset": "cifar10",
              "n_rows": len(rows), "limit": args.limit, "seed": args.seed, "space": space.config(),
              "estimators": {n: e.config() for n, e in ests.items()}, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__,
              "note": "random standard-normal inputs, no dataset images; shared 2-core machine, timings noisy"}
    base, _ = os.path.splitext(args.out)
    k, n_shards = args.shard
    config["shards"] = n_shards
    write_json(base + ".config.json", config)
    out = args.out if n_shards == 1 else f"{base}.part{k}of{n_shards}.json"
    mine = list(range(len(rows)))[k::n_shards]

    records: list[dict] = []
    t_start = time.perf_counter()
    for i, row in enumerate(mine):
        r = rows[row]
        arch = space.canonical(r["arch"])
        rec = {"row": row, "arch": arch, "val_accuracy": r["val_accuracy"], "signals": {}, "seconds": {},
               "file": {k: r[k] for k in ("synflow", "nwot", "flops", "params")}}
        for n, e in ests.items():
            est = e.estimate(space, arch)
            rec["signals"].update(est.signals)
            rec["seconds"][n] = round(est.seconds, 4)
        records.append(rec)
        done = i + 1
        if done % args.save_every == 0 or done == len(mine):
            result = {"citation": CITATION, "config": config, "complete": done == len(mine),
                      "elapsed_seconds": round(time.perf_counter() - t_start, 1),
                      "summary": analyse(records, args.seed), "records": records}
            write_json(out, result)
            print(f"[{done}/{len(mine)}] {time.perf_counter() - t_start:.0f} s", flush=True)
    if n_shards > 1:
        print(f"shard {k}/{n_shards} done: merge the parts with --merge {base}.part*of{n_shards}.json")
        return 0

    summ = result["summary"]
    print(f"\nN = {summ['n']} CIFAR-10 architectures ({CITATION})")
    print(f"{'signal / combination':48s} {'tau':>7s} {'rho':>7s}")
    for k, v in {**summ["signals"], **summ["combinations"]}.items():
        print(f"{k:48s} {v['tau']!s:>7s} {v['rho']!s:>7s}")
    print_learned(summ)
    print("seconds per arch:", {k: v["mean"] for k, v in summ["seconds_per_arch"].items()})
    print("agreement with NASLib columns (Spearman):", summ["agreement_with_naslib"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
