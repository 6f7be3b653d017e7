"""When to stop tuning a task early: the ``EarlyStopRule`` interface.

A rule sees what is known of a task (``TaskFeatures``: op kind, shapes, FLOPs,
weight in the model, target key) and how its tuning went so far
(``TaskProgress``: trials and failed candidates of this run and of earlier runs,
the best latency after each batch), and answers whether to stop it::

    class EarlyStopRule:
        def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool: ...

It is asked before a task's first batch of a run (``progress.trials == 0``; a
rule may skip a task it predicts cannot gain) and after every measured batch.
``progress.history[i]`` is the best latency in µs after batch ``i`` of this run
(``inf`` while no candidate has run successfully; a warm-started task starts
from its database best, ``progress.prior_best_us``). Rules do no I/O while
deciding and see no TVM objects, so a model-based rule plugs in by subclassing
and registering a kind: ``RULES.register("mine", "mypkg.rules:MyRule")``.

Built-in kinds:
- ``"never"``  never stops (the budget alone decides);
- ``"stall"``  stops after ``patience`` batches without ``min_gain`` relative
               improvement of the best latency (TVM-NOTES: patience >= 4);
- ``"always"`` stops after the first batch (for tests and smoke runs);
- ``"xgb"``    an XGBoost model of the gain of more trials, trained on the task
               histories (``cosearch.compile.tuning.stop.xgb.XGBStop``; lazily imported).

``TaskStats`` is the bookkeeping the tuning session (``tuning.session``) feeds each
measured batch to; the session's MetaSchedule callback terminates the tasks it stops.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cosearch.compile.plan import TaskFeatures
from cosearch.compile.storage.database import FAILED_RUN_SECS
from cosearch.errors import CosearchError
from cosearch.registry import Registry


@dataclass
class TaskProgress:
    """How tuning of one task went so far."""

    trials: int = 0  # trials of this run
    errors: int = 0  # failed candidates of this run
    history: list[float] = field(default_factory=list)  # best µs after each batch of this run
    prior_trials: int = 0  # trials spent on this workload by earlier runs (task history file)
    prior_best_us: float | None = None  # best µs in the database before this run
    batch_size: int = 0  # candidates per batch in this run

    @property
    def best_us(self) -> float:
        cands = [h for h in self.history if math.isfinite(h)]
        if self.prior_best_us is not None:
            cands.append(self.prior_best_us)
        return min(cands) if cands else math.inf


class EarlyStopRule(abc.ABC):
    kind: str = "?"

    @abc.abstractmethod
    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        """Stop tuning ``task`` now? Asked before its first batch and after every batch."""

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    #: does ``load_rule``'s ``patience`` apply to this kind?
    takes_patience: bool = False

    @classmethod
    def for_database(cls, database_dir: Any, /, **kw: Any) -> "EarlyStopRule":
        """The rule for a run tuning into ``database_dir`` (a learnt rule loads its model there)."""
        return cls(**kw)


class Never(EarlyStopRule):
    kind = "never"

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        return False


class Always(EarlyStopRule):
    kind = "always"

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        return len(progress.history) >= 1


class Stall(EarlyStopRule):
    """Stop after ``patience`` batches in which the best latency did not improve by
    at least ``min_gain`` (relative) over the best seen ``patience`` batches earlier."""

    kind = "stall"
    takes_patience = True

    def __init__(self, *, patience: int = 4, min_gain: float = 0.03) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience <= 0:
            raise CosearchError(f"stall rule: patience must be a positive integer, got {patience!r}")
        if not isinstance(min_gain, (int, float)) or not 0 <= min_gain < 1:
            raise CosearchError(f"stall rule: min_gain must be a number in [0, 1), got {min_gain!r}")
        self.patience = patience
        self.min_gain = float(min_gain)

    def should_stop(self, task: TaskFeatures, progress: TaskProgress) -> bool:
        history = progress.history
        if len(history) <= self.patience:
            return False
        before, now = history[-1 - self.patience], history[-1]
        if not math.isfinite(now):
            return False  # nothing ran yet: keep trying until the budget ends
        if not math.isfinite(before):
            return False
        return now > before * (1.0 - self.min_gain)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "patience": self.patience, "min_gain": self.min_gain}


RULES: Registry[type[EarlyStopRule]] = Registry("early-stop rule")
RULES.register("never", Never)
RULES.register("always", Always)
RULES.register("stall", Stall)
RULES.register("xgb", "cosearch.compile.tuning.stop.xgb:XGBStop")


def create(kind: str, /, **kw: Any) -> EarlyStopRule:
    """``create("stall", patience=4, min_gain=0.03)``; unknown kinds list the valid ones."""
    return RULES.create(kind, **kw)


def load_rule(kind: str, database_dir: Any, /, *, patience: int | None = None, **kw: Any) -> EarlyStopRule:
    """The rule ``kind`` for a run that tunes into ``database_dir``: ``xgb`` loads the
    database's model (``<db>/stop_model.json``) if there is one, else starts unfitted
    (stall fallback); ``patience`` applies to ``stall`` and to ``xgb``'s fallback."""
    cls = RULES.get(kind)  # unknown kind -> one line naming the valid ones
    if patience is not None and cls.takes_patience:
        kw["patience"] = patience
    return cls.for_database(database_dir, **kw)


