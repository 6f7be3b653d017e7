"""Combinations of signals from several estimators.

``CombinedEstimator(components=..., weights=...)`` runs each component
estimator on the arch, merges their signals, and scores

* ``combine="weighted"`` (default; needs no population): ``sum_i w_i * z_i`` with
  ``z_i = clip((f(s_i) - mean_i) / std_i, -Z_CLIP, Z_CLIP)`` (``standardise``),
  where ``f`` is ``log`` for the signals listed in ``LOG_SIGNALS`` and the
  identity otherwise; ``mean_i``/``std_i`` are stored constants so one
  architecture is scored on its own;
* ``combine="rank"`` (``estimate_many`` only): ``sum_i w_i * rank(s_i)`` within the
  population (TE-NAS style); a single ``estimate`` falls back to ``weighted``.

Registered combinations (``cosearch.estimate.ESTIMATORS``):

* ``zc``: naswot + synflow + flops, weights learned on half of the CIFAR-10
  rows of the NAS-Bench-201 subset (see ``ZC_WEIGHTS``);
* ``tenas-flops``: TE-NAS signals + flops, learned the same way (``TENAS_FLOPS_WEIGHTS``);
* ``zc-all``: meco, TE-NAS NTK + linear regions, naswot, synflow, flops, learned
  the same way (``ZC_ALL_WEIGHTS``);
* ``zc-xgb``: the same signals through a shallow XGBoost model fit on the same half
  (``models/zc_xgb.json``, provenance stored in the model) - the best held-out rank
  correlation measured here.

**Where they were learned.** The registered combinations were fit on NAS-Bench-201
(``nb201`` with its default settings, ``NB201_FIT``) / CIFAR-10 (``fit_on``). On any
other space (or other nb201 settings) the weights, means and stds mean nothing, so:

* ``estimate(space, arch)`` refuses (``CosearchError``, one line naming the spaces they
  were fit on): one architecture has no honest score there, and the estimators are
  ``absolute`` (never a population-relative score from ``estimate``);
* ``estimate_many`` with ``foreign="rank"`` (default) falls back to an *unlearned*
  equal-weight rank sum of the component signals that exist there
  (``FALLBACK_DIRECTIONS``: ``rank(-ntk_cond) + rank(linear_regions) + rank(meco) +
  ...``; components whose activation patterns are undefined, e.g. naswot on a GELU
  network, are skipped), fidelity ``"zero-cost:rank-fallback"``; ``foreign="refuse"``
  refuses there too. ``applied(space, ests)`` says which happened (``cosearch
  estimate`` writes it to its config).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from cosearch.errors import CosearchError
from cosearch.estimate.base import Estimate, Estimator
from cosearch.estimate.torch_base import check_seed

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace

#: signals compared on a log scale (positive, spanning orders of magnitude).
LOG_SIGNALS = frozenset({"ntk_cond", "linear_regions", "flops", "params", "meco"})

#: A weight entry: signal -> (weight, mean of f(signal), std of f(signal)).
Weights = Mapping[str, tuple[float, float, float]]


#: standardised values are clipped to +-Z_CLIP, so a degenerate architecture (NTK
#: singular: ntk_cond 1e30; NASWOT singular / synflow zero: -1e30) counts as "worst
#: by Z_CLIP standard deviations" instead of dominating the sum (or a least-squares fit).
Z_CLIP = 4.0
#: signal values at or beyond this magnitude are the estimators' degenerate sentinels.
SENTINEL = 1e29

#: the space (``space.config()``) the registered combinations were fit on
NB201_FIT: dict[str, Any] = {"space": "nb201", "C": 16, "N": 5, "num_classes": 10, "resolution": 32}
FOREIGN = ("rank", "refuse")
#: unlearned rank fallback: signal -> direction (+1: higher predicts better), as the
#: directions of bench/proxy_correlation.py (SIGNALS); flags/sentinels are not ranked.
FALLBACK_DIRECTIONS: dict[str, int] = {"ntk_cond": -1, "linear_regions": +1, "meco": +1, "naswot": +1,
                                       "swap": +1, "synflow": +1, "params": +1, "flops": +1}


def transform(signal: str, value: float) -> float:
    if signal in LOG_SIGNALS:
        return math.log(max(value, 1e-12))
    return value


def is_sentinel(value: float) -> bool:
    return not math.isfinite(value) or abs(value) >= SENTINEL


def standardise(signal: str, value: float, mean: float, std: float) -> float:
    """``clip((f(value) - mean) / std, -Z_CLIP, Z_CLIP)``; sentinels go to the clip bound
    on their side (``-1e30`` -> ``-Z_CLIP``, ``1e30`` -> ``+Z_CLIP``)."""
    if is_sentinel(value):
        return Z_CLIP if value > 0 else -Z_CLIP
    return min(max((transform(signal, value) - mean) / std, -Z_CLIP), Z_CLIP)


def _fmt_space(cfg: Mapping[str, Any]) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "space")
    return f"{cfg.get('space', '?')}" + (f" ({settings})" if settings else "")


class CombinedEstimator(Estimator):
    name: ClassVar[str] = "combined"
    absolute: ClassVar[bool] = True  # estimate(): stored weights/means/stds, or a refusal
    #: space configs (``space.config()``) the weights were fit on and the dataset; None:
    #: hand-given weights, applied anywhere (the caller's responsibility)
    fit_on: ClassVar[tuple[dict[str, Any], ...] | None] = None
    fit_dataset: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        components: Mapping[str, Mapping[str, Any]],
        weights: Weights,
        seed: int | None = 0,
        combine: str = "weighted",
        foreign: str = "rank",
    ) -> None:
        from cosearch.estimate import create_estimator

        self.seed = check_seed(self.name, seed)
        if not components:
            raise CosearchError(f"{self.name}: components must name at least one estimator")
        if not weights:
            raise CosearchError(f"{self.name}: weights must name at least one signal")
        for sig, w in weights.items():
            if len(tuple(w)) != 3 or not all(math.isfinite(float(v)) for v in w) or float(w[2]) <= 0:
                raise CosearchError(f"{self.name}: weight for {sig!r} is {w!r}; accepted: (weight, mean, std>0)")
        if combine not in ("weighted", "rank"):
            raise CosearchError(f"{self.name}: combine={combine!r} is invalid; accepted: weighted, rank")
        self.combine = combine
        if foreign not in FOREIGN:
            raise CosearchError(f"{self.name}: foreign={foreign!r} is invalid; accepted: {', '.join(FOREIGN)}")
        self.foreign = foreign
        self.components = {k: dict(v) for k, v in components.items()}
        self.weights = {k: tuple(float(x) for x in v) for k, v in weights.items()}
        self._parts = [create_estimator(k, seed=seed, **v) for k, v in self.components.items()]

    def weighted(self, signals: Mapping[str, float]) -> float:
        missing = [s for s in self.weights if s not in signals]
        if missing:
            raise CosearchError(f"{self.name}: components gave no signal(s) {', '.join(missing)}; got {', '.join(signals)}")
        return float(sum(w * standardise(s, signals[s], mu, sd) for s, (w, mu, sd) in self.weights.items()))

    # -- where the weights apply ------------------------------------------------------------
    def fits(self, space: "SearchSpace") -> bool:
        """The learned weights apply to ``space`` (fit there, same settings)."""
        return self.fit_on is None or space.config() in self.fit_on

    def _fit_text(self) -> str:
        spaces = " or ".join(_fmt_space(c) for c in self.fit_on or ())
        return f"{spaces}{' / ' + self.fit_dataset if self.fit_dataset else ''}"

    def _refuse(self, space: "SearchSpace", why: str) -> CosearchError:
        return CosearchError(f"{self.name} was fit on {self._fit_text()} only, not on {_fmt_space(space.config())}; {why}")

    # -- scoring ------------------------------------------------------------------------
    def _signals(self, space: "SearchSpace", canon: str, *, skip_undefined: bool) -> tuple[dict[str, float], list[str], set[str]]:
        from cosearch.estimate.activations import PatternUndefined

        signals: dict[str, float] = {}
        skipped: list[str] = []
        fidelities: set[str] = set()
        for name, part in zip(self.components, self._parts):
            try:
                e = part.estimate(space, canon)
            except PatternUndefined:
                if not skip_undefined:
                    raise
                skipped.append(name)
                continue
            signals.update(e.signals)
            fidelities.add(e.fidelity)
        return signals, skipped, fidelities

    def why_not_absolute(self, space: "SearchSpace") -> str | None:
        if self.fits(space):
            return None
        return str(self._refuse(space, "one architecture has no score there (estimate_many ranks a population "
                                       "with foreign='rank'; for per-architecture scores use tenas, meco, naswot, "
                                       "swap, synflow or flops)"))

    def estimate(self, space: "SearchSpace", arch: str) -> Estimate:
        why = self.why_not_absolute(space)
        if why is not None:
            raise CosearchError(why)
        t0 = time.perf_counter()
        canon = space.canonical(arch)
        signals, _, _ = self._signals(space, canon, skip_undefined=False)
        return Estimate(arch=canon, score=self.weighted(signals), signals=signals,
                        seconds=time.perf_counter() - t0, fidelity=self.fidelity)

    def estimate_many(self, space: "SearchSpace", archs: Sequence[str]) -> list[Estimate]:
        if not self.fits(space):
            if self.foreign == "refuse":
                raise self._refuse(space, "foreign='refuse' (foreign='rank' falls back to an unlearned rank sum)")
            return self.rank_fallback(space, archs)
        ests = [self.estimate(space, a) for a in archs]
        if self.combine == "weighted" or not ests:
            return ests
        return rank_weighted(ests, {s: w for s, (w, _, _) in self.weights.items()})

    def fallback_signals(self) -> list[str]:
        """The signals the rank fallback may use: this combination's learned features."""
        return [s for s in self.weights if s in FALLBACK_DIRECTIONS]

    def rank_fallback(self, space: "SearchSpace", archs: Sequence[str]) -> list[Estimate]:
        """Equal-weight rank sum (directions ``FALLBACK_DIRECTIONS``) of the signals in
        ``fallback_signals()`` that every architecture has (components with undefined
        activation patterns skipped); fidelity ``"zero-cost:rank-fallback"``."""
        raw = []
        for a in archs:
            t0 = time.perf_counter()
            canon = space.canonical(a)
            signals, _, _ = self._signals(space, canon, skip_undefined=True)
            raw.append(Estimate(arch=canon, score=0.0, signals=signals, seconds=time.perf_counter() - t0,
                                fidelity="zero-cost:rank-fallback"))
        used = [s for s in self.fallback_signals() if raw and all(s in e.signals for e in raw)]
        if raw and not used:
            raise self._refuse(space, "and none of its signals exists there to rank by")
        return rank_weighted(raw, {s: float(FALLBACK_DIRECTIONS[s]) for s in used}, directions=True)

    def population_relative(self, space: "SearchSpace") -> bool:
        return self.combine == "rank" or not self.fits(space)

    def applied(self, space: "SearchSpace", ests: Sequence[Estimate]) -> dict[str, Any]:
        out = super().applied(space, ests)
        out["fit_on"] = list(self.fit_on) if self.fit_on is not None else None
        out["fit_dataset"] = self.fit_dataset
        if self.fits(space):
            out["mode"] = "learned" if self.combine == "weighted" else "learned-rank"
        else:
            used = [s for s in self.fallback_signals() if ests and all(s in e.signals for e in ests)]
            out["mode"] = "rank-fallback"
            out["fallback_signals"] = {s: FALLBACK_DIRECTIONS[s] for s in used}
            out["fallback_missing"] = [s for s in self.fallback_signals() if s not in used]
        return out

    def config(self) -> dict[str, Any]:
        return {"estimator": self.name, "fidelity": self.fidelity, "seed": self.seed, "combine": self.combine,
                "foreign": self.foreign, "fit_on": list(self.fit_on) if self.fit_on is not None else None,
                "fit_dataset": self.fit_dataset,
                "components": self.components, "weights": {k: list(v) for k, v in self.weights.items()}}


