"""Activation patterns of piecewise-linear activations (ReLU6, Hardtanh, LeakyReLU,
Hardswish, ... and a plug-in's own) and what happens on smooth ones, with known answers."""

import math
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from cosearch.errors import CosearchError
from cosearch.estimate import activations as A
from cosearch.estimate import create_estimator
from cosearch.estimate import signals as S
from cosearch.space.base import SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plugins.tiny_space  # noqa: E402,F401  registers "tiny"


def _codes(act: nn.Module, z: list[float]) -> list[int]:
    return S.activation_codes(nn.Sequential(act), torch.tensor(z).reshape(-1, 1))[:, 0].tolist()


def test_pieces_of_each_builtin_type():
    assert _codes(nn.ReLU(), [-1.0, 0.0, 2.0]) == [0, 0, 1]
    assert _codes(nn.ReLU6(), [-1.0, 0.0, 3.0, 6.0, 7.0]) == [0, 0, 1, 2, 2]
    assert _codes(nn.Hardtanh(-1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0]) == [0, 0, 1, 2, 2]
    assert _codes(nn.LeakyReLU(0.1), [-1.0, 0.5]) == [0, 1]
    for act in (nn.Hardsigmoid(), nn.Hardswish()):
        assert _codes(act, [-4.0, -3.0, 0.0, 3.0, 4.0]) == [0, 0, 1, 2, 2]
    assert _codes(nn.Hardshrink(0.5), [-1.0, 0.0, 1.0]) == [0, 1, 2]
    # in-place activations are read before they overwrite their input
    assert _codes(nn.Hardswish(inplace=True), [-4.0, 0.0, 4.0]) == [0, 1, 2]
    assert A.scan(nn.Sequential(nn.ReLU6())).affine and not A.scan(nn.Sequential(nn.Hardswish())).affine


def test_linear_regions_of_1d_relu6_net_with_hand_computed_breakpoints():
    # units relu6(w x + b) break where w x + b = 0 and where it = 6:
    #   (1, 0)    -> x = 0, 6;   (2, -1) -> x = 0.5, 3.5;   (1, -10) -> x = 10, 16 (outside)
    # on [-1, 8]: breakpoints 0, 0.5, 3.5, 6 -> 5 regions; a ReLU net with the same
    # weights only breaks at 0 and 0.5 -> 3 regions.
    def net(act):
        n = nn.Sequential(nn.Linear(1, 3), act, nn.Linear(3, 1))
        with torch.no_grad():
            n[0].weight.copy_(torch.tensor([[1.0], [2.0], [1.0]]))
            n[0].bias.copy_(torch.tensor([0.0, -1.0, -10.0]))
        return n

    x = S.segment_inputs(torch.tensor([-1.0]), torch.tensor([8.0]), 901)  # step 0.01, no point on a breakpoint
    assert S.linear_regions(net(nn.ReLU6()), x) == 5
    assert S.count_linear_regions(S.activation_codes(net(nn.ReLU6()), x)) == 5
    assert S.linear_regions(net(nn.ReLU()), x) == 3
    # [1, 3] holds no breakpoint: one region; [3, 7] holds 3.5 and 6: three
    assert S.linear_regions(net(nn.ReLU6()), S.segment_inputs(torch.tensor([1.0]), torch.tensor([3.0]), 50)) == 1
    assert S.linear_regions(net(nn.ReLU6()), S.segment_inputs(torch.tensor([3.0]), torch.tensor([7.0]), 77)) == 3


def test_region_counter_across_parts_equals_concatenated():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 3, size=(40, 2)).astype(np.uint8), rng.integers(0, 2, size=(40, 9)).astype(np.uint8)]
    full = np.concatenate(parts, axis=1)
    assert S.count_linear_regions(parts) == S.count_linear_regions(full) == len({tuple(r) for r in full})
    assert S.swap_count(parts) == S.swap_count(full) == len({tuple(c) for c in full.T})


