"""Training-free signals computed on any ``torch.nn.Module``.

Pure functions of (network, inputs): no spaces, no files. The estimators in
``tenas.py`` / ``zero_cost.py`` build the network and the seeded inputs, then
call these. Activation-pattern signals (linear regions, NASWOT, SWAP) see the
activation *modules* registered in ``activations`` (ReLU, ReLU6, Hardtanh,
LeakyReLU, Hardswish, ... and a plug-in's own; a functional ``F.relu`` inside
``forward`` is invisible to hooks); they raise ``activations.PatternUndefined``
(a ``CosearchError``) on a network with a smooth activation or none.

Numerics are guarded: every function returns finite floats or a documented
``inf`` plus a flag, never NaN.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from cosearch.errors import CosearchError

#: condition numbers above this (or a non-positive / non-finite lambda_min) are
#: reported as ``COND_MAX`` with ``singular=True``.
COND_MAX = 1e30


# -- inputs ----------------------------------------------------------------------
def random_inputs(shape: tuple[int, ...], seed: int | None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard-normal inputs from a private generator (the global RNG is untouched
    unless ``seed`` is None)."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return torch.randn(tuple(int(s) for s in shape), generator=gen, dtype=dtype)


def segment_inputs(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` points evenly spaced from ``a`` to ``b`` (both ends included), stacked."""
    t = torch.linspace(0.0, 1.0, int(n), dtype=a.dtype).reshape(-1, *([1] * a.dim()))
    return (1 - t) * a.unsqueeze(0) + t * b.unsqueeze(0)


def _logits(out: object) -> torch.Tensor:
    """Networks that return ``(features, logits)`` (AutoDL style) -> logits."""
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if not isinstance(out, torch.Tensor):
        raise CosearchError(f"network output must be a tensor or a tuple ending in one, got {type(out).__name__}")
    return out


@contextlib.contextmanager
def _hooks(mods: list[nn.Module], fn) -> Iterator[None]:
    handles = [m.register_forward_hook(fn) for m in mods]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# -- NTK condition number (TE-NAS trainability) ----------------------------------
@dataclass(frozen=True)
class NTKResult:
    cond: float  # lambda_max / lambda_min, COND_MAX when singular
    lam_min: float
    lam_max: float
    singular: bool


