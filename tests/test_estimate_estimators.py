"""Estimators end to end on a toy space (small convnets), so they run fast and
do not depend on any real space's sizes."""

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from cosearch.errors import CosearchError
from cosearch.estimate import create_estimator
from cosearch.space.base import SearchSpace


class ToySpace(SearchSpace):
    """Archs ``"w<k>"`` = conv(3->k)-BN-ReLU-conv(k->k)-BN-ReLU-GAP-linear; ``"dead"``: all weights zero."""

    name: ClassVar[str] = "toy"
    ARCHS = ("w2", "w4", "w8", "dead")

    def canonical(self, arch):
        if arch not in self.ARCHS:
            raise CosearchError(f"toy arch {arch!r}; valid: {', '.join(self.ARCHS)}")
        return arch

    def sample(self, rng):
        return self.ARCHS[int(rng.integers(len(self.ARCHS)))]

    def mutate(self, arch, rng):
        return next(a for a in self.ARCHS if a != arch)

    def crossover(self, a, b, rng):
        return a

    @property
    def encoding_size(self):
        return 1

    def encode(self, arch):
        return np.zeros(1)

    def build(self, arch, *, seed=0):
        k = 4 if arch == "dead" else int(arch[1:])
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = nn.Sequential(nn.Conv2d(3, k, 3, padding=1), nn.BatchNorm2d(k), nn.ReLU(),
                                nn.Conv2d(k, k, 3, padding=1), nn.BatchNorm2d(k), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(k, 5))
        if arch == "dead":
            with torch.no_grad():
                for p in net.parameters():
                    p.zero_()
        return net

    def input_shape(self, arch, batch=1):
        return (batch, 3, 8, 8)

    def size(self):
        return len(self.ARCHS)


FAST = {"tenas": dict(batch_size=8, lr_samples=200), "naswot": dict(batch_size=16), "swap": dict(batch_size=8)}
ALL = ["tenas", "meco", "swap", "naswot", "synflow", "params", "flops", "zc", "tenas-flops", "zc-all", "zc-xgb"]


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_scores_and_finite(name):
    space = ToySpace()
    a = [e.score for e in create_estimator(name, seed=3, **FAST.get(name, {})).estimate_many(space, ["w2", "w4", "w8"])]
    b = [e.score for e in create_estimator(name, seed=3, **FAST.get(name, {})).estimate_many(space, ["w2", "w4", "w8"])]
    assert a == b and all(math.isfinite(s) for s in a)


def test_different_seed_changes_tenas_signals():
    space = ToySpace()
    s0 = create_estimator("tenas", seed=0, **FAST["tenas"]).estimate(space, "w4").signals
    s1 = create_estimator("tenas", seed=1, **FAST["tenas"]).estimate(space, "w4").signals
    assert s0["ntk_cond"] != s1["ntk_cond"]


def test_singular_arch_is_worst_ranked_never_nan():
    space = ToySpace()
    est = create_estimator("tenas", seed=0, **FAST["tenas"])
    ests = est.estimate_many(space, ["w2", "dead", "w8"])
    dead = ests[1]
    assert dead.signals["ntk_singular"] == 1.0 and dead.signals["ntk_cond"] == 1e30
    assert all(math.isfinite(e.score) for e in ests)
    assert dead.score == min(e.score for e in ests)
    single = est.estimate(space, "dead")
    assert math.isfinite(single.score) and single.score < est.estimate(space, "w8").score
    nw = create_estimator("naswot", seed=0, **FAST["naswot"]).estimate(space, "dead")
    assert nw.signals["naswot_singular"] == 1.0 and math.isfinite(nw.score)
    sf = create_estimator("synflow", seed=0).estimate(space, "dead")
    assert sf.signals["synflow_degenerate"] == 1.0 and math.isfinite(sf.score)


def test_params_and_flops_of_toy_net():
    space = ToySpace()
    k = 4
    params = (3 * 9 * k + k) + 2 * k + (k * 9 * k + k) + 2 * k + (k * 5 + 5)
    assert create_estimator("params").estimate(space, "w4").score == pytest.approx(params / 1e6)
    macs = 8 * 8 * k * 27 + 8 * 8 * k * k * 9 + k * 5
    assert create_estimator("flops").estimate(space, "w4").score == pytest.approx(macs / 1e6)


def test_bad_constructor_values():
    with pytest.raises(CosearchError, match="batch_size=0"):
        create_estimator("tenas", batch_size=0)
    with pytest.raises(CosearchError, match="init='xavier'.*kaiming"):
        create_estimator("naswot", init="xavier")
    with pytest.raises(CosearchError, match="seed=-1"):
        create_estimator("flops", seed=-1)


def test_tenas_repeats_average_the_per_repeat_parts():
    space = ToySpace()
    est = create_estimator("tenas", seed=5, repeats=3, lr_repeats=2, **FAST["tenas"])
    sig = est.estimate(space, "w4").signals
    conds = [est.ntk_once(space, "w4", r)[0] for r in range(3)]
    assert len(set(conds)) == 3 and sig["ntk_cond"] == pytest.approx(sum(conds) / 3)
    regions = [est.regions_once(space, "w4", r) for r in range(2)]
    assert sig["linear_regions"] == pytest.approx(sum(regions) / 2)