class TaskStats:
    """Plain per-task bookkeeping of a tuning call (no TVM types: testable alone).

    ``tasks`` are ``TaskFeatures`` (or bare names); ``progress[i]`` is a
    ``TaskProgress`` (pass ``priors`` to carry earlier runs' trials and best).
    ``on_batch(i, results, progress)`` is called after every batch, before the
    rule (the engine persists records and history there, and reports progress)."""

    def __init__(
        self,
        tasks: Sequence[TaskFeatures | str],
        rule: EarlyStopRule | None,
        *,
        priors: Sequence[TaskProgress] | None = None,
        on_batch: Callable[[int, Sequence[tuple[str | None, Sequence[float] | None]], TaskProgress], None] | None = None,
    ) -> None:
        self.features = [t if isinstance(t, TaskFeatures) else TaskFeatures(name=str(t)) for t in tasks]
        self.names = [f.name for f in self.features]
        self.rule = rule
        self.on_batch = on_batch
        n = len(self.features)
        self.progress = list(priors) if priors is not None else [TaskProgress() for _ in range(n)]
        if len(self.progress) != n:
            raise CosearchError(f"TaskStats: {len(self.progress)} priors for {n} tasks")
        self.stopped = [False] * n

    # views kept for callers of the old bookkeeping
    @property
    def trials(self) -> list[int]:
        return [p.trials for p in self.progress]

    @property
    def errors(self) -> list[int]:
        return [p.errors for p in self.progress]

    @property
    def best_us(self) -> list[float]:
        return [min([h for h in p.history if math.isfinite(h)], default=math.inf) for p in self.progress]

    @property
    def history(self) -> list[list[float]]:
        return [p.history for p in self.progress]

    def should_skip(self, task_id: int) -> bool:
        """Ask the rule before the task's first batch (True: do not tune it in this run)."""
        i = int(task_id)
        if self.rule is None or self.stopped[i]:
            return self.stopped[i]
        if self.rule.should_stop(self.features[i], self.progress[i]):
            self.stopped[i] = True
        return self.stopped[i]

    def observe(self, task_id: int, results: Sequence[tuple[str | None, Sequence[float] | None]]) -> bool:
        """One measured batch of task ``task_id``: ``(error_msg, run_secs)`` per candidate.
        Returns True if the task should stop now (reported once)."""
        i = int(task_id)
        p = self.progress[i]
        p.trials += len(results)
        best = min([h for h in p.history if math.isfinite(h)], default=math.inf)
        for err, run_secs in results:
            secs = [float(s) for s in run_secs] if (err is None and run_secs is not None) else []
            if not secs or max(secs) >= FAILED_RUN_SECS:
                p.errors += 1
                continue
            best = min(best, 1e6 * sum(secs) / len(secs))
        p.history.append(best)
        if self.on_batch is not None:
            self.on_batch(i, results, p)
        if self.rule is None or self.stopped[i]:
            return False
        if self.rule.should_stop(self.features[i], p):
            self.stopped[i] = True
            return True
        return False