def freeze_batchnorm_to_batch_stats(net: nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the statistics of batch ``x``
    (one train-mode forward with ``momentum=None``), then switch ``net`` to eval.

    Afterwards the eval-mode forward on ``x`` computes the same values as a
    train-mode forward, but samples no longer interact through the batch
    statistics, so per-sample gradients are well defined and cheap (vmap)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        saved = [(m.momentum, m.track_running_stats) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch == that batch's stats
            m.track_running_stats = True
        counts: dict[int, int] = {}

        def pre(m, inp):
            counts[id(m)] = inp[0].numel() // inp[0].shape[1]

        handles = [m.register_forward_pre_hook(pre) for m in bns]
        net.train()
        try:
            with torch.no_grad():
                net(x)
        finally:
            for h in handles:
                h.remove()
        for m, (mom, _) in zip(bns, saved):
            m.momentum = mom
            n = counts.get(id(m), 0)
            if n > 1:  # running_var is stored unbiased; train mode normalises with the biased one
                m.running_var.mul_((n - 1) / n)
    net.eval()


def ntk_jacobian(net: nn.Module, x: torch.Tensor, *, weights_only: bool = True) -> torch.Tensor:
    """J[i] = d(sum of logits of sample i) / d(params), shape (batch, n_params).

    Per-sample gradients with ``torch.func.vmap(grad(functional_call))``; the
    network is evaluated as it is (call ``freeze_batchnorm_to_batch_stats``
    first for the TE-NAS train-mode statistics). ``weights_only`` keeps the
    parameters whose name ends in ``weight`` (TE-NAS does the same)."""
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in net.named_parameters() if p.requires_grad and (not weights_only or n.endswith("weight"))]
    if not names:
        raise CosearchError(f"{type(net).__name__} has no trainable parameters to build an NTK from")
    params = {n: p.detach() for n, p in net.named_parameters() if n in names}
    frozen = {n: p.detach() for n, p in net.named_parameters() if n not in params}
    buffers = {n: b for n, b in net.named_buffers()}

    def f(p: dict, xi: torch.Tensor) -> torch.Tensor:
        out = _logits(functional_call(net, {**p, **frozen, **buffers}, (xi.unsqueeze(0),)))
        return out.sum()

    grads = vmap(grad(f), in_dims=(None, 0))(params, x)
    return torch.cat([grads[n].reshape(x.shape[0], -1) for n in names], dim=1)


def ntk_condition(jac: torch.Tensor) -> NTKResult:
    """Condition number of the empirical NTK ``K = J J^T`` (float64 eigvalsh).

    Guards: non-finite J or eigenvalues, ``lambda_min <= 0`` or below
    ``lambda_max * n * eps64`` (numerically singular) -> ``cond = COND_MAX``,
    ``singular = True``."""
    J = jac.detach().to(torch.float64)
    n = J.shape[0]
    if not torch.isfinite(J).all():
        return NTKResult(COND_MAX, float("nan"), float("nan"), True)
    K = J @ J.T
    eig = torch.linalg.eigvalsh(K)
    lam_min, lam_max = float(eig[0]), float(eig[-1])
    tol = max(lam_max, 0.0) * n * float(np.finfo(np.float64).eps)
    if not (math.isfinite(lam_min) and math.isfinite(lam_max)) or lam_max <= 0 or lam_min <= tol:
        return NTKResult(COND_MAX, lam_min, lam_max, True)
    cond = lam_max / lam_min
    if not math.isfinite(cond) or cond > COND_MAX:
        return NTKResult(COND_MAX, lam_min, lam_max, True)
    return NTKResult(cond, lam_min, lam_max, False)


# -- activation patterns (any registered piecewise activation) ------------------------
#: ``codes`` arguments below are a ``(batch, units)`` integer array / tensor of piece
#: indices (``activations`` module; a ReLU's is 0/1) or a list of such per-module parts
#: with the same batch (what ``activation_codes(..., concat=False)`` returns).

def _parts(codes) -> list[np.ndarray]:
    items = codes if isinstance(codes, (list, tuple)) else [codes]
    out = []
    for c in items:
        a = c.detach().cpu().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)
        if a.ndim != 2:
            raise CosearchError(f"activation codes must be 2-D (batch, units), got shape {a.shape}")
        if a.shape[1]:
            out.append(np.ascontiguousarray(a.astype(np.uint8, copy=False)))
    if not out:
        raise CosearchError("activation codes hold no units")
    return out


def _row_ids(part: np.ndarray) -> np.ndarray:
    """Integer id per row, equal ids <=> equal rows."""
    if part.max(initial=0) <= 1:
        part = np.packbits(part, axis=1)
    rows = np.ascontiguousarray(part).view(np.dtype((np.void, part.shape[1]))).reshape(-1)
    return np.unique(rows, return_inverse=True)[1].reshape(-1).astype(np.int64)


class RegionCounter:
    """Distinct rows of codes fed part by part (module by module), without holding
    them all: ``ids`` is refined with each part's row ids."""

    def __init__(self) -> None:
        self.ids: np.ndarray | None = None

    def add(self, part: np.ndarray) -> None:
        if part.shape[1] == 0:
            return
        r = _row_ids(part)
        if self.ids is None:
            self.ids = r
        else:
            self.ids = np.unique(self.ids * (int(r.max()) + 1) + r, return_inverse=True)[1].reshape(-1)

    @property
    def count(self) -> int:
        if self.ids is None:
            raise CosearchError("no activation units were seen")
        return int(np.unique(self.ids).shape[0])


