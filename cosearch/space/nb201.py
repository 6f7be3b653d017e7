"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG on 4 nodes; each of the 6 edges ``i -> j`` (``i < j``) carries
one of 5 ops, so there are ``5**6 = 15,625`` cells. Strings are written exactly
as the benchmark writes them, node by node, each incoming edge as ``op~source``::

    |nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|
     node 1            node 2                  node 3 (cell output)

Edge positions (1-based, used in error messages and in ``encode``):
``1: 0->1, 2: 0->2, 3: 1->2, 4: 0->3, 5: 1->3, 6: 2->3``.

The network is the benchmark's ``TinyNetwork`` skeleton (AutoDL-Projects
``xautodl/models/cell_infers/tiny_network.py``): stem conv3x3(3->C)+BN; three
stages of ``N`` cells with C, 2C, 4C channels, separated by a ResNet basic
block of stride 2 (ReLU-conv3x3-BN twice, shortcut avgpool2x2 + conv1x1);
``lastact`` BN+ReLU; global average pool; linear classifier. With the default
``C=16, N=5, num_classes=10`` parameter counts equal NAS-Bench-201's CIFAR-10
numbers (checked in ``tests/test_space_nb201.py`` on 725 cells).

``key`` is isomorphism-aware: it is the cell's output written as a symbolic
expression of the input ``x`` (see ``cell_expression``), so cells that compute
the same function share a key.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cosearch.errors import CosearchError
from cosearch.space.base import Decision, SearchSpace

if TYPE_CHECKING:
    import torch

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
#: edges in string order: (source, target)
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for j in range(1, NUM_NODES) for i in range(j))
_EDGE_POS = {e: p for p, e in enumerate(EDGES)}
_EDGE_RE = re.compile(r"^([A-Za-z0-9_]+)~(-?\d+)$")


def rng_choice_other(rng: np.random.Generator, n: int, current: int) -> int:
    """A uniformly drawn index in ``range(n)`` other than ``current`` (n >= 2)."""
    j = int(rng.integers(n - 1))
    return j + 1 if j >= current else j


def _edge_name(pos: int) -> str:
    i, j = EDGES[pos]
    return f"edge {i}->{j} (position {pos + 1})"


