"""Tuning settings: ``TuneConfig``, suited to µs kernels on few cores.

In-process builder, evaluator ``number`` x ``repeat`` with ``min_repeat_ms=0``, a small
evolutionary population with one genetic iteration, batches fitted to the budget. Targets
with ``measure == "none"`` are never tuned (compile-only); ``"rpc"`` targets are measured
through MetaSchedule's ``RPCRunner`` with the target's tracker (``tuning.runner``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cosearch.errors import CosearchError

COST_MODELS = ("xgb", "random")
TASK_SCHEDULERS = ("gradient", "round-robin")

#: Trials per second a clock-bounded tuning is expected to run, to fit its first batches so every
#: new task gets one early (``TuneConfig.batch_for``): 0.9-1.7 measured with ``LONG_TUNING`` on 2
#: cores (SqueezeNet: 543 trials in 600 s, 834 in 480 s continuing a database). Without the fit,
#: 2 min of ShuffleNet (36 tasks, batches of 16) measured 12 tasks and left the rest on fallback
#: schedules (bench/results/latency_real_10m.json, "tvm-2m"); with it (batches of 3-4), 22 of 36
#: (bench/results/latency_real_2m_fit.json).
TRIALS_PER_S = 1.0
#: Search settings of a deliberate long tuning (``cosearch tune --time``, ``TuneConfig.long``):
#: the defaults are cheap per batch, for the joint search's few trials per architecture; with
#: minutes per network a wider evolutionary search guided by the XGBoost cost model finds
#: faster kernels in the same time (SqueezeNet 224x224, 10 min each: 13.79 vs 15.71 ms,
#: bench/results/gap_squeezenet_10m.json). The stall rule is off: the clock ends it.
LONG_TUNING: dict[str, Any] = {"population": 256, "genetic_iters": 2, "cost_model": "xgb", "patience": None,
                               "wide_min_us": 100.0, "wide_min_s_per_task": 20.0}
#: the evolutionary search of a task below ``TuneConfig.wide_min_us`` (the cheap defaults)
NARROW_SEARCH: dict[str, int] = {"population": 64, "genetic_iters": 1}


def _pos_int(name: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        extra = " or None" if allow_none else ""
        raise CosearchError(f"TuneConfig.{name} must be a positive integer{extra}, got {v!r}")


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 64  # global budget
    trials_per_task: int | None = None  # cap per task
    trials_per_iter: int = 16  # candidates per measured batch (upper bound, see fit_batch)
    fit_batch: bool = True  # shrink the batch so every new task gets one within `trials`
    # share of `trials` the first round (one batch per new task) may take when fitting the batch; the
    # rest goes where engine.allocate expects the most time saved (weight x µs, FLOPs-estimated when new)
    first_round: float = 1.0
    seed: int | None = 0
    patience: int | None = 4  # stall rule; None disables early stopping
    min_gain: float = 0.03
    # measurement (µs kernels: few runs, no minimum repeat time)
    number: int = 5
    repeat: int = 2
    runner_timeout_s: float = 10.0
    # search strategy (small population, one genetic iteration)
    population: int = 64
    genetic_iters: int = 1
    init_min_unmeasured: int = 16
    # search settings that scale with the kernel: a task whose weighted kernel time (weight x best µs,
    # or µs expected from FLOPs and bytes while unmeasured: engine.expected_us) is below this many µs
    # searches with NARROW_SEARCH (population 64, 1 genetic iteration) whatever `population` and
    # `genetic_iters` say -- a wide search costs seconds per batch, worth it only on kernels that cost
    # the model enough; None: every task uses `population` / `genetic_iters`
    wide_min_us: float | None = None
    # search settings that scale with the clock: when `max_seconds` gives each task tuned less than this
    # many seconds, the run uses the cheap search (NARROW_SEARCH, random cost model) whatever `population`,
    # `genetic_iters` and `cost_model` say (``for_tasks``). Measured side by side on the same clock
    # (bench/results/latency_real_5m.json): at 2 and 5 minutes (3-12 s per task) the cheap search won on
    # five of six networks (mbv2-small, searched narrow by both, was a near tie); at 10 minutes on
    # SqueezeNet (23 s per task) the wide one won (gap_squeezenet_10m.json)
    wide_min_s_per_task: float | None = None
    keep_records: int | None = 8  # best records kept per task in the shared database (None: all)
    # a new task's first trial is the schedule of its nearest tuned sibling (tuning.seed), and the
    # evolutionary search starts from it; False: new tasks start from random design-space samples
    transfer: bool = True
    cost_model: str = "random"  # "xgb" | "random" (xgb ranks at random below ~100 samples anyway)
    # "round-robin" | "gradient". Round-robin with the engine's per-task budgets (engine.allocate decides
    # where trials go): MetaSchedule joins a batch as soon as it is measured, so it is persisted then
    # (NB201 net: first batch in the database after 8 s). The gradient scheduler first sends one batch
    # of every task and joins them together (first persisted after 38 s, same run; same wall time).
    task_scheduler: str = "round-robin"
    build_workers: int | None = None  # threads compiling candidates; None: this machine's cores (at most 4)
    # wall-clock budget of one tuning call: once it is spent every task stops (the batch being
    # measured finishes and is kept); None: trials alone bound the run
    max_seconds: float | None = None
    # after tuning, time each tuned task's best record again on its own (engine.confirm): a
    # tuning-time best is biased low; predictions then use the confirmed µs
    confirm: bool = False

    def __post_init__(self) -> None:
        _pos_int("trials", self.trials)
        _pos_int("trials_per_task", self.trials_per_task, allow_none=True)
        _pos_int("trials_per_iter", self.trials_per_iter)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise CosearchError(f"TuneConfig.seed must be a non-negative integer or None, got {self.seed!r}")
        _pos_int("patience", self.patience, allow_none=True)
        _pos_int("keep_records", self.keep_records, allow_none=True)
        _pos_int("build_workers", self.build_workers, allow_none=True)
        if isinstance(self.first_round, bool) or not isinstance(self.first_round, (int, float)) or not 0 < self.first_round <= 1:
            raise CosearchError(f"TuneConfig.first_round must be a number in (0, 1], got {self.first_round!r}")
        if isinstance(self.min_gain, bool) or not isinstance(self.min_gain, (int, float)) or not 0 <= self.min_gain < 1:
            raise CosearchError(f"TuneConfig.min_gain must be a number in [0, 1), got {self.min_gain!r}")
        for n in ("number", "repeat", "population", "genetic_iters", "init_min_unmeasured"):
            _pos_int(n, getattr(self, n))
        if self.max_seconds is not None and (isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float))
                                             or not self.max_seconds > 0):
            raise CosearchError(f"TuneConfig.max_seconds must be a positive number or None, got {self.max_seconds!r}")
        if self.wide_min_us is not None and (isinstance(self.wide_min_us, bool) or not isinstance(self.wide_min_us, (int, float))
                                             or not self.wide_min_us >= 0):
            raise CosearchError(f"TuneConfig.wide_min_us must be a non-negative number or None, got {self.wide_min_us!r}")
        if self.wide_min_s_per_task is not None and (isinstance(self.wide_min_s_per_task, bool)
                                                     or not isinstance(self.wide_min_s_per_task, (int, float))
                                                     or not self.wide_min_s_per_task >= 0):
            raise CosearchError("TuneConfig.wide_min_s_per_task must be a non-negative number or None, "
                                f"got {self.wide_min_s_per_task!r}")
        if not isinstance(self.runner_timeout_s, (int, float)) or self.runner_timeout_s <= 0:
            raise CosearchError(f"TuneConfig.runner_timeout_s must be a positive number, got {self.runner_timeout_s!r}")
        if self.cost_model not in COST_MODELS:
            raise CosearchError(f"TuneConfig.cost_model must be one of {', '.join(COST_MODELS)}, got {self.cost_model!r}")
        if self.task_scheduler not in TASK_SCHEDULERS:
            raise CosearchError(
                f"TuneConfig.task_scheduler must be one of {', '.join(TASK_SCHEDULERS)}, got {self.task_scheduler!r}"
            )

    @classmethod
    def long(cls, max_seconds: float, **overrides: Any) -> "TuneConfig":
        """A tuning bounded by the clock (``max_seconds``) with ``LONG_TUNING``'s search settings;
        ``trials`` only caps it (default: effectively unbounded)."""
        return cls(**{"trials": 10**6, **LONG_TUNING, "max_seconds": max_seconds, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_tasks(self, n_tasks: int) -> "TuneConfig":
        """The settings a clock-bounded tuning of ``n_tasks`` tasks runs with: the cheap search
        (NARROW_SEARCH, random cost model) when ``max_seconds / n_tasks < wide_min_s_per_task``;
        otherwise (or without a clock, or without that threshold) these settings unchanged."""
        if (self.max_seconds is None or self.wide_min_s_per_task is None or n_tasks <= 0
                or self.max_seconds / n_tasks >= self.wide_min_s_per_task):
            return self
        return dataclasses.replace(self, population=min(self.population, NARROW_SEARCH["population"]),
                                   genetic_iters=min(self.genetic_iters, NARROW_SEARCH["genetic_iters"]),
                                   cost_model="random", wide_min_s_per_task=None)

    def search_for(self, weighted_us: float | None) -> tuple[int, int]:
        """(population, genetic iterations) of a task whose kernel costs the model ``weighted_us``
        (None: unknown, the wide search): narrow below ``wide_min_us``, else as configured."""
        if self.wide_min_us is not None and weighted_us is not None and weighted_us < self.wide_min_us:
            narrow = (NARROW_SEARCH["population"], NARROW_SEARCH["genetic_iters"])
            return min(narrow[0], self.population), min(narrow[1], self.genetic_iters)
        return self.population, self.genetic_iters

    def resolved_build_workers(self) -> int:
        """Candidates compile in threads (LLVM releases the GIL): 2 threads cut the
        build stage of a 64-trial NB201 tuning from 17.7 s to 11.3 s on 2 cores."""
        if self.build_workers is not None:
            return self.build_workers
        import os

        return max(1, min(4, os.cpu_count() or 1))

    def batch_for(self, n_tasks: int) -> int:
        """Candidates per measured batch when ``n_tasks`` new tasks share ``trials``.

        MetaSchedule's schedulers give every task one batch before any gets a second,
        but only while the global budget lasts: 16 new tasks, 64 trials and batches
        of 8 leave half the tasks with TVM's default CPU schedule, which is serial
        and unvectorised (tens of times slower than any tuned candidate). With
        ``fit_batch`` the batch shrinks to ``trials // n_tasks`` (at least 1), so
        every task gets measured candidates; it never exceeds ``trials_per_iter``
        nor ``trials_per_task``. Under a clock (``max_seconds``) the budget fitted to is
        the trials that time is expected to allow (``TRIALS_PER_S``), when fewer."""
        per = self.trials_per_iter
        if self.trials_per_task is not None:
            per = min(per, self.trials_per_task)
        budget = self.trials
        if self.max_seconds is not None:
            budget = min(budget, max(1, int(self.max_seconds * TRIALS_PER_S)))
        first = max(1, int(budget * self.first_round))
        if self.fit_batch and n_tasks > 0 and n_tasks * per > first:
            per = max(1, first // n_tasks)
        return per