def test_meco_on_toy_nets_and_dead_net_is_zero():
    space = ToySpace()
    est = create_estimator("meco", seed=0)
    s = {a: est.estimate(space, a).score for a in ("w2", "w8", "dead")}
    assert all(math.isfinite(v) for v in s.values())
    # all-zero weights: constant feature maps, correlations set to 0, every minimum eigenvalue 0
    assert s["dead"] == 0.0 and s["w2"] > 0.0 and s["w8"] > 0.0
    with pytest.raises(CosearchError, match="samples=9"):
        create_estimator("meco", batch_size=8, samples=9)


def test_combined_score_clips_degenerate_signals():
    from cosearch.estimate.combine import Z_CLIP, CombinedEstimator

    est = CombinedEstimator(components={"naswot": {}}, weights={"naswot": (1.0, 100.0, 10.0)})
    assert est.weighted({"naswot": 120.0}) == pytest.approx(2.0)
    assert est.weighted({"naswot": -1e30}) == -Z_CLIP  # NASWOT singular -> worst by Z_CLIP, finite
    assert est.weighted({"naswot": 1e6}) == Z_CLIP


def test_zc_xgb_model_carries_provenance_and_ranks_by_signals():
    est = create_estimator("zc-xgb")
    prov = est.provenance()
    assert prov["features"] == ["meco", "ntk_cond", "linear_regions", "naswot", "synflow", "flops"]
    assert prov["held_out_half_B"]["n"] == 363 and "halves(725, seed=0)" in prov["split"]
    good = {"meco": 60.0, "ntk_cond": 5.0, "linear_regions": 400.0, "naswot": 410.0, "synflow": 100.0, "flops": 100.0}
    bad = {"meco": 1.0, "ntk_cond": 3000.0, "linear_regions": 100.0, "naswot": 320.0, "synflow": 15.0, "flops": 8.0}
    assert est.weighted(good) > est.weighted(bad)


def test_absolute_estimators_are_declared():
    from cosearch.estimate import ESTIMATORS
    from cosearch.estimate.base import Estimator

    assert Estimator.absolute is False  # a plug-in estimator is not assumed absolute
    for name in ESTIMATORS.names():
        assert ESTIMATORS.get(name).absolute is True, name
    space = ToySpace()
    tenas = create_estimator("tenas", seed=0, **FAST["tenas"])
    assert tenas.population_relative(space)  # combine="rank" in estimate_many
    assert not create_estimator("tenas", combine="formula").population_relative(space)
    # estimate() of one arch is the same whatever was scored before (no population state)
    first = tenas.estimate(space, "w4").score
    tenas.estimate_many(space, ["w2", "w8", "w4"])
    assert tenas.estimate(space, "w4").score == first


def test_learned_combinations_refuse_or_fall_back_off_their_fit_space():
    space = ToySpace()
    for name in ("zc-all", "zc-xgb"):
        est = create_estimator(name, seed=0)
        assert est.fit_on[0]["space"] == "nb201" and not est.fits(space)
        assert "fit on nb201" in est.why_not_absolute(space)
        with pytest.raises(CosearchError, match=r"fit on nb201 \(C=16, N=5.*only, not on toy") as ei:
            est.estimate(space, "w4")  # absolute: no population-relative score from estimate()
        assert "\n" not in str(ei.value)
        with pytest.raises(CosearchError, match="foreign='refuse'"):
            create_estimator(name, seed=0, foreign="refuse").estimate_many(space, ["w2", "w4"])
    est = create_estimator("zc-all", seed=0)
    ests = est.estimate_many(space, ["w2", "w8", "dead"])
    assert {e.fidelity for e in ests} == {"zero-cost:rank-fallback"}
    info = est.applied(space, ests)
    assert info["mode"] == "rank-fallback" and info["population_relative"]
    assert info["fallback_signals"] == {"meco": 1, "ntk_cond": -1, "linear_regions": 1, "naswot": 1,
                                        "synflow": 1, "flops": 1}
    # equal-weight rank sum with directions, recomputed by hand
    from scipy.stats import rankdata

    total = sum(rankdata([d * e.signals[s] for e in ests]) for s, d in info["fallback_signals"].items())
    assert [e.score for e in ests] == pytest.approx(list(total))
    assert ests[2].score == min(e.score for e in ests)  # the dead net ranks worst
    with pytest.raises(CosearchError, match="foreign='nope'"):
        create_estimator("zc-all", foreign="nope")


def test_learned_combination_on_its_fit_space_is_learned():
    from cosearch.space import create_space

    space = create_space("nb201")
    est = create_estimator("zc")
    assert est.fits(space) and not est.population_relative(space) and est.why_not_absolute(space) is None
    assert not est.fits(create_space("nb201", C=8))  # other settings: not where it was fit
    assert est.applied(space, [])["mode"] == "learned"


@pytest.mark.parametrize("name", ALL)
def test_every_estimator_scores_the_plugin_space(name):
    import sys as _sys
    from pathlib import Path

    _sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plugins.tiny_space  # noqa: F401  registers "tiny"
    from cosearch.space import create_space

    space = create_space("tiny")
    ests = create_estimator(name, seed=0, **FAST.get(name, {})).estimate_many(space, ["c4k3", "c16k5"])
    assert len(ests) == 2 and all(math.isfinite(e.score) for e in ests)
    assert all(e.fidelity.startswith("zero-cost") for e in ests)
