"""Search strategies as registered plug-ins: the ``Strategy`` interface, the ``STRATEGIES``
registry (``joint``, ``sequential``, ``brute``, one module each, imported when first used),
and what they share: ``proposals`` (ask the proposer until a limit) and ``Screening`` (the
propose -> plan -> accuracy -> tell sequence, written once).

A strategy drives a ``cosearch.search.loop.Search`` (the run's state and its stages) to its
budget and returns why it stopped (``"budget"``, ``"max_archs"``, ``"exhausted"``). To add
one: a module with a ``Strategy`` subclass, registered here by ``"module:Class"``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from cosearch.registry import Registry


class Strategy:
    """One way to spend the budget. ``search`` is the run (``loop.Search``)."""

    name = ""

    def __init__(self, search: Any) -> None:
        self.search = search

    def run(self) -> str:
        """Search until a limit; the reason it stopped."""
        raise NotImplementedError

    def replay_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], None]]:
        """Journal events this strategy rebuilds state from, beyond the generic ones:
        ``{event: fn(event, rec or None)}``, each run after the generic handler."""
        return {}


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
STRATEGIES.register("joint", "cosearch.search.strategies.joint:Joint")
STRATEGIES.register("sequential", "cosearch.search.strategies.sequential:Sequential")
STRATEGIES.register("brute", "cosearch.search.strategies.brute:Brute")


def proposals(search: Any, *, until: float | None = None) -> Iterator[tuple[Any, Any]]:
    """New archs from the proposer, ``(rec, handle)``, until ``search.limit(until)`` or the
    proposer runs out; the generator's return value is the reason it ended."""
    while True:
        reason = search.limit(until)
        if reason is not None:
            return reason
        got = search.propose()
        if got is None:
            return "exhausted"
        yield got


class Screening:
    """The cheap rungs of each proposed arch, in order: plan, then ``gate`` (optional: False
    when it stopped the arch, having told it), then the accuracy estimator. Yields
    ``(rec, handle, ok)`` for every arch of ``source``; an arch whose plan or accuracy failed
    is told ``None`` (``ok`` False). ``reason``: why ``source`` ended (None while it has not)."""

    def __init__(self, search: Any, source: Iterable[tuple[Any, Any]],
                 gate: Callable[[Any, Any], bool] | None = None) -> None:
        self.search = search
        self.source = source
        self.gate = gate
        self.reason: str | None = None

    def __iter__(self) -> Iterator[tuple[Any, Any, bool]]:
        s = self.search
        self.reason = yield from self._screened(s)

    def _screened(self, s: Any):
        """Archs are taken from ``source`` up to ``s.cfg.lookahead`` ahead of the one screened
        (queued on the search, ``s.ahead``, so a batch that ends early leaves them to the next
        screening); each is screened in the order proposed. When the source ends on the clock
        (``"budget"``) the queued archs are left; otherwise they are screened first."""
        source = iter(self.source)
        ended, reason = False, None
        while True:
            while not ended and len(s.ahead) < s.cfg.lookahead:
                try:
                    s.ahead.append(s.screen_ahead(*next(source)))
                except StopIteration as stop:
                    ended, reason = True, stop.value
            if not s.ahead or (ended and reason == "budget"):
                return reason
            rec, handle, pending = s.ahead.popleft()
            pre = s.screened(pending)
            if not s.do_plan(rec, pre):
                s.tell(handle, rec, None)
                yield rec, handle, False
                continue
            if self.gate is not None and not self.gate(rec, handle):
                yield rec, handle, False
                continue
            if not s.do_accuracy(rec, pre):
                s.tell(handle, rec, None)
                yield rec, handle, False
                continue
            yield rec, handle, True
