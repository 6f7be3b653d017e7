"""A MobileNetV2-style macro space.

Skeleton (MobileNetV2, Sandler et al. 2018): stem conv3x3 stride 2 with
``32*w`` channels -> 7 stages of inverted-residual blocks with MobileNetV2's
(channels, stride) schedule ``(16,1) (24,2) (32,2) (64,2) (96,1) (160,2) (320,1)``
-> conv1x1 to ``1280*w`` -> global average pool -> linear. Channel counts are
``w`` times the schedule, rounded to multiples of 8 as in MobileNetV2. BN after
every conv, ReLU6 activations (ONNX ``Clip(0, 6)``), no activation after the
projection conv, identity shortcut when a block keeps shape.

Decisions (19): a global width multiplier ``w`` in {0.35, 0.5, 0.75, 1.0}; the
first stage (16 channels) is fixed as in MobileNetV2 (expansion 1, kernel 3,
depth 1); each of the 6 other stages picks one kernel size in {3, 5, 7}, one
expansion ratio in {3, 4, 6} (shared by its blocks) and a depth: {1, 2, 3, 4}
for stages 1-5 and {1, 2} for the last (320-channel) stage. The first block of
a stage has the stage's stride, the others stride 1.

Canonical string: width then the 6 searchable stages, separated by ``-``::

    w0.5-k3e6d2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d1

Size: ``4 * (3*3*4)**5 * (3*3*2) = 4,353,564,672`` architectures.

Why the compiler matters here: kernel size, expansion and width change the
convolution shapes (kernel, channel counts, groups of the depthwise convs) and
the resolution at which they run, so different architectures give different
TVM tuning tasks; depth repeats tasks without adding new ones. Tuning cost per
architecture is therefore real, and reusing schedules across architectures pays.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cosearch.errors import CosearchError
from cosearch.space.base import Decision, SearchSpace

if TYPE_CHECKING:
    import torch

WIDTHS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0)
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 4, 6)
#: the fixed first stage: (channels, stride, kernel, expansion, depth)
FIRST_STAGE = (16, 1, 3, 1, 1)
#: searchable stages: (channels, stride)
STAGES: tuple[tuple[int, int], ...] = ((24, 2), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1))
DEPTHS: tuple[tuple[int, ...], ...] = ((1, 2, 3, 4),) * 5 + ((1, 2),)
STEM, LAST = 32, 1280

_STAGE_RE = re.compile(r"^k(\d+)e(\d+)d(\d+)$")
_WIDTH_RE = re.compile(r"^w(\d*\.?\d*)$")


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNetV2's rounding: nearest multiple of ``divisor``, at least
    ``divisor``, never more than 10 % below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _fmt_width(w: float) -> str:
    return f"w{w:g}" if w != int(w) else f"w{w:.1f}"


def _fmt_list(xs: tuple) -> str:
    return ", ".join(str(x) for x in xs)


Decisions = tuple[int, tuple[tuple[int, int, int], ...]]  # (width index, ((k, e, d) per stage))


def parse(arch: str) -> Decisions:
    """``"w0.5-k3e6d2-..."`` -> (width index, ((kernel, expansion, depth), ...))."""
    if not isinstance(arch, str):
        raise CosearchError(f"mbv2 arch must be a string, got {type(arch).__name__}")
    parts = "".join(arch.split()).lower().split("-")
    example = "w0.5-k3e6d2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d1"
    if len(parts) != 1 + len(STAGES):
        raise CosearchError(
            f"mbv2 arch must be a width and {len(STAGES)} stages separated by '-' (like {example}), "
            f"got {len(parts)} part(s) in {arch!r}"
        )
    m = _WIDTH_RE.match(parts[0])
    wi = None
    if m and m.group(1) not in ("", "."):
        w = float(m.group(1))
        wi = next((i for i, c in enumerate(WIDTHS) if abs(c - w) < 1e-9), None)
    if wi is None:
        raise CosearchError(
            f"mbv2 width: bad value {parts[0]!r}; accepted: {', '.join(_fmt_width(w) for w in WIDTHS)}"
        )
    stages = []
    for s, (part, (ch, stride), depths) in enumerate(zip(parts[1:], STAGES, DEPTHS), start=1):
        where = f"mbv2 stage {s} ({ch} ch, stride {stride})"
        m = _STAGE_RE.match(part)
        if not m:
            raise CosearchError(f"{where}: malformed {part!r}; expected k<kernel>e<expansion>d<depth> like k3e6d2")
        k, e, d = (int(g) for g in m.groups())
        for label, v, accepted in (("kernel", k, KERNELS), ("expansion", e, EXPANSIONS), ("depth", d, depths)):
            if v not in accepted:
                raise CosearchError(f"{where}: {label} {v} not accepted; accepted: {_fmt_list(accepted)}")
        stages.append((k, e, d))
    return wi, tuple(stages)


def format_decisions(dec: Decisions) -> str:
    wi, stages = dec
    return "-".join([_fmt_width(WIDTHS[wi])] + [f"k{k}e{e}d{d}" for k, e, d in stages])


def _other(rng: np.random.Generator, choices: tuple, current: Any) -> Any:
    j = int(rng.integers(len(choices) - 1))
    i = choices.index(current)
    return choices[j + 1 if j >= i else j]


class MBV2Space(SearchSpace):
    """MobileNetV2-style space: width x per-stage (kernel, expansion, depth).

    Strings look like ``w0.5-k3e6d2-k5e4d3-k7e6d4-k3e3d3-k5e6d3-k7e4d1``: width
    in {0.35, 0.5, 0.75, 1.0}, then for the stages of 24, 32, 64, 96, 160, 320
    channels ``k{3,5,7}e{3,4,6}d{depth}`` with depth in 1..4 (1..2 for the last).
    Settings: ``resolution`` (32..512, multiple of 32, default 64),
    ``num_classes`` (1..100000, default 10). ``size()`` = 4,353,564,672.
    """

    name: ClassVar[str] = "mbv2"
    WIDTHS: ClassVar[tuple[float, ...]] = WIDTHS
    KERNELS: ClassVar[tuple[int, ...]] = KERNELS
    EXPANSIONS: ClassVar[tuple[int, ...]] = EXPANSIONS
    STAGES: ClassVar[tuple[tuple[int, int], ...]] = STAGES
    DEPTHS: ClassVar[tuple[tuple[int, ...], ...]] = DEPTHS

    def __init__(self, *, resolution: int = 64, num_classes: int = 10) -> None:
        def bad(name: str, v: Any, accepted: str) -> CosearchError:
            return CosearchError(f"mbv2 settings out of range: {name}={v!r}; accepted: {accepted}")

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(resolution) or not 32 <= resolution <= 512 or resolution % 32:
            raise bad("resolution", resolution, "an integer 32..512, multiple of 32")
        if not is_int(num_classes) or not 1 <= num_classes <= 100000:
            raise bad("num_classes", num_classes, "an integer 1..100000")
        self.resolution = int(resolution)
        self.num_classes = int(num_classes)

    # -- strings --------------------------------------------------------------
    def canonical(self, arch: str) -> str:
        return format_decisions(parse(arch))

    # -- decisions ----------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        """``w`` (the width), then per searchable stage ``i`` = 1..6 ``s<i>_k`` (kernel),
        ``s<i>_e`` (expansion) and ``s<i>_d`` (depth)."""
        out = [Decision("w", WIDTHS)]
        for i, depths in enumerate(DEPTHS, start=1):
            out += [Decision(f"s{i}_k", KERNELS), Decision(f"s{i}_e", EXPANSIONS), Decision(f"s{i}_d", depths)]
        return tuple(out)

    def from_decisions(self, values: Mapping[str, Any]) -> str:
        w, *kde = self._chosen(values)
        stages = tuple(tuple(kde[i:i + 3]) for i in range(0, len(kde), 3))
        return format_decisions((WIDTHS.index(w), stages))  # type: ignore[arg-type]

    def to_decisions(self, arch: str) -> dict[str, Any]:
        wi, stages = parse(arch)
        out: dict[str, Any] = {"w": WIDTHS[wi]}
        for i, (k, e, d) in enumerate(stages, start=1):
            out |= {f"s{i}_k": k, f"s{i}_e": e, f"s{i}_d": d}
        return out

    def blocks(self, arch: str) -> dict[str, Any]:
        """Resolved network: stem/last channels and every block as
        ``(c_in, c_out, kernel, expansion, stride)`` (the first stage included)."""
        wi, stages = parse(arch)
        w = WIDTHS[wi]
        stem = make_divisible(STEM * w)
        c_first, s_first, k_first, e_first, d_first = FIRST_STAGE
        plan = [(make_divisible(c_first * w), s_first, k_first, e_first, d_first)]
        plan += [(make_divisible(c * w), s, k, e, d) for (c, s), (k, e, d) in zip(STAGES, stages)]
        blocks, c_in = [], stem
        for c_out, stride, k, e, d in plan:
            for i in range(d):
                blocks.append((c_in, c_out, k, e, stride if i == 0 else 1))
                c_in = c_out
        return {"width": w, "stem": stem, "blocks": blocks, "last": make_divisible(LAST * w)}

    # -- search moves -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> str:
        wi = int(rng.integers(len(WIDTHS)))
        stages = tuple(
            (KERNELS[int(rng.integers(3))], EXPANSIONS[int(rng.integers(3))], depths[int(rng.integers(len(depths)))])
            for depths in DEPTHS
        )
        return format_decisions((wi, stages))

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        """Change one of the 19 decisions (width, or a stage's k / e / d) to another value."""
        wi, stages = parse(arch)
        which = int(rng.integers(1 + 3 * len(STAGES)))
        if which == 0:
            wi = _other(rng, tuple(range(len(WIDTHS))), wi)
        else:
            s, field = divmod(which - 1, 3)
            kde = list(stages[s])
            kde[field] = _other(rng, (KERNELS, EXPANSIONS, DEPTHS[s])[field], kde[field])
            stages = stages[:s] + (tuple(kde),) + stages[s + 1:]
        return format_decisions((wi, stages))  # type: ignore[arg-type]

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        """Width from either parent, each stage's (k, e, d) from either parent."""
        (wa, sa), (wb, sb) = parse(a), parse(b)
        take_a = rng.random(1 + len(STAGES)) < 0.5
        return format_decisions((wa if take_a[0] else wb, tuple(x if t else y for x, y, t in zip(sa, sb, take_a[1:]))))

    # -- numbers ------------------------------------------------------------------
    @property
    def encoding_size(self) -> int:
        return 1 + 3 * len(STAGES)

    def encode(self, arch: str) -> np.ndarray:
        """19 floats in [0, 1]: width index / 3, then per stage kernel, expansion and
        depth as choice index / (number of choices - 1)."""
        wi, stages = parse(arch)
        code = [wi / (len(WIDTHS) - 1)]
        for (k, e, d), depths in zip(stages, DEPTHS):
            code += [KERNELS.index(k) / 2, EXPANSIONS.index(e) / 2, depths.index(d) / (len(depths) - 1)]
        return np.asarray(code, dtype=np.float32)

    # -- networks -----------------------------------------------------------------
    def build(self, arch: str, *, seed: int | None = 0) -> "torch.nn.Module":
        plan = self.blocks(arch)
        from cosearch.space import ops as blocks  # torch

        with blocks.seeded_torch(seed):
            return blocks.MBV2Net(plan["stem"], plan["blocks"], plan["last"], self.num_classes)

    def input_shape(self, arch: str, batch: int = 1) -> tuple[int, ...]:
        parse(arch)
        return (int(batch), 3, self.resolution, self.resolution)

    def size(self) -> int:
        n = len(WIDTHS)
        for depths in DEPTHS:
            n *= len(KERNELS) * len(EXPANSIONS) * len(depths)
        return n

    def config(self) -> dict[str, Any]:
        return {"space": self.name, "resolution": self.resolution, "num_classes": self.num_classes}