class KernelAccumulator:
    """``K[i, j]`` = number of units where samples ``i`` and ``j`` are in the same
    piece, summed part by part (float64; exact integers)."""

    def __init__(self) -> None:
        self.K: np.ndarray | None = None

    def add(self, part: np.ndarray) -> None:
        if part.shape[1] == 0:
            return
        dtype = torch.float32 if part.shape[1] < 2**24 else torch.float64  # exact integer sums
        K = np.zeros((part.shape[0], part.shape[0]))
        for p in np.unique(part):
            oh = torch.from_numpy(part == p).to(dtype)
            K += (oh @ oh.T).to(torch.float64).numpy()
        self.K = K if self.K is None else self.K + K


def activation_codes(net: nn.Module, x: torch.Tensor, *, concat: bool = True):
    """Piece codes of every unit of every registered piecewise activation module
    (``activations.scan``) for one forward of ``x`` in ``net``'s current mode:
    a ``(batch, units)`` uint8 array (``concat=False``: a list of per-module parts).
    ``PatternUndefined`` (a ``CosearchError``) when the net has a smooth activation
    or no piecewise one."""
    from cosearch.estimate.activations import pattern_hooks

    parts: list[np.ndarray] = []
    with pattern_hooks(net, parts.append), torch.no_grad():
        net(x)
    if not parts:
        raise CosearchError(f"{type(net).__name__}: no activation module ran in the forward pass")
    return np.concatenate(parts, axis=1) if concat else parts


def linear_regions(net: nn.Module, x: torch.Tensor) -> int:
    """Distinct activation patterns among the rows of ``x`` (one forward, streamed
    module by module so a large batch of big feature maps fits in memory)."""
    from cosearch.estimate.activations import pattern_hooks

    counter = RegionCounter()
    with pattern_hooks(net, counter.add, what="linear regions"), torch.no_grad():
        net(x)
    return counter.count


def count_linear_regions(codes) -> int:
    """Number of distinct activation patterns among the rows of ``codes`` (each
    distinct pattern is one (linear) region the inputs fall into)."""
    counter = RegionCounter()
    for part in _parts(codes):
        counter.add(part)
    return counter.count


def swap_count(codes) -> int:
    """SWAP (Peng et al., ICLR 2024, "Sample-Wise Activation Patterns"): the number of
    distinct *sample-wise* patterns, i.e. of distinct columns of ``codes`` (each
    unit's piece vector over the batch). Bounded by ``min(units, pieces**batch)``."""
    cols = np.concatenate([p.T for p in _parts(codes)], axis=0)
    cols = np.ascontiguousarray(cols)
    return int(np.unique(cols.view(np.dtype((np.void, cols.shape[1]))).reshape(-1)).shape[0])


def pattern_kernel(codes) -> np.ndarray:
    """NASWOT's ``K_H[i, j]`` = number of units where samples ``i`` and ``j`` are in
    the same piece (= units - Hamming distance of the codes); for 0/1 codes
    ``c c^T + (1-c)(1-c)^T``."""
    acc = KernelAccumulator()
    for part in _parts(codes):
        acc.add(part)
    return acc.K


def naswot_logdet_kernel(K: np.ndarray) -> tuple[float, bool]:
    """``log|det K|``; a singular kernel (duplicate codes) gives ``-inf`` mapped to
    ``-COND_MAX`` (worst) with ``singular=True``."""
    sign, logabs = np.linalg.slogdet(np.asarray(K, dtype=np.float64))
    if sign == 0 or not np.isfinite(logabs):
        return -COND_MAX, True
    return float(logabs), False


def naswot_logdet(codes) -> tuple[float, bool]:
    """NASWOT (Mellor et al. 2021): ``log|det K_H|`` of ``pattern_kernel(codes)``.
    Returns ``(value, singular)`` (see ``naswot_logdet_kernel``)."""
    return naswot_logdet_kernel(pattern_kernel(codes))