def test_naswot_kernel_for_a_known_three_piece_pattern_matrix():
    # ReLU6 pieces: z = -1 -> 0, z = 3 -> 1, z = 7 -> 2
    codes = np.array([[0, 1, 2, 2], [0, 2, 2, 1], [1, 1, 2, 0]])
    K_hand = np.array([[4, 2, 2], [2, 4, 1], [2, 1, 4]])  # agreements per pair
    z = torch.tensor(np.choose(codes, [-1.0, 3.0, 7.0]), dtype=torch.float32)
    net = nn.Sequential(nn.ReLU6())
    got = S.activation_codes(net, z)
    np.testing.assert_array_equal(got, codes)
    np.testing.assert_array_equal(S.pattern_kernel(got), K_hand)
    val, sing = S.naswot(net, z)
    assert not sing and val == pytest.approx(math.log(np.linalg.det(K_hand)))  # det = 38
    # two modules: the kernel accumulated per module equals the concatenated one
    net2 = nn.Sequential(nn.ReLU6(), nn.Identity(), nn.Hardtanh(-10.0, 10.0))
    both = S.activation_codes(net2, z)
    assert both.shape == (3, 8)
    assert S.naswot(net2, z)[0] == pytest.approx(math.log(abs(np.linalg.det(S.pattern_kernel(both)))))
    # binary codes: the kernel is NASLib's c c^T + (1-c)(1-c)^T
    c = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(S.pattern_kernel(c), c @ c.T + (1 - c) @ (1 - c).T)


def test_smooth_activations_have_no_pattern_one_line_error():
    for net in (nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1)),
                nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.SiLU())):  # mixed: still undefined
        for fn in (S.activation_codes, S.linear_regions, S.naswot):
            with pytest.raises(A.PatternUndefined, match="smooth activation") as ei:
                fn(net, torch.zeros(4, 2))
            assert "\n" not in str(ei.value) and isinstance(ei.value, CosearchError)
    with pytest.raises(A.PatternUndefined, match="GELU"):
        S.activation_codes(nn.Sequential(nn.GELU()), torch.zeros(2, 1))


class _Step(nn.Module):
    """A user's activation: 0 below 0, 1 above 1, identity between (3 pieces)."""

    def forward(self, x):
        return x.clamp(0.0, 1.0)


class _MyReLU(nn.ReLU):
    pass


def test_register_activation_for_a_plugin_type():
    net = nn.Sequential(_Step())
    with pytest.raises(A.PatternUndefined, match="register_activation"):
        S.activation_codes(net, torch.zeros(2, 1))
    A.register_activation(_Step, lambda m, z: (z > 0).to(torch.uint8) + (z >= 1).to(torch.uint8))
    assert S.activation_codes(net, torch.tensor([[-1.0], [0.5], [2.0]]))[:, 0].tolist() == [0, 1, 2]
    # subclasses follow their base unless declared otherwise
    assert _codes(_MyReLU(), [-1.0, 1.0]) == [0, 1]
    A.register_smooth(_MyReLU)
    with pytest.raises(A.PatternUndefined, match="_MyReLU"):
        S.activation_codes(nn.Sequential(_MyReLU()), torch.zeros(2, 1))
    with pytest.raises(CosearchError, match="nn.Module subclass"):
        A.register_activation(int, lambda m, z: z)


