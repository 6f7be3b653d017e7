"""Architecture proposals: Optuna 5's ``NSGAIISampler`` through ask/tell.

The trial parameters are the space's decisions (``SearchSpace.decisions()``, named
and ordered by the space; NB201: 6 categorical edges ``e1..e6`` over the 5 ops;
MBV2: width ``w`` and per stage ``s<i>_k``, ``s<i>_e``, ``s<i>_d``), and an asked
trial becomes an architecture through ``space.from_decisions``. Optuna only
*proposes*: the search's journal is the source of truth, because a latency told to
Optuna is a snapshot (tuning keeps improving every architecture's latency
afterwards, and a trial cannot be re-told). On resume the study is rebuilt by
``replay`` (``study.add_trial`` of each told trial in journal order, with its
NSGA-II generation) and the sampler is re-seeded with ``seed + number of replayed
trials``: no completed evaluation is repeated, though the proposals after a resume
are not bit-identical to an uninterrupted run.

With a finite ``pool`` (a ``table:`` estimator), an asked point is projected onto
the nearest not-yet-seen pool architecture (L1 distance of ``space.encode``,
ties broken by a seeded generator); the trial keeps its asked parameters and is
told the projected architecture's values.

A space that lists no decisions (a plug-in may not) gets seeded random proposals
(``space.sample``) - documented, not silent.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

GEN_KEY = "NSGAIISampler:generation"


def _distributions(space) -> dict[str, Any] | None:
    """One Optuna categorical distribution per decision of ``space`` (``None``: it lists none)."""
    decisions = space.decisions()
    if not decisions:
        return None
    from optuna.distributions import CategoricalDistribution

    return {d.name: CategoricalDistribution(list(d.choices)) for d in decisions}


class Proposer:
    def __init__(self, space, *, seed: int, population: int = 16, pool: Sequence[str] | None = None) -> None:
        self.space = space
        self.seed = int(seed)
        self.population = int(population)
        self.dists = _distributions(space)
        self.rng = np.random.default_rng([self.seed, 7])
        self.pool = list(pool) if pool is not None else None
        self._pool_codes = (np.stack([space.encode(a) for a in self.pool]) if self.pool else None)
        self._pool_keys = [space.key(a) for a in self.pool] if self.pool else None
        self.study = None
        self._make_study(self.seed)
        self._pending: dict[int, Any] = {}

    def _make_study(self, seed: int) -> None:
        if self.dists is None:
            return
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population)
        old = self.study
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        if old is not None:
            for t in old.trials:
                if t.state.is_finished():
                    self.study.add_trial(t)

    # -- propose ----------------------------------------------------------------
    def ask(self, seen_keys: set[str]) -> tuple[Any, str, dict[str, Any]] | None:
        """-> (handle, arch, params); ``None`` when a finite pool is exhausted."""
        if self.dists is None:
            arch = self.space.sample(self.rng)
            return None, arch, {}
        trial = self.study.ask(self.dists)
        params = dict(trial.params)
        arch = self.space.from_decisions(params)
        if self.pool is not None:
            arch = self._project(arch, seen_keys)
            if arch is None:
                self.study.tell(trial, state=_fail())
                return None
        return trial, arch, params

    def _project(self, arch: str, seen: set[str]) -> str | None:
        free = [i for i, k in enumerate(self._pool_keys) if k not in seen]
        if not free:
            return None
        code = self.space.encode(arch)
        dist = np.abs(self._pool_codes[free] - code).sum(axis=1)
        best = np.flatnonzero(dist == dist.min())
        return self.pool[free[int(best[int(self.rng.integers(len(best)))])]]

    def tell(self, handle: Any, values: tuple[float, float] | None) -> dict[str, Any] | None:
        """Tell a trial; returns what ``replay`` needs (params, values, generation) or None."""
        if handle is None or self.study is None:
            return None
        ok = values is not None and all(math.isfinite(v) for v in values)
        if ok:
            self.study.tell(handle, list(values))
        else:
            self.study.tell(handle, state=_fail())
        ft = self.study.trials[handle.number]
        return {"params": dict(ft.params), "values": list(values) if ok else None,
                "generation": ft.system_attrs.get(GEN_KEY)}

    # -- resume -----------------------------------------------------------------
    def replay(self, told: Sequence[dict[str, Any]]) -> None:
        """Rebuild the study from journaled ``tell`` events, then re-seed the sampler."""
        if self.study is None:
            for _ in told:
                self.space.sample(self.rng)
            return
        import optuna
        from optuna.trial import TrialState, create_trial

        for ev in told:
            attrs = {GEN_KEY: ev["generation"]} if ev.get("generation") is not None else {}
            if ev.get("values") is None:
                t = create_trial(params=ev["params"], distributions=self.dists, state=TrialState.FAIL,
                                 system_attrs=attrs)
            else:
                t = create_trial(params=ev["params"], distributions=self.dists, values=list(ev["values"]),
                                 system_attrs=attrs)
            self.study.add_trial(t)
        self._make_study(self.seed + len(told))
        self.rng = np.random.default_rng([self.seed, 7, len(told)])
        del optuna


def _fail():
    from optuna.trial import TrialState

    return TrialState.FAIL
