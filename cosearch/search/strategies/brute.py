"""The brute force: a seeded subset of architectures, each screened, tuned to the full
per-task budget and measured (docs/search.md, "baselines"); the reference the other
strategies are scored against on small spaces."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from cosearch.search.config import SEED_BRUTE
from cosearch.search.evaluator import TaskState
from cosearch.search.strategies import Screening, Strategy


class Brute(Strategy):
    name = "brute"

    def subset(self) -> list[str]:
        """``--subset`` (else ``--max-archs``, else ``Policy.brute_default_subset``) distinct
        architectures, drawn from the pool or the space with the seed's brute stream."""
        s = self.search
        n = s.cfg.subset or s.cfg.max_archs or s.policy.brute_default_subset
        rng = np.random.default_rng([s.cfg.seed, SEED_BRUTE])
        out, keys = [], set()
        if s.pool is not None:
            order = rng.permutation(len(s.pool))
            cand = (s.pool[int(i)] for i in order)
        else:
            cand = (s.space.sample(rng) for _ in range(100 * n))
        for a in cand:
            k = s.space.key(a)
            if k not in keys:
                keys.add(k)
                out.append(s.space.canonical(a))
            if len(out) >= n:
                break
        return out

    def archs(self) -> Iterator[tuple[Any, None]]:
        """The subset's archs not yet in the archive, admitted one by one until a limit."""
        s = self.search
        for arch in self.subset():
            key = s.space.key(arch)
            if key in s.archive:
                continue
            reason = s.limit()
            if reason is not None:
                return reason
            yield s.admit(arch, key, {}), None
        return "exhausted"

    def run(self) -> str:
        s = self.search
        cfg = s.cfg
        screening = Screening(s, self.archs())
        for rec, _, ok in screening:
            if not ok:
                continue
            full = {t.workload: cfg.trials_per_task - s.state.get(t.workload, TaskState(None, 0)).trials
                    for t in rec.tasks}
            s.tune(full, reason="full_budget")
            if s.do_measure(rec):
                if cfg.train_rung:
                    s.do_train(rec, None, early_stop=False)  # full fidelity: no early stop
                s.refresh_front()
            s.update_progress()
        return screening.reason
