"""TE-NAS (Chen, Gong & Wang, ICLR 2021): trainability (NTK condition number)
and expressivity (number of linear regions) at initialisation, scored without
training. See ``docs/estimators.md`` for every choice and how it departs from
the reference implementation.

Procedure, per architecture:

1. **NTK.** For ``r in range(repeats)``: build the network with a derived seed
   (PyTorch default initialisation unless ``init="kaiming"``), draw
   ``batch_size`` seeded standard-normal inputs, set every BatchNorm's
   statistics to that batch's statistics (one train-mode forward, as TE-NAS
   computes the NTK in train mode) and evaluate with them frozen; per-sample
   gradients of each sample's summed logits w.r.t. all ``*weight`` parameters
   (``vmap(grad)``); ``K = J J^T`` in float64; ``cond = lambda_max /
   lambda_min`` (guarded, see ``signals.ntk_condition``). Signal ``ntk_cond``
   is the mean over repeats (TE-NAS averages 3 repeats), ``ntk_singular`` is 1
   if any repeat was singular (then ``ntk_cond = 1e30``).
2. **Linear regions.** On a *reduced* network of the same cell (per-space
   ``SPACE_DEFAULTS``: nb201 ``C=1, N=1, resolution=8``; mbv2 ``resolution=32``;
   TE-NAS also counts on a thin 1-cell-per-stage network): ``lr_samples`` inputs
   evenly spaced on the segment from a standard-normal input ``a`` towards another
   ``b`` (``a + lr_span*(b-a)`` at the end), in one batch; each input's activation
   pattern - the piece every unit of every registered piecewise activation is in
   (ReLU: on/off, ReLU6/Hardtanh: 3 pieces, Hardswish: 3, ...; ``activations``) -;
   ``linear_regions`` = number of distinct patterns = the regions the segment
   crosses (exact once points are denser than regions), averaged over
   ``lr_repeats`` (network and segment re-drawn each time). BatchNorm: nb201 in
   train mode with the segment's own statistics (as measured for the NB201
   results); mbv2 and other spaces with statistics frozen from ``batch_size``
   independent inputs (``lr_bn="frozen"``; with the segment's own statistics the
   count is scale-invariant and saturated on mbv2). TE-NAS instead counts
   distinct patterns of 1000 independent low-dimensional (1x3x3) inputs; with
   our stem and >= 8x8 inputs independent points all land in different regions
   (measured: 1000/1000 for every op), so a 1-D slice is what keeps the count
   discriminative. A network with a smooth activation (GELU, SiLU) has no
   pattern: ``linear_regions`` is left out (not zero), the score uses the NTK
   only and the estimate's fidelity is ``"zero-cost:ntk-only"``; with a
   non-affine piece (Hardswish) the regions are activation regions, fidelity
   ``"zero-cost:activation-regions"``.
3. **Score.** ``estimate_many`` ranks the population like TE-NAS:
   ``score = rank(-ntk_cond) + rank(linear_regions)`` (scipy ``rankdata``,
   average ties; higher is better). A single ``estimate`` cannot rank, so it
   returns ``-A * log(ntk_cond) + B * log(linear_regions)`` with the constants
   below (chosen so both terms have equal spread on the NAS-Bench-201 subset;
   ``combine="formula"`` makes ``estimate_many`` use it too). The formula is a
   function of the one architecture (``absolute``): comparable across calls in a
   run, on every space. ``A``, ``B`` are per space (``SPACE_DEFAULTS[...]["formula"]``:
   1/std of the logs over a sample, no accuracy involved); spaces without their
   own use NB201's, which are then mere scales.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from cosearch.errors import CosearchError
from cosearch.estimate.base import Estimate
from cosearch.estimate.torch_base import INITS, TorchEstimator, build, check_int, sub_seed

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace

#: per-space defaults (an explicit constructor argument wins):
#: ``lr_settings`` - space settings of the reduced network regions are counted on;
#: ``lr_samples`` - points on the segment; ``lr_span`` - the segment runs from input
#: ``a`` to ``a + lr_span * (b - a)``; ``lr_bn`` - ``"segment"``: train mode, BatchNorm
#: statistics of the segment's own points (TE-NAS style; scale-invariant, so a short
#: span changes nothing), ``"frozen"``: BatchNorm statistics of ``batch_size``
#: independent seeded inputs, then eval mode (so the span sets how many regions the
#: segment crosses); ``ntk_settings`` - space settings of the network the NTK is
#: computed on; ``formula`` - ``(A, B)`` of the single-arch score
#: ``-A*log(ntk_cond) + B*log(linear_regions)``, 1/std of the two logs over a sample of
#: the space (no accuracy involved: it only gives both terms equal spread, as the rank
#: sum does). Other spaces use ``GENERIC_DEFAULTS``; a plug-in space can declare its
#: own with ``register_space_defaults``.
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    # bench/results/proxy_correlation.json was measured with exactly these
    "nb201": {"lr_settings": {"C": 1, "N": 1, "resolution": 8}, "lr_samples": 1000, "lr_span": 1.0,
              "lr_bn": "segment", "ntk_settings": {}, "formula": (0.2489, 2.0557)},
    # mbv2 (width is an arch decision, not a setting): at 32x32 with "segment" statistics
    # every one of 1000 points fell in its own region for every arch tried (span 1 to
    # 0.01), so the count said nothing; frozen statistics + span 1e-3 gave 9..147 of 200
    # on 6 sampled archs (docs/estimators.md). NTK at 32x32: 0.13-5 s instead of 0.2-9 s.
    # formula: bench/results/proxy_correlation_mbv2.json (30 archs sampled with seed 0,
    # these defaults, seed 0), summary.formula_constants_measured (population std).
    "mbv2": {"lr_settings": {"resolution": 32}, "lr_samples": 400, "lr_span": 1e-3, "lr_bn": "frozen",
             "ntk_settings": {"resolution": 32}, "formula": (1.7969, 1.6389)},
}
#: other spaces: the NB201 formula constants, i.e. arbitrary scales there
GENERIC_DEFAULTS: dict[str, Any] = {"lr_settings": {}, "lr_samples": 1000, "lr_span": 1.0, "lr_bn": "frozen",
                                    "ntk_settings": {}, "formula": (0.2489, 2.0557)}
LR_BN = ("segment", "frozen")


def register_space_defaults(space: str, **defaults: Any) -> None:
    """Declare TE-NAS defaults for a (plug-in) space, keys as in ``SPACE_DEFAULTS``."""
    bad = sorted(set(defaults) - set(GENERIC_DEFAULTS))
    if bad:
        raise CosearchError(f"tenas: unknown default(s) {', '.join(bad)}; accepted: {', '.join(GENERIC_DEFAULTS)}")
    SPACE_DEFAULTS[space] = {**GENERIC_DEFAULTS, **defaults}


def space_defaults(space_name: str) -> dict[str, Any]:
    return {**GENERIC_DEFAULTS, **SPACE_DEFAULTS.get(space_name, {})}


#: nb201's single-arch formula ``-A*log(cond) + B*log(regions)``; A = 1/std(log cond),
#: B = 1/std(log regions) over fit half A (362 rows of halves(725, seed=0)) of the full
#: 725-row run in bench/results/proxy_correlation.json (default settings, seed 0).
FORMULA_A = 0.2489
FORMULA_B = 2.0557

COMBINES = ("rank", "formula")


class TENASEstimator(TorchEstimator):
    name: ClassVar[str] = "tenas"
    absolute: ClassVar[bool] = True  # estimate() is the single-arch formula

    def __init__(
        self,
        *,
        seed: int | None = 0,
        batch_size: int = 16,
        repeats: int = 1,
        lr_samples: int | None = None,
        lr_repeats: int = 1,
        lr_settings: dict[str, Any] | None = None,
        lr_span: float | None = None,
        lr_bn: str | None = None,
        ntk_settings: dict[str, Any] | None = None,
        init: str = "default",
        combine: str = "rank",
    ) -> None:
        super().__init__(seed=seed)
        self.batch_size = check_int(self.name, "batch_size", batch_size, 2, 1024)
        self.repeats = check_int(self.name, "repeats", repeats, 1, 100)
        self.lr_samples = None if lr_samples is None else check_int(self.name, "lr_samples", lr_samples, 2, 100000)
        self.lr_repeats = check_int(self.name, "lr_repeats", lr_repeats, 1, 100)
        if lr_settings is not None and not isinstance(lr_settings, dict):
            raise CosearchError(f"tenas: lr_settings={lr_settings!r} is invalid; accepted: a dict of space settings or None")
        self.lr_settings = lr_settings
        if lr_span is not None and (isinstance(lr_span, bool) or not isinstance(lr_span, (int, float))
                                    or not (0 < lr_span <= 1e6) or not math.isfinite(lr_span)):
            raise CosearchError(f"tenas: lr_span={lr_span!r} is invalid; accepted: a number > 0 or None")
        self.lr_span = None if lr_span is None else float(lr_span)
        if lr_bn is not None and lr_bn not in LR_BN:
            raise CosearchError(f"tenas: lr_bn={lr_bn!r} is invalid; accepted: {', '.join(LR_BN)} or None")
        self.lr_bn = lr_bn
        if ntk_settings is not None and not isinstance(ntk_settings, dict):
            raise CosearchError(f"tenas: ntk_settings={ntk_settings!r} is invalid; accepted: a dict of space settings or None")
        self.ntk_settings = ntk_settings
        if init not in INITS:
            raise CosearchError(f"tenas: init={init!r} is invalid; accepted: {', '.join(INITS)}")
        self.init = init
        if combine not in COMBINES:
            raise CosearchError(f"tenas: combine={combine!r} is invalid; accepted: {', '.join(COMBINES)}")
        self.combine = combine
        self._lr_space_cache: dict[str, "SearchSpace"] = {}

    # -- resolved settings ----------------------------------------------------------------
    def resolved(self, space: "SearchSpace") -> dict[str, Any]:
        """The settings used on ``space``: explicit arguments, else ``space_defaults``."""
        d = space_defaults(space.name)
        return {"lr_settings": d["lr_settings"] if self.lr_settings is None else self.lr_settings,
                "lr_samples": d["lr_samples"] if self.lr_samples is None else self.lr_samples,
                "lr_span": d["lr_span"] if self.lr_span is None else self.lr_span,
                "lr_bn": d["lr_bn"] if self.lr_bn is None else self.lr_bn,
                "ntk_settings": d["ntk_settings"] if self.ntk_settings is None else self.ntk_settings,
                "formula": tuple(d["formula"])}

    # -- parts ------------------------------------------------------------------------
    def _derived_space(self, space: "SearchSpace", settings: dict[str, Any]) -> "SearchSpace":
        if not settings:
            return space
        key = repr((sorted(space.config().items()), sorted(settings.items())))
        if key not in self._lr_space_cache:
            from cosearch.space import create_space

            base = {k: v for k, v in space.config().items() if k != "space"}
            self._lr_space_cache[key] = create_space(space.name, **{**base, **settings})
        return self._lr_space_cache[key]

    def lr_space(self, space: "SearchSpace") -> "SearchSpace":
        """The space whose networks linear regions are counted on."""
        return self._derived_space(space, self.resolved(space)["lr_settings"])

    def ntk_space(self, space: "SearchSpace") -> "SearchSpace":
        """The space whose networks the NTK is computed on."""
        return self._derived_space(space, self.resolved(space)["ntk_settings"])

    def ntk_once(self, space: "SearchSpace", arch: str, r: int) -> tuple[float, bool]:
        """NTK condition number of repeat ``r`` (its own network and batch)."""
        from cosearch.estimate import signals as S

        sp = self.ntk_space(space)
        net = build(sp, arch, sub_seed(self.seed, 10, r), self.init)
        x = S.random_inputs(sp.input_shape(arch, self.batch_size), sub_seed(self.seed, 11, r))
        S.freeze_batchnorm_to_batch_stats(net, x)
        res = S.ntk_condition(S.ntk_jacobian(net, x))
        return res.cond, res.singular

    def ntk(self, space: "SearchSpace", arch: str) -> tuple[float, bool]:
        from cosearch.estimate import signals as S

        conds, singular = [], False
        for r in range(self.repeats):
            cond, sing = self.ntk_once(space, arch, r)
            conds.append(cond)
            singular |= sing
        cond = S.COND_MAX if singular else min(sum(conds) / len(conds), S.COND_MAX)
        return cond, singular

    def regions_once(self, space: "SearchSpace", arch: str, r: int) -> int:
        """Activation regions crossed by the segment of repeat ``r``."""
        from cosearch.estimate import signals as S

        cfg = self.resolved(space)
        small = self.lr_space(space)
        net = build(small, arch, sub_seed(self.seed, 20, r), self.init)
        ends = S.random_inputs(small.input_shape(arch, 2), sub_seed(self.seed, 21, r))
        if cfg["lr_bn"] == "frozen":
            S.freeze_batchnorm_to_batch_stats(
                net, S.random_inputs(small.input_shape(arch, self.batch_size), sub_seed(self.seed, 22, r)))
        else:
            net.train()
        end = ends[0] + cfg["lr_span"] * (ends[1] - ends[0])
        return S.linear_regions(net, S.segment_inputs(ends[0], end, cfg["lr_samples"]))

    def linear_regions(self, space: "SearchSpace", arch: str) -> float:
        counts = [self.regions_once(space, arch, r) for r in range(self.lr_repeats)]
        return sum(counts) / len(counts)

    def patterns(self, space: "SearchSpace", arch: str):
        """``activations.scan`` of the network regions are counted on."""
        from cosearch.estimate.activations import scan

        return scan(build(self.lr_space(space), arch, sub_seed(self.seed, 20, 0), self.init))

    @staticmethod
    def formula(cond: float, regions: float | None, a: float = FORMULA_A, b: float = FORMULA_B) -> float:
        """``-a*log(cond) + b*log(regions)``; ``regions=None`` (undefined) drops the term."""
        score = -a * math.log(max(cond, 1.0))
        return score if regions is None else score + b * math.log(max(regions, 1.0))

    # -- Estimator --------------------------------------------------------------------
    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float], str]:
        from cosearch.estimate.activations import PatternUndefined

        a, b = self.resolved(space)["formula"]
        cond, singular = self.ntk(space, arch)
        sig = {"ntk_cond": cond, "ntk_singular": float(singular)}
        info = self.patterns(space, arch)
        if info.smooth_types:  # no pattern: regions undefined, NTK only (never a zero)
            return self.formula(cond, None, a, b), sig, "zero-cost:ntk-only"
        if not info.defined:
            raise PatternUndefined(info.why_undefined("linear regions (tenas)"))
        regions = self.linear_regions(space, arch)
        sig["linear_regions"] = regions
        fidelity = self.fidelity if info.affine else "zero-cost:activation-regions"
        return self.formula(cond, regions, a, b), sig, fidelity

    def population_relative(self, space: "SearchSpace") -> bool:
        return self.combine == "rank"

    def estimate_many(self, space: "SearchSpace", archs: Sequence[str]) -> list[Estimate]:
        ests = [self.estimate(space, a) for a in archs]
        if self.combine == "formula" or not ests:
            return ests
        return rank_combine(ests)

    def applied(self, space: "SearchSpace", ests: Sequence[Estimate]) -> dict[str, Any]:
        out = {**super().applied(space, ests), "settings": self.resolved(space)}
        if ests:
            out["activations"] = self.patterns(space, ests[0].arch).summary()
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batch_size": self.batch_size, "repeats": self.repeats,
                "lr_samples": self.lr_samples, "lr_repeats": self.lr_repeats,
                "lr_settings": self.lr_settings, "lr_span": self.lr_span, "lr_bn": self.lr_bn,
                "ntk_settings": self.ntk_settings, "space_defaults": SPACE_DEFAULTS,
                "generic_defaults": GENERIC_DEFAULTS, "init": self.init,
                "combine": self.combine, "formula": {"A": FORMULA_A, "B": FORMULA_B}}


def rank_combine(ests: list[Estimate]) -> list[Estimate]:
    """TE-NAS ranking: ``rank(-ntk_cond) + rank(linear_regions)`` within ``ests``
    (``linear_regions`` only if every estimate has it: ntk-only otherwise)."""
    from dataclasses import replace

    from scipy.stats import rankdata

    total = rankdata([-e.signals["ntk_cond"] for e in ests])
    if all("linear_regions" in e.signals for e in ests):
        total = total + rankdata([e.signals["linear_regions"] for e in ests])
    return [replace(e, score=float(t)) for e, t in zip(ests, total)]
