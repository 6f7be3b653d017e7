"""Seeded short training of one architecture, with learning-curve early stopping.

``train_arch(space, arch, data, config, stop_threshold=..., predictor=...)`` trains
a freshly built (seeded) network on ``data``'s train split for ``config.epochs``
epochs, measures validation accuracy after every epoch (the learning curve) and,
after each epoch but the last, asks ``predictor.should_stop(curve, threshold)``
whether the run can still reach ``stop_threshold`` (the validation accuracy the
architecture needs to enter the current front, given by the caller). A run that
finishes all epochs is added to the predictor's samples (``learn=True``), so the
learning-curve model is trained online across architectures.

Determinism: the network's weights come from ``space.build(arch, seed=seed)``,
mini-batch order from a ``torch.Generator`` seeded with ``seed``; with the same
thread count, the same config gives the same curve.

Defaults (``TrainConfig``) are for 2 CPU cores: SGD with Nesterov momentum 0.9,
lr 0.05, weight decay 5e-4, cosine schedule over ``epochs``, batch 64, 5 epochs,
**one torch thread**: on 2 cores shared with TVM tuning, 2 threads made a training
step of NB201 (C=8, batch 64, 3x32x32) 10x slower than 1 thread (4-12 s vs
0.5-0.8 s; oversubscribed OpenMP threads spin). Set ``threads=None`` on an idle machine.
On the embedded digits (1259 training images at 3x32x32) one NB201 network with
C=8 then takes about 11 s per epoch on those loaded cores.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cosearch.errors import CosearchError

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace
    from cosearch.train.data import Data
    from cosearch.train.predictor import LearningCurvePredictor

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adam | adamw
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | constant
    seed: int = 0
    threads: int | None = 1  # torch intra-op threads (None: leave torch's setting); see the module docstring
    eval_batch: int = 256

    def __post_init__(self) -> None:
        def bad(name: str, v: Any, accepted: str) -> CosearchError:
            return CosearchError(f"training setting {name}={v!r} is invalid; accepted: {accepted}")

        for name in ("epochs", "batch_size", "eval_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, v, "an integer >= 1")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, v, "a finite number >= 0")
        if self.lr <= 0:
            raise bad("lr", self.lr, "a number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        if self.schedule not in ("cosine", "constant"):
            raise bad("schedule", self.schedule, "cosine, constant")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise bad("threads", self.threads, "an integer >= 1 or None")

    @property
    def fidelity(self) -> str:
        return f"train:{self.epochs}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    accuracy_val: float  # validation accuracy after the last epoch run
    curve: list[float]  # validation accuracy after each epoch run
    epochs_run: int
    stopped_early: bool
    predicted_final: float | None  # the predictor's last estimate of the final accuracy (None: no prediction)
    seconds: float
    state_dict: dict[str, Any] = field(repr=False, compare=False)
    epochs: int = 0  # epochs asked for
    decisions: list[dict[str, Any]] = field(default_factory=list)  # per epoch: predicted, margin, rule, stop
    train_seconds: list[float] = field(default_factory=list)  # seconds per epoch (train + eval)

    @property
    def fidelity(self) -> str:
        return f"train:{self.epochs}" if not self.stopped_early else f"train:{self.epochs}:stopped-at-{self.epochs_run}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready (no weights): for journals and reports."""
        return {"accuracy_val": self.accuracy_val, "curve": list(self.curve), "epochs_run": self.epochs_run,
                "epochs": self.epochs, "stopped_early": self.stopped_early, "predicted_final": self.predicted_final,
                "seconds": round(self.seconds, 3), "decisions": list(self.decisions), "fidelity": self.fidelity}