class ActToySpace(SearchSpace):
    """conv(3->4)-BN-ACT-conv(4->4)-BN-ACT-GAP-linear; arch = the activation's name."""

    name: ClassVar[str] = "act-toy"
    ACTS = {"relu6": nn.ReLU6, "leaky": nn.LeakyReLU, "hswish": nn.Hardswish, "gelu": nn.GELU, "silu": nn.SiLU}

    def canonical(self, arch):
        if arch not in self.ACTS:
            raise CosearchError(f"act-toy arch {arch!r}; valid: {', '.join(self.ACTS)}")
        return arch

    def sample(self, rng):
        return list(self.ACTS)[int(rng.integers(len(self.ACTS)))]

    def mutate(self, arch, rng):
        return next(a for a in self.ACTS if a != arch)

    def crossover(self, a, b, rng):
        return a

    @property
    def encoding_size(self):
        return 1

    def encode(self, arch):
        return np.zeros(1)

    def build(self, arch, *, seed=0):
        act = self.ACTS[arch]
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), act(),
                                 nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), act(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def input_shape(self, arch, batch=1):
        return (batch, 3, 6, 6)

    def size(self):
        return len(self.ACTS)


FAST_TENAS = dict(batch_size=6, lr_samples=100)


def test_tenas_on_piecewise_and_smooth_activations():
    space = ActToySpace()
    est = create_estimator("tenas", seed=0, **FAST_TENAS)
    for arch in ("relu6", "leaky"):
        e = est.estimate(space, arch)
        assert e.fidelity == "zero-cost" and e.signals["linear_regions"] >= 2 and math.isfinite(e.score)
    hs = est.estimate(space, "hswish")
    assert hs.fidelity == "zero-cost:activation-regions" and hs.signals["linear_regions"] >= 2
    for arch in ("gelu", "silu"):  # NTK defined, regions undefined: absent, not zero
        e = est.estimate(space, arch)
        assert e.fidelity == "zero-cost:ntk-only" and "linear_regions" not in e.signals
        assert math.isfinite(e.signals["ntk_cond"]) and e.score == pytest.approx(-0.2489 * math.log(e.signals["ntk_cond"]))
    ranked = est.estimate_many(space, ["relu6", "gelu"])  # regions missing for one: ranks on the NTK only
    assert sorted(r.score for r in ranked) == [1.0, 2.0]
    for name in ("naswot", "swap"):
        assert math.isfinite(create_estimator(name, seed=0, batch_size=8).estimate(space, "relu6").score)
        with pytest.raises(CosearchError, match="GELU"):
            create_estimator(name, seed=0, batch_size=8).estimate(space, "gelu")


def _tenas_on(space, archs, seed, **kw):
    est = create_estimator("tenas", seed=seed, **{**FAST_TENAS, **kw})
    return [est.estimate(space, a) for a in archs]


@pytest.mark.parametrize("space_name, settings, archs", [
    ("nb201", {"C": 4, "N": 1},
     ["|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|",
      "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"]),
    ("mbv2", {"resolution": 32},
     ["w0.35-k3e3d1-k3e3d1-k3e3d1-k3e3d1-k3e3d1-k3e3d1", "w0.35-k5e4d1-k3e3d2-k3e3d1-k3e3d1-k3e3d1-k3e3d1"]),
    ("tiny", {}, ["c4k3", "c8k5"]),
])
def test_tenas_on_every_builtin_and_plugin_space_deterministic(space_name, settings, archs):
    from cosearch.space import create_space

    space = create_space(space_name, **settings)
    a = _tenas_on(space, archs, seed=1)
    b = _tenas_on(space, archs, seed=1)
    assert [e.signals for e in a] == [e.signals for e in b] and [e.score for e in a] == [e.score for e in b]
    for e in a:
        assert e.fidelity == "zero-cost" and math.isfinite(e.score)
        assert e.signals["linear_regions"] >= 1 and 1.0 <= e.signals["ntk_cond"] <= S.COND_MAX
    c = _tenas_on(space, archs[:1], seed=2)
    assert c[0].signals != a[0].signals  # the seed matters


def test_mbv2_region_count_is_not_saturated():
    """With mbv2's defaults (frozen BN statistics, short segment) the count is below the
    number of points, so it can tell architectures apart."""
    from cosearch.space import create_space

    space = create_space("mbv2", resolution=32)
    est = create_estimator("tenas", seed=0, lr_samples=100)
    n = est.linear_regions(space, "w0.35-k3e3d1-k3e3d1-k3e3d1-k3e3d1-k3e3d1-k3e3d1")
    assert 1 < n < 100


def test_zc_all_fallback_on_smooth_networks_uses_the_signals_that_exist():
    space = ActToySpace()
    est = create_estimator("zc-all", seed=0)
    ests = est.estimate_many(space, ["gelu", "silu"])
    info = est.applied(space, ests)
    assert info["mode"] == "rank-fallback"
    assert sorted(info["fallback_missing"]) == ["linear_regions", "naswot"]
    assert set(info["fallback_signals"]) == {"meco", "ntk_cond", "synflow", "flops"}
    assert all("naswot" not in e.signals and "linear_regions" not in e.signals for e in ests)
    assert sorted(e.score for e in ests) != [0.0, 0.0]
