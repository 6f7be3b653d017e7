"""The ``SearchSpace`` interface.

Architectures travel as canonical *strings* (persistable, diffable, usable as
keys in append-only logs). A space turns a string into a torch module, a
numeric encoding for predictors, and neighbours for search strategies.
Spaces are registered by name in ``cosearch.space.SPACES``; settings (channels,
depth, resolution, classes) are constructor keyword arguments.

A space may also describe itself as a list of categorical *decisions*
(``decisions()``, ``from_decisions``, ``to_decisions``): that is what a proposer
searches over, so the search never needs to know which space it runs on.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from cosearch.errors import CosearchError

if TYPE_CHECKING:  # torch is imported only where a module is built
    import torch


@dataclass(frozen=True)
class Decision:
    """One categorical decision of a space: its name and its choices, in a fixed order."""

    name: str
    choices: tuple[Any, ...]


class SearchSpace(abc.ABC):
    """A set of architectures with a string form.

    Contract (checked for every registered space by ``tests/test_space_conformance.py``):
    - ``canonical(s)`` raises ``CosearchError`` on a malformed / out-of-space string
      and is idempotent: ``canonical(canonical(s)) == canonical(s)``;
    - ``sample``/``mutate``/``crossover`` return canonical strings and are
      deterministic given the ``np.random.Generator`` they receive;
    - ``encode`` returns a 1-D float array of length ``encoding_size`` for every arch;
    - ``key`` is equal for architectures that compute the same function
      (isomorphic cells); by default it is the canonical string;
    - ``build`` returns a randomly initialised ``torch.nn.Module`` taking an input
      of ``input_shape(arch, batch)``;
    - if ``decisions()`` is not empty: every combination of one choice per decision
      is an architecture, ``from_decisions(to_decisions(a)) == canonical(a)``, and
      ``size()`` is the product of the numbers of choices.
    """

    name: ClassVar[str]

    # -- strings --------------------------------------------------------------
    @abc.abstractmethod
    def canonical(self, arch: str) -> str:
        """Validate ``arch`` and return its canonical string."""

    def key(self, arch: str) -> str:
        """Isomorphism-aware identity; equal keys => same function, evaluate once."""
        return self.canonical(arch)

    # -- search moves ---------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> str: ...

    @abc.abstractmethod
    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        """A neighbour of ``arch`` differing in one decision (never ``arch`` itself)."""

    @abc.abstractmethod
    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str: ...

    # -- decisions ---------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        """The space as categorical decisions (names and choices, in a fixed order), what a
        proposer searches over (``cosearch.search.proposer``). ``()``, the default: the
        space offers no such description, and proposers draw architectures with ``sample``."""
        return ()

    def from_decisions(self, values: Mapping[str, Any]) -> str:
        """The canonical arch taking ``values[d.name]`` for each ``d`` of ``decisions()``;
        ``CosearchError`` for a missing decision or a value that is not one of its choices."""
        raise CosearchError(f"space {self.name!r} does not describe itself as decisions")

    def to_decisions(self, arch: str) -> dict[str, Any]:
        """The choice of every decision in ``arch`` (the inverse of ``from_decisions``)."""
        raise CosearchError(f"space {self.name!r} does not describe itself as decisions")

    def _chosen(self, values: Mapping[str, Any]) -> list[Any]:
        """``values`` checked against ``decisions()``, in decision order."""
        out = []
        for d in self.decisions():
            if d.name not in values:
                raise CosearchError(f"{self.name} decision {d.name!r} is missing; got {', '.join(map(str, values))}")
            v = values[d.name]
            if v not in d.choices:
                raise CosearchError(f"{self.name} decision {d.name!r}: {v!r} is not one of its choices "
                                    f"({', '.join(map(str, d.choices))})")
            out.append(d.choices[d.choices.index(v)])
        return out

    # -- numbers for predictors -----------------------------------------------
    @property
    @abc.abstractmethod
    def encoding_size(self) -> int: ...

    @abc.abstractmethod
    def encode(self, arch: str) -> np.ndarray: ...

    # -- networks ---------------------------------------------------------------
    @abc.abstractmethod
    def build(self, arch: str, *, seed: int | None = 0) -> "torch.nn.Module":
        """A randomly initialised module (eval mode is the caller's choice)."""

    @abc.abstractmethod
    def input_shape(self, arch: str, batch: int = 1) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def size(self) -> int | None:
        """Number of distinct architectures (``None`` if unbounded)."""

    def config(self) -> dict[str, Any]:
        """Resolved settings, written next to results."""
        return {"space": self.name}
