"""The ``Estimator`` interface: architecture -> predicted-accuracy score.

Higher ``score`` means better predicted accuracy. Every estimator is seeded and
deterministic, reports per-signal values and the seconds it spent, and names
its fidelity (``"zero-cost"``, ``"table"``, later ``"train:<epochs>"``), so a
multi-fidelity search can tell estimates apart. A fidelity may carry a suffix
saying what was computed (``"zero-cost:ntk-only"`` when a network's smooth
activations leave linear regions undefined, ``"zero-cost:rank-fallback"``).

**Absolute scores.** ``absolute`` (class attribute) is True when the score of
``estimate(space, arch)`` depends on that architecture (and the estimator's
settings and seed) only, so scores of calls made at different times in one run
are comparable; an estimator that cannot give such a score for an architecture
raises instead of returning a population-relative one. ``estimate_many`` may
still rank within the population (TE-NAS ``combine="rank"``, the learned
combinations' rank fallback on spaces they were not fit on):
``population_relative(space)`` says whether it does. A joint search scoring one
architecture at a time should use ``estimate`` of an ``absolute`` estimator.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace


@dataclass(frozen=True)
class Estimate:
    arch: str
    score: float
    signals: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    fidelity: str = "zero-cost"


class Estimator(abc.ABC):
    name: ClassVar[str]
    fidelity: ClassVar[str] = "zero-cost"
    #: ``estimate()`` of one arch is comparable across calls (see the module docstring);
    #: False unless an estimator declares it (a plug-in estimator is not assumed absolute).
    absolute: ClassVar[bool] = False

    @abc.abstractmethod
    def estimate(self, space: "SearchSpace", arch: str) -> Estimate: ...

    def estimate_many(self, space: "SearchSpace", archs: Sequence[str]) -> list[Estimate]:
        """Score a population. Estimators that combine signals by rank override this."""
        return [self.estimate(space, a) for a in archs]

    def why_not_absolute(self, space: "SearchSpace") -> str | None:
        """None when ``estimate`` gives absolute scores on ``space``; otherwise the one-line
        reason ``estimate`` will refuse there (a search can check this before it starts)."""
        return None if self.absolute else f"{self.name} does not declare absolute per-architecture scores"

    def population_relative(self, space: "SearchSpace") -> bool:
        """True when ``estimate_many`` on ``space`` scores relative to the population
        (ranks) instead of returning each architecture's ``estimate`` score."""
        return False

    def applied(self, space: "SearchSpace", ests: Sequence[Estimate]) -> dict[str, Any]:
        """What was actually computed for ``ests`` on ``space`` (recorded by
        ``cosearch estimate`` in its config): fidelities seen, whether the scores
        are population-relative; subclasses add their own (e.g. fallback used)."""
        return {"fidelities": sorted({e.fidelity for e in ests}), "absolute": self.absolute,
                "population_relative": self.population_relative(space)}

    def config(self) -> dict[str, Any]:
        return {"estimator": self.name, "fidelity": self.fidelity}
