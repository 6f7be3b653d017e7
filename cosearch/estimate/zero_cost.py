"""Zero-cost proxies, each an estimator of its own: ``naswot``, ``swap``, ``meco``,
``synflow``, ``params``, ``flops``.

All use the network from ``space.build(arch, seed=...)`` and seeded standard-
normal inputs of ``space.input_shape(arch, batch)``: no dataset is read
(NASLib / the papers used real CIFAR batches). Every score is finite; a
degenerate case is mapped to the worst value and flagged in the signals.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from cosearch.estimate.torch_base import INITS, TorchEstimator, build, check_int, sub_seed
from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace


def _check_init(owner: str, init: str) -> str:
    if init not in INITS:
        raise CosearchError(f"{owner}: init={init!r} is invalid; accepted: {', '.join(INITS)}")
    return init


class _PatternEstimator(TorchEstimator):
    """Shared by NASWOT and SWAP: one train-mode forward of ``batch_size`` seeded
    random inputs through the ``init``-initialised network, read as activation
    patterns: the piece every unit of every registered piecewise activation
    (ReLU, ReLU6, Hardtanh, LeakyReLU, Hardswish, ...; ``activations``) is in.
    A network with a smooth activation (GELU, SiLU, ...) raises
    ``activations.PatternUndefined`` (one line naming it)."""

    def __init__(self, *, seed: int | None, batch_size: int, init: str) -> None:
        super().__init__(seed=seed)
        self.batch_size = check_int(self.name, "batch_size", batch_size, 2, 4096)
        self.init = _check_init(self.name, init)

    def _net_and_inputs(self, space: "SearchSpace", arch: str, stream: int):
        from cosearch.estimate import signals as S

        net = build(space, arch, self.seed, self.init).train()
        return net, S.random_inputs(space.input_shape(arch, self.batch_size), sub_seed(self.seed, stream))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batch_size": self.batch_size, "init": self.init}


class NASWOTEstimator(_PatternEstimator):
    """NASWOT (Mellor et al., ICML 2021), as NASLib's ``nwot``: one train-mode
    forward of ``batch_size`` random inputs; activation-pattern codes of every
    activation input; score ``log|det K_H|`` with ``K_H[i, j]`` = number of units
    where samples ``i`` and ``j`` are in the same piece (for ReLU ``c c^T +
    (1-c)(1-c)^T``, NASLib's kernel). Signals: ``naswot`` (the score),
    ``naswot_singular`` (1 if K_H was singular; the score is then ``-1e30``)."""

    name: ClassVar[str] = "naswot"

    def __init__(self, *, seed: int | None = 0, batch_size: int = 32, init: str = "default") -> None:
        super().__init__(seed=seed, batch_size=batch_size, init=init)

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        net, x = self._net_and_inputs(space, arch, 1)
        value, singular = S.naswot(net, x)
        return value, {"naswot": value, "naswot_singular": float(singular)}


class SwapEstimator(_PatternEstimator):
    """SWAP (Peng et al., ICLR 2024): one train-mode forward of ``batch_size``
    random inputs; for every unit of every activation its piece vector over the
    batch (on/off for ReLU); score = number of distinct such vectors
    (``signals.swap_count``), reported as its natural log (signal ``swap``).
    Without the paper's parameter-count regulariser (a learned combination can add
    ``params``)."""

    name: ClassVar[str] = "swap"

    def __init__(self, *, seed: int | None = 0, batch_size: int = 16, init: str = "default") -> None:
        super().__init__(seed=seed, batch_size=batch_size, init=init)

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        net, x = self._net_and_inputs(space, arch, 2)
        value = math.log(max(S.swap_count(S.activation_codes(net, x, concat=False)), 1))
        return value, {"swap": value}


class MeCoEstimator(TorchEstimator):
    """MeCo (Jiang et al., NeurIPS 2023): train-mode forward of ``batch_size``
    random inputs; sum over every module with a 4-D output of the minimum
    eigenvalue of the channel-by-channel Pearson correlation of a sample's
    feature map (``signals.meco``), averaged over the first ``samples`` samples.
    Signal ``meco`` (higher is better)."""

    name: ClassVar[str] = "meco"

    def __init__(self, *, seed: int | None = 0, batch_size: int = 8, samples: int = 1,
                 init: str = "default") -> None:
        super().__init__(seed=seed)
        self.batch_size = check_int(self.name, "batch_size", batch_size, 1, 4096)
        self.samples = check_int(self.name, "samples", samples, 1, self.batch_size)
        self.init = _check_init(self.name, init)

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        net = build(space, arch, self.seed, self.init)
        net.train(self.batch_size > 1)  # one sample cannot give batch statistics
        x = S.random_inputs(space.input_shape(arch, self.batch_size), sub_seed(self.seed, 3))
        value = S.meco(net, x, samples=self.samples)
        return value, {"meco": value}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batch_size": self.batch_size, "samples": self.samples, "init": self.init}


class SynflowEstimator(TorchEstimator):
    """SynFlow as NASLib's ``synflow`` (BatchNorm disabled, float64, |params|,
    one all-ones input). Signal ``synflow`` is the natural log of NASLib's sum
    (raw values reach 1e20+); a zero or non-finite sum gives ``-1e30`` and
    ``synflow_degenerate = 1``."""

    name: ClassVar[str] = "synflow"

    def __init__(self, *, seed: int | None = 0, init: str = "default") -> None:
        super().__init__(seed=seed)
        self.init = _check_init(self.name, init)

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        net = build(space, arch, self.seed, self.init)
        raw = S.synflow(net, space.input_shape(arch, 1))
        if raw > 0 and math.isfinite(raw):
            value, bad = math.log(raw), 0.0
        else:
            value, bad = -S.COND_MAX, 1.0
        return value, {"synflow": value, "synflow_degenerate": bad}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "init": self.init}


class ParamsEstimator(TorchEstimator):
    """Number of parameters, in millions (signal ``params``)."""

    name: ClassVar[str] = "params"

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        value = S.count_params(space.build(arch, seed=self.seed)) / 1e6
        return value, {"params": value}


class FlopsEstimator(TorchEstimator):
    """Conv + Linear multiply-accumulates for one input, in millions (signal
    ``flops``; named FLOPs as NASLib and NAS-Bench-201 do)."""

    name: ClassVar[str] = "flops"

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        from cosearch.estimate import signals as S

        net = space.build(arch, seed=self.seed)
        value = S.count_macs(net, space.input_shape(arch, 1)) / 1e6
        return value, {"flops": value}