def rank_weighted(ests: list[Estimate], weights: Mapping[str, float], *, directions: bool = False) -> list[Estimate]:
    """``score = sum_i w_i * rank(signal_i)`` within ``ests`` (average ties).
    ``directions=True``: ``w_i`` is a sign and signal ``i`` is ranked as ``w_i * signal_i``
    (so ``-1`` ranks low values best), each rank counted once."""
    from scipy.stats import rankdata

    total = [0.0] * len(ests)
    for sig, w in weights.items():
        vals = [(w if directions else 1.0) * e.signals[sig] for e in ests]
        for i, r in enumerate(rankdata(vals)):
            total[i] += (1.0 if directions else w) * float(r)
    return [replace(e, score=s) for e, s in zip(ests, total)]


# Learned weights (provenance): `python bench/proxy_correlation.py --shard K/2` (K = 0, 1; default
# estimator settings, seed 0) then `--merge`, on all 725 CIFAR-10 rows of
# ../shared/data/nb201_subset725.csv -> bench/results/proxy_correlation.json, summary.learned.<set>
# .linear.fit_A_test_B.weights: least squares of the standardised accuracy rank on the
# standardised (log where LOG_SIGNALS, clipped at +-Z_CLIP) signals of fit half A
# (362 rows of halves(725, seed=0)); tau / rho below are on the other 363 rows (half B) only.
# Entries: signal -> (weight, mean, std) of f(signal) on half A (degenerate sentinels excluded).
# zc: held-out tau 0.585 / rho 0.780.
ZC_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "naswot": (0.225983, 383.483718, 24.617652),
    "synflow": (0.363818, 56.87272, 22.086582),
    "flops": (0.263412, 3.722577, 0.843579),
}
# tenas-flops: held-out tau 0.642 / rho 0.836.
TENAS_FLOPS_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "ntk_cond": (-0.398742, 3.403307, 2.068355),
    "linear_regions": (0.226598, 5.460953, 0.486453),
    "flops": (0.412116, 3.722577, 0.843579),
}
# zc-all (set "meco+tenas+zc"): held-out tau 0.749 / rho 0.919 (fit half: 0.759 / 0.923); chosen
# as the best linear set by 5-fold CV within half A (0.757; "all" with params: 0.757).
ZC_ALL_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "meco": (0.636758, 2.500238, 1.108694),
    "ntk_cond": (-0.311162, 3.403307, 2.068355),
    "linear_regions": (-0.008781, 5.460953, 0.486453),
    "naswot": (-0.080688, 383.483718, 24.617652),
    "synflow": (0.26293, 56.87272, 22.086582),
    "flops": (-0.107601, 3.722577, 0.843579),
}