def accuracy(model, x, y, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode, no grad) on tensors ``x``, ``y``."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def _optimizer(params, cfg: TrainConfig):
    import torch

    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def check_fits(space: "SearchSpace", arch: str, data: "Data") -> None:
    """The network takes ``data``'s images and has an output per class, or CosearchError."""
    shape = tuple(int(s) for s in space.input_shape(arch, 1))[1:]
    if tuple(data.input_shape) != shape:
        raise CosearchError(f"dataset {data.name!r} was prepared for input {tuple(data.input_shape)} but "
                            f"{space.name}:{arch} takes {shape}; prepare it with the architecture's input shape")
    n_out = getattr(space, "num_classes", None)
    if n_out is not None and data.num_classes != int(n_out):
        raise CosearchError(f"dataset {data.name!r} has {data.num_classes} classes but the {space.name} network has "
                            f"{n_out} outputs; accepted: a space with num_classes={data.num_classes}")


def train_arch(space: "SearchSpace", arch: str, data: "Data", config: TrainConfig | None = None, *,
               stop_threshold: float | None = None, predictor: "LearningCurvePredictor | None" = None,
               signals: dict[str, float] | None = None, learn: bool = True, model=None) -> TrainResult:
    """Train ``arch`` on ``data`` (see the module docstring). ``signals``: cheap per-architecture
    numbers (e.g. zero-cost scores) the predictor may use; ``model``: a module to train
    instead of ``space.build(arch, seed=config.seed)``."""
    import torch
    import torch.nn.functional as F

    cfg = config or TrainConfig()
    check_fits(space, arch, data)
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        net = model if model is not None else space.build(arch, seed=cfg.seed)
        opt = _optimizer(net.parameters(), cfg)
        steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
                 if cfg.schedule == "cosine" else None)
        gen = torch.Generator().manual_seed(cfg.seed)
        curve: list[float] = []
        decisions: list[dict[str, Any]] = []
        per_epoch: list[float] = []
        stopped = False
        predicted: float | None = None
        for epoch in range(cfg.epochs):
            te = time.perf_counter()
            net.train()
            order = torch.randperm(len(data.x_train), generator=gen)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                if len(idx) < 2 and len(order) > 1:  # a batch of 1 breaks batch norm in train mode
                    continue
                loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
            if not math.isfinite(loss.item()):
                curve.append(accuracy(net, data.x_val, data.y_val, cfg.eval_batch))
                per_epoch.append(time.perf_counter() - te)
                decisions.append({"epoch": epoch + 1, "rule": "diverged", "stop": True})
                stopped = epoch + 1 < cfg.epochs
                break
            curve.append(accuracy(net, data.x_val, data.y_val, cfg.eval_batch))
            per_epoch.append(time.perf_counter() - te)
            if epoch + 1 < cfg.epochs and predictor is not None:
                d = predictor.decide(curve, cfg.epochs, stop_threshold, signals=signals)
                decisions.append({"epoch": epoch + 1, **d.to_dict()})
                if d.predicted is not None:
                    predicted = d.predicted
                if d.stop:
                    stopped = True
                    break
        net.eval()
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    finally:
        if cfg.threads is not None:
            torch.set_num_threads(old_threads)
    result = TrainResult(
        accuracy_val=curve[-1], curve=curve, epochs_run=len(curve), stopped_early=stopped,
        predicted_final=predicted, seconds=time.perf_counter() - t0, state_dict=state, epochs=cfg.epochs,
        decisions=decisions, train_seconds=[round(s, 3) for s in per_epoch])
    if predictor is not None and learn and not stopped and len(curve) == cfg.epochs:
        predictor.observe(arch, curve, cfg.epochs, signals=signals)
    return result


def build_trained(space: "SearchSpace", arch: str, result: TrainResult, seed: int = 0):
    """The trained network (eval mode) from ``result.state_dict``."""
    net = space.build(arch, seed=seed)
    net.load_state_dict(result.state_dict)
    return net.eval()


__all__ = ["OPTIMIZERS", "TrainConfig", "TrainResult", "accuracy", "build_trained", "check_fits", "train_arch"]