def naswot(net: nn.Module, x: torch.Tensor) -> tuple[float, bool]:
    """NASWOT of ``net`` on batch ``x``: the kernel accumulated module by module."""
    from cosearch.estimate.activations import pattern_hooks

    acc = KernelAccumulator()
    with pattern_hooks(net, acc.add, what="NASWOT kernels"), torch.no_grad():
        net(x)
    if acc.K is None:
        raise CosearchError(f"{type(net).__name__}: no activation module ran in the forward pass")
    return naswot_logdet_kernel(acc.K)


# -- MeCo ------------------------------------------------------------------------------
def meco(net: nn.Module, x: torch.Tensor, *, samples: int = 1) -> float:
    """MeCo (Jiang et al., NeurIPS 2023, "Zero-shot NAS via the minimum eigenvalue
    of Pearson correlation"): one forward of ``x`` (in whatever mode ``net`` is;
    MeCo uses train mode); for every module whose output is a 4-D tensor
    (containers included, as MeCo hooks every module), the feature map of a
    sample reshaped to (channels, positions), the Pearson correlation matrix
    between its channels (float64; NaN/inf entries from constant channels set to
    0), its minimum eigenvalue; summed over modules and averaged over the first
    ``samples`` samples of the batch."""
    import warnings

    vals: list[float] = []
    k = max(1, min(int(samples), int(x.shape[0])))

    def hook(_m, _inp, out):
        if not (isinstance(out, torch.Tensor) and out.dim() == 4):
            return
        f = out[:k].detach().to(torch.float64).reshape(k, out.shape[1], -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = torch.stack([torch.corrcoef(fi) for fi in f])
        c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
        vals.append(float(torch.linalg.eigvalsh(c)[:, 0].mean()))

    with _hooks(list(net.modules()), hook), torch.no_grad():
        net(x)
    if not vals:
        raise CosearchError(f"{type(net).__name__} has no module with a 4-D (N, C, H, W) output; MeCo needs feature maps")
    return float(sum(vals))


# -- synflow -------------------------------------------------------------------------------
def synflow(net: nn.Module, input_shape: tuple[int, ...]) -> float:
    """SynFlow (Tanaka et al. 2020) as the zero-cost proxy of Abdelfattah et al.
    2021 / NASLib (``synflow``, ``bn=False``): on a float64 copy whose BatchNorms
    are identities and whose parameters are replaced by their absolute values,
    back-propagate ``sum(net(ones))`` for a single all-ones input and return
    ``sum |w * dL/dw|`` over Conv/Linear weights. ``net`` is not modified."""
    work = copy.deepcopy(net)
    for name, mod in list(work.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(mod, cname, nn.Identity())
    work = work.double()
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
    work.zero_grad()
    ones = torch.ones((1, *tuple(input_shape)[1:]), dtype=torch.float64)
    _logits(work(ones)).sum().backward()
    total = 0.0
    for m in work.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Conv3d, nn.Linear)) and m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    return total


# -- size ----------------------------------------------------------------------------
def count_params(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def count_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of Conv and Linear layers for one sample, counted by
    forward hooks: conv ``out_elems * (in_ch / groups) * prod(kernel)``, linear
    ``out_elems * in_features``. Pools, BN, additions are not counted (as NASLib's
    ``flops``)."""
    total = [0]

    def hook(m, inp, out):
        per_sample = out[0].numel()
        if isinstance(m, nn.Linear):
            total[0] += per_sample * m.in_features
        else:
            total[0] += per_sample * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    mods = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    was_training = net.training
    net.eval()
    try:
        with _hooks(mods, hook), torch.no_grad():
            net(torch.zeros((1, *tuple(input_shape)[1:])))
    finally:
        net.train(was_training)
    return int(total[0])