def parse_ops(arch: str) -> tuple[str, ...]:
    """Parse a benchmark string into the 6 edge ops in ``EDGES`` order.

    Whitespace is ignored; within a node the edges may come in any order but
    each source ``0..j-1`` must appear exactly once.
    """
    if not isinstance(arch, str):
        raise CosearchError(f"nb201 arch must be a string, got {type(arch).__name__}")
    text = "".join(arch.split())
    groups = text.split("+")
    if len(groups) != NUM_NODES - 1:
        raise CosearchError(
            f"nb201 arch must have {NUM_NODES - 1} nodes separated by '+' "
            f"(like |op~0|+|op~0|op~1|+|op~0|op~1|op~2|), got {len(groups)} in {arch!r}"
        )
    ops: list[str | None] = [None] * len(EDGES)
    for j, group in enumerate(groups, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise CosearchError(f"nb201 node {j} must be written as |op~i|...| , got {group!r} in {arch!r}")
        items = group[1:-1].split("|")
        if len(items) != j:
            raise CosearchError(
                f"nb201 node {j} must have {j} incoming edge(s) (from nodes 0..{j - 1}), "
                f"got {len(items)}: {group!r}"
            )
        for item in items:
            m = _EDGE_RE.match(item)
            if not m:
                raise CosearchError(f"nb201 node {j}: malformed edge {item!r}; expected op~source like nor_conv_3x3~0")
            op, src = m.group(1), int(m.group(2))
            if not 0 <= src < j:
                raise CosearchError(
                    f"nb201 node {j}: edge {item!r} has source {src}; valid sources are 0..{j - 1}"
                )
            pos = _EDGE_POS[(src, j)]
            if ops[pos] is not None:
                raise CosearchError(f"nb201 {_edge_name(pos)}: given twice in node {j} ({group!r})")
            if op not in OPS:
                raise CosearchError(f"nb201 {_edge_name(pos)}: unknown op {op!r}; valid ops: {', '.join(OPS)}")
            ops[pos] = op
    return tuple(ops)  # type: ignore[arg-type]


def format_ops(ops: tuple[str, ...] | list[str]) -> str:
    nodes = []
    for j in range(1, NUM_NODES):
        nodes.append("|" + "|".join(f"{ops[_EDGE_POS[(i, j)]]}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)


def cell_expression(ops: tuple[str, ...], *, linear_pool: bool = True) -> tuple[str, ...]:
    """The cell output as a sorted tuple of summands (``()`` = all zeros).

    Rules: node 0 is ``x``; ``none`` contributes nothing; ``skip_connect``
    passes its source's summands through (sums are flattened); ``nor_conv_kxk``
    of a non-zero source is the term ``convk(<source>)``; an op on a zero source
    is zero (exact for the pool; for ReLU-conv-BN it holds while BN's shift is
    zero, e.g. at initialisation - the benchmark makes the same assumption);
    ``avg_pool_3x3`` is linear, so with ``linear_pool`` it distributes over
    sums. A node is the sorted multiset of its incoming summands, so swapping
    interchangeable intermediate nodes, dead edges and dead nodes do not change
    the expression.
    """
    short = {"nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "p"}
    nodes: list[tuple[str, ...]] = [("x",)]
    for j in range(1, NUM_NODES):
        terms: list[str] = []
        for i in range(j):
            op, src = ops[_EDGE_POS[(i, j)]], nodes[i]
            if op == "none" or not src:
                continue
            if op == "skip_connect":
                terms.extend(src)
            elif op == "avg_pool_3x3" and linear_pool:
                terms.extend(f"p({t})" for t in src)
            else:
                terms.append(f"{short[op]}({'+'.join(src)})")
        nodes.append(tuple(sorted(terms)))
    return nodes[-1]


def benchmark_unique_str(ops: tuple[str, ...]) -> str:
    """NAS-Bench-201's own isomorphism hash, ``CellStructure.to_unique_str(consider_zero=True)``
    (AutoDL-Projects), reproduced for comparison: it gives the paper's 6,466 classes.
    It keeps zero summands (``'#'``) and does not flatten nested sums, so it splits
    some classes that compute the same function; ``NB201Space.key`` does not."""
    nodes = {0: "0"}
    for j in range(1, NUM_NODES):
        cur = []
        for i in range(j):
            op = ops[_EDGE_POS[(i, j)]]
            if op == "none" or nodes[i] == "#":
                cur.append("#")
            elif op == "skip_connect":
                cur.append(nodes[i])
            else:
                cur.append(f"({nodes[i]})@{op}")
        nodes[j] = "+".join(sorted(cur))
    return nodes[NUM_NODES - 1]


class NB201Space(SearchSpace):
    """NAS-Bench-201: 6 edges x 5 ops on the ``TinyNetwork`` skeleton.

    Settings: ``C`` (stem channels, 1..256, default 16), ``N`` (cells per stage,
    1..20, default 5), ``num_classes`` (1..100000, default 10), ``resolution``
    (input side, 8..1024 and a multiple of 4, default 32).
    """

    name: ClassVar[str] = "nb201"
    OPS: ClassVar[tuple[str, ...]] = OPS
    EDGES: ClassVar[tuple[tuple[int, int], ...]] = EDGES

    def __init__(self, *, C: int = 16, N: int = 5, num_classes: int = 10, resolution: int = 32) -> None:
        def check(name: str, v: Any, lo: int, hi: int, extra: str = "") -> int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise CosearchError(f"nb201 settings out of range: {name}={v!r}; accepted: integer {lo}..{hi}{extra}")
            return int(v)

        self.C = check("C", C, 1, 256)
        self.N = check("N", N, 1, 20)
        self.num_classes = check("num_classes", num_classes, 1, 100000)
        self.resolution = check("resolution", resolution, 8, 1024, ", multiple of 4")
        if self.resolution % 4:
            raise CosearchError(
                f"nb201 settings out of range: resolution={resolution!r}; accepted: integer 8..1024, multiple of 4"
            )

    # -- strings --------------------------------------------------------------
    def canonical(self, arch: str) -> str:
        return format_ops(parse_ops(arch))

    def ops(self, arch: str) -> tuple[str, ...]:
        """The 6 edge ops in ``EDGES`` order."""
        return parse_ops(arch)

    def key(self, arch: str) -> str:
        expr = cell_expression(parse_ops(arch))
        return "+".join(expr) if expr else "zero"

    # -- decisions ----------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        """``e1..e6``: the op of each edge, in ``EDGES`` order, over ``OPS``."""
        return tuple(Decision(f"e{pos + 1}", OPS) for pos in range(len(EDGES)))

    def from_decisions(self, values: Mapping[str, Any]) -> str:
        return format_ops(self._chosen(values))

    def to_decisions(self, arch: str) -> dict[str, Any]:
        return {f"e{pos + 1}": op for pos, op in enumerate(parse_ops(arch))}

    def all_archs(self) -> list[str]:
        """All 15,625 canonical strings (in op-index order)."""
        return [format_ops(ops) for ops in itertools.product(OPS, repeat=len(EDGES))]

    # -- search moves -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> str:
        return format_ops([OPS[int(k)] for k in rng.integers(len(OPS), size=len(EDGES))])

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        ops = list(parse_ops(arch))
        pos = int(rng.integers(len(EDGES)))
        ops[pos] = OPS[rng_choice_other(rng, len(OPS), OPS.index(ops[pos]))]
        return format_ops(ops)

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        oa, ob = parse_ops(a), parse_ops(b)
        take_a = rng.random(len(EDGES)) < 0.5
        return format_ops([x if t else y for x, y, t in zip(oa, ob, take_a)])

    # -- numbers ------------------------------------------------------------------
    @property
    def encoding_size(self) -> int:
        return len(EDGES) * len(OPS)

    def encode(self, arch: str) -> np.ndarray:
        """One-hot per edge, edges in position order, ops in ``OPS`` order (30 floats)."""
        code = np.zeros((len(EDGES), len(OPS)), dtype=np.float32)
        for pos, op in enumerate(parse_ops(arch)):
            code[pos, OPS.index(op)] = 1.0
        return code.reshape(-1)

    # -- networks -----------------------------------------------------------------
    def build(self, arch: str, *, seed: int | None = 0) -> "torch.nn.Module":
        ops = parse_ops(arch)
        from cosearch.space import ops as blocks  # torch

        with blocks.seeded_torch(seed):
            return blocks.TinyNetwork(self.C, self.N, ops, EDGES, self.num_classes)

    def input_shape(self, arch: str, batch: int = 1) -> tuple[int, ...]:
        parse_ops(arch)
        return (int(batch), 3, self.resolution, self.resolution)

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def config(self) -> dict[str, Any]:
        return {"space": self.name, "C": self.C, "N": self.N, "num_classes": self.num_classes,
                "resolution": self.resolution}