class _NB201Learned(CombinedEstimator):
    """Weights learned on NAS-Bench-201 / CIFAR-10 (see the module docstring for what
    happens on other spaces)."""

    fit_on: ClassVar[tuple[dict[str, Any], ...] | None] = (NB201_FIT,)
    fit_dataset: ClassVar[str | None] = "CIFAR-10 (NAS-Bench-201 200-epoch accuracy)"


class ZeroCostCombined(_NB201Learned):
    """``zc``: naswot + synflow + flops with learned weights (``ZC_WEIGHTS``)."""

    name: ClassVar[str] = "zc"

    def __init__(self, *, seed: int | None = 0, combine: str = "weighted", foreign: str = "rank") -> None:
        super().__init__(components={"naswot": {}, "synflow": {}, "flops": {}}, weights=ZC_WEIGHTS,
                         seed=seed, combine=combine, foreign=foreign)


class TENASFlopsCombined(_NB201Learned):
    """``tenas-flops``: TE-NAS signals + flops with learned weights (``TENAS_FLOPS_WEIGHTS``)."""

    name: ClassVar[str] = "tenas-flops"

    def __init__(self, *, seed: int | None = 0, combine: str = "weighted", foreign: str = "rank") -> None:
        super().__init__(components={"tenas": {}, "flops": {}}, weights=TENAS_FLOPS_WEIGHTS,
                         seed=seed, combine=combine, foreign=foreign)


