"""Shared plumbing of the estimators that build a torch network per arch:
argument validation, seed derivation, timing, and ``Estimate`` assembly."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from cosearch.errors import CosearchError
from cosearch.estimate.base import Estimate, Estimator

if TYPE_CHECKING:
    import torch

    from cosearch.space.base import SearchSpace

INITS = ("default", "kaiming")


def check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CosearchError(f"{owner}: {name}={value!r} is invalid; accepted: integer {lo}..{hi}")
    return int(value)


def check_seed(owner: str, seed: Any) -> int | None:
    if seed is None:
        return None
    return check_int(owner, "seed", seed, 0, 2**31 - 1)


def sub_seed(seed: int | None, *parts: int) -> int | None:
    """A derived seed for repeat / purpose ``parts`` (``None`` stays ``None``)."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] & 0x7FFFFFFF)


def init_network(net: "torch.nn.Module", init: str) -> "torch.nn.Module":
    """``default``: leave PyTorch's default initialisation (what ``space.build``
    gives); ``kaiming``: kaiming-normal (fan_in, relu) conv/linear weights, zero
    biases. Called under the build's seeded RNG by the estimators."""
    if init == "kaiming":
        import torch
        from torch import nn

        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
    return net


def build(space: "SearchSpace", arch: str, seed: int | None, init: str = "default") -> "torch.nn.Module":
    net = space.build(arch, seed=seed)
    if init != "default":
        import torch

        with torch.random.fork_rng(devices=[]):
            s = sub_seed(seed, 99)
            if s is not None:
                torch.manual_seed(s)
            init_network(net, init)
    return net


class TorchEstimator(Estimator):
    """Subclasses implement ``signals(space, arch) -> (score, {signal: value})`` or
    ``(score, {signal: value}, fidelity)`` when what they computed depends on the
    network (e.g. ``"zero-cost:ntk-only"``)."""

    fidelity: ClassVar[str] = "zero-cost"
    absolute: ClassVar[bool] = True

    def __init__(self, *, seed: int | None = 0) -> None:
        self.seed = check_seed(self.name, seed)

    def signals(self, space: "SearchSpace", arch: str) -> tuple[float, dict[str, float]]:
        raise NotImplementedError

    def estimate(self, space: "SearchSpace", arch: str) -> Estimate:
        import torch

        arch = space.canonical(arch)
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            out = self.signals(space, arch)
        score, sig = out[0], out[1]
        fidelity = out[2] if len(out) > 2 else self.fidelity
        return Estimate(arch=arch, score=float(score), signals={k: float(v) for k, v in sig.items()},
                        seconds=time.perf_counter() - t0, fidelity=fidelity)

    def config(self) -> dict[str, Any]:
        return {"estimator": self.name, "fidelity": self.fidelity, "seed": self.seed}