class AllZeroCostCombined(_NB201Learned):
    """``zc-all``: meco + TE-NAS signals + naswot + synflow + flops with learned weights
    (``ZC_ALL_WEIGHTS``; params left out: rank-identical to flops on NAS-Bench-201)."""

    name: ClassVar[str] = "zc-all"

    def __init__(self, *, seed: int | None = 0, combine: str = "weighted", foreign: str = "rank") -> None:
        super().__init__(components={"meco": {}, "tenas": {}, "naswot": {}, "synflow": {}, "flops": {}},
                         weights=ZC_ALL_WEIGHTS, seed=seed, combine=combine, foreign=foreign)


#: XGBoost model of ``zc-xgb`` (bench/proxy_correlation.py --export-xgb; provenance inside).
XGB_MODEL = "models/zc_xgb.json"


class XGBZeroCostCombined(_NB201Learned):
    """``zc-xgb``: the ``zc-all`` signals scored by a shallow XGBoost regression of the
    accuracy rank (300 trees of depth 3) fit on half A of the NAS-Bench-201 rows
    (``XGB_MODEL``; ``provenance()`` returns how it was made and its held-out tau).
    ``score`` = predicted accuracy rank in [0, 1] (higher is better)."""

    name: ClassVar[str] = "zc-xgb"

    def __init__(self, *, seed: int | None = 0, combine: str = "weighted", foreign: str = "rank") -> None:
        super().__init__(components={"meco": {}, "tenas": {}, "naswot": {}, "synflow": {}, "flops": {}},
                         weights=ZC_ALL_WEIGHTS, seed=seed, combine=combine, foreign=foreign)
        self._booster = None

    def booster(self):
        if self._booster is None:
            import os

            import xgboost as xgb

            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), XGB_MODEL)
            if not os.path.exists(path):
                raise CosearchError(f"{self.name}: model file {path!r} is missing; re-create it with "
                                    "python bench/proxy_correlation.py --export-xgb meco+tenas+zc:<path>")
            bst = xgb.Booster()
            bst.load_model(path)
            self._booster = bst
        return self._booster

    def provenance(self) -> dict[str, Any]:
        import json

        return json.loads(self.booster().attr("provenance") or "{}")

    def weighted(self, signals: Mapping[str, float]) -> float:
        import numpy as np
        import xgboost as xgb

        bst = self.booster()
        feats = list(bst.feature_names or [])
        missing = [f for f in feats if f not in signals]
        if missing:
            raise CosearchError(f"{self.name}: components gave no signal(s) {', '.join(missing)}; got {', '.join(signals)}")
        row = np.array([[transform(f, signals[f]) for f in feats]], dtype=float)
        return float(bst.predict(xgb.DMatrix(row, feature_names=feats))[0])

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model": XGB_MODEL, "provenance": self.provenance()}
