"""What a search run is asked to do (``SearchConfig``, validated at the edge) and the one
place of the search's policy constants (``Policy``; ``POLICY`` is the one the product uses).

``SearchConfig`` is the user's choice (strategy, space, estimator, budget, trials, ...) and
its ``hash()`` identifies a run for ``--resume``. ``Policy`` holds the numbers the strategies
decide by; each says what it controls and, where ``docs/search.md`` records it, what chose it.
A test may run a search with another policy (``Search(..., policy=...)``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from cosearch.errors import CosearchError
from cosearch.search.strategies import STRATEGIES

PROXIES = ("flops", "untuned")
TRAIN_FIELDS = ("train_pareto", "train_epochs", "train_data", "train_limit")
TRAIN_SUFFIX = "+train"


@dataclass(frozen=True)
class Policy:
    """The constants the strategies decide by (docs/search.md, "protocol")."""

    # -- new tasks of an arch (joint, ``new_task_budgets``) --
    #: the heaviest new tasks covering this share of the new tasks' FLOPs get the full tuning step
    new_task_cover: float = 0.9
    #: the light rest gets the step divided by this (a quarter) ...
    light_task_divisor: int = 4
    #: ... but at least this many trials: the first trials replace TVM's default schedule
    light_task_min_trials: int = 2

    # -- the gate before tuning (joint, ``predicted_front_gate``) --
    #: the arch's predicted latency is lowered by this margin ...
    gate_margin: float = 0.15
    #: ... plus this many times the calibration's online error ...
    gate_error_factor: float = 2.0
    #: ... at most this much
    gate_margin_max: float = 0.5
    #: the calibration's online error assumed before it has one
    gate_error_prior: float = 0.1
    #: deferred archs promoted per refine (``promote_deferred``)
    promote_limit: int = 2

    # -- the optimistic latency bound (``Search.optimistic_ms``) --
    #: calibrated optimistic sum lowered by max(this, factor x the calibration's online error)
    optimistic_error_min: float = 0.1
    #: the factor (twice the online error, docs/search.md step 3)
    optimistic_error_factor: float = 2.0
    #: the calibration's online error assumed before it has one
    optimistic_error_prior: float = 0.5

    # -- refine (joint, after each generation) --
    #: refine steps at most per generation
    refine_rounds: int = 16
    #: refine repeats while tuning has had less than this share of the evaluator's reported time
    tuning_share: float = 0.5
    #: a task is tuned when its predicted gain is >= this share of the candidates' kernel time ...
    refine_threshold: float = 0.01
    #: ... or this share while tuning is below ``tuning_share`` (screening adds up; a shared task
    #: tuned improves every candidate at once)
    refine_threshold_low: float = 0.001
    #: tasks tuned per refine step (the highest predicted gains)
    refine_tasks: int = 4
    #: front members whose kernel sum dropped by more than this share are re-measured
    remeasure_drop: float = 0.10
    #: after a value-chosen batch, front members estimated this much below their measurement are re-measured
    value_remeasure_drop: float = 0.05

    # -- proposing against tuning and finishing the front (joint) --
    #: generations whose front gain per second ``tune_by_value`` weighs tuning against; None (off):
    #: the front is tuned past the cap only when proposals run out (replays, docs/search.md)
    switch_window: int | None = None
    #: the exported front is "finished" when every point's kernel sum is within this share of its
    #: predicted converged sum (every exported artifact within 10 % of converged)
    finish_tolerance: float = 0.10
    #: the finish is started early (``finish_due``) only when its predicted cost fits in this share
    #: of the budget: a finish that cannot complete only takes the clock from exploring (replayed,
    #: docs/search.md "How the reserve was chosen")
    finish_max_share: float = 0.5
    #: tasks per tuning call in the finish (one call's set-up shared by them)
    finish_tasks_per_call: int = 8

    # -- the sequential baseline --
    #: share of the budget for its NAS phase (then it tunes the proxy front)
    sequential_nas_share: float = 0.5
    #: share of the budget kept to measure the front after tuning it
    sequential_measure_reserve: float = 0.08
    #: tasks per tuning call while it tunes the proxy front
    sequential_tasks_per_call: int = 4

    # -- the brute force --
    #: architectures tuned when neither ``subset`` nor ``max_archs`` is given
    brute_default_subset: int = 20

    #: proposals asked in a row before the proposer counts as exhausted (isomorphic duplicates)
    propose_attempts: int = 200


POLICY = Policy()

#: seed-stream tags: ``np.random.default_rng([seed, TAG])`` per use, so that no use of the run's
#: seed shifts another's draws (values fixed: changing one changes every seeded run)
SEED_CALIBRATION = 3  # api: the calibration sample fixing the objectives' reference point
SEED_PROBE = 5  # api: the architecture probed to check the pipeline before the search
SEED_PROPOSER = 7  # proposer: random sampling and the NSGA-II sampler's re-seed
SEED_BRUTE = 11  # brute: the subset of architectures


@dataclass(frozen=True)
class SearchConfig:
    strategy: str = "joint"
    space: str = "nb201"
    space_settings: dict = field(default_factory=dict)
    estimator: str = "naswot"
    target: str = "host"
    budget_s: float | None = None
    max_archs: int | None = None
    seed: int = 0
    latency_max_ms: float | None = None
    proxy: str = "flops"  # sequential only
    subset: int | None = None  # brute only
    trials_per_task: int = 32  # full per-task tuning budget
    tune_batch: int = 8  # trials per task and tuning step (joint)
    population: int = 16  # NSGA-II population
    evaluator: str = "engine"  # "fake": FakeEvaluator, for tests only
    calibration_archs: int = 6  # seeded sample fixing the objectives' reference point
    # after the search (not part of the search itself, so not in ``hash()``; see TRAIN_FIELDS)
    train_pareto: int = 0  # train the N front points of highest accuracy estimate (0: off)
    train_epochs: int = 3
    train_data: str = "digits"  # a dataset spec of cosearch.train.data
    train_limit: int | None = None  # seeded subset of at most N images (quick runs, tests)
    # architectures proposed ahead of the one being screened (their plans and scores computed by
    # workers meanwhile, docs/distributed.md); decisions depend on it, never on the number of workers
    lookahead: int = 1
    # batch members the joint strategy finishes together (gated on the same front, their new tasks
    # tuned in one call, measured side by side where the target has boards); 1: one at a time
    overlap: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CosearchError(f"unknown strategy {self.strategy!r}; valid: {', '.join(STRATEGIES.names())}")
        if self.proxy not in PROXIES:
            raise CosearchError(f"unknown proxy {self.proxy!r}; valid: {', '.join(PROXIES)}")
        if self.budget_s is None and self.max_archs is None:
            raise CosearchError("give a budget: --budget DURATION (e.g. 30m, 90s) or --max-archs N")
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise CosearchError(f"budget must be a positive duration, got {self.budget_s!r} s")
        for name in ("max_archs", "subset", "trials_per_task", "tune_batch", "population", "calibration_archs",
                     "lookahead", "overlap"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise CosearchError(f"{name} must be a positive integer, got {v!r}")
        if self.latency_max_ms is not None and not self.latency_max_ms > 0:
            raise CosearchError(f"--latency-max-ms must be a positive number, got {self.latency_max_ms!r}")
        for name, lo in (("train_pareto", 0), ("train_epochs", 1), ("train_limit", 3)):
            v = getattr(self, name)
            if v is None and name == "train_limit":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise CosearchError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.train_data, str) or not self.train_data:
            raise CosearchError(f"train_data must be a dataset name or path, got {self.train_data!r}")
        if not isinstance(self.estimator, str) or not self.estimator:
            raise CosearchError(f"estimator must be a name, got {self.estimator!r}")
        if self.estimator == "train" or self.estimator.startswith("train+"):
            raise CosearchError("training is the top rung of the search's accuracy ladder: give a cheap estimator "
                                "before it, e.g. --estimator naswot+train (accepted: ESTIMATOR or ESTIMATOR+train)")
        if "+" in self.screen_estimator or self.estimator.endswith("+") or (
                "+" in self.estimator and not self.train_rung):
            raise CosearchError(f"estimator {self.estimator!r}: accepted ESTIMATOR or ESTIMATOR+train "
                                "(one cheap estimator, optionally followed by the training rung)")

    @property
    def train_rung(self) -> bool:
        """``--estimator X+train``: short real training is the top accuracy fidelity (see docs/search.md)."""
        return self.estimator.endswith(TRAIN_SUFFIX) and len(self.estimator) > len(TRAIN_SUFFIX)

    @property
    def screen_estimator(self) -> str:
        """The cheap estimator (``X`` of ``X+train``)."""
        return self.estimator[: -len(TRAIN_SUFFIX)] if self.train_rung else self.estimator

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """Identity of the *search* (the post-search training settings may change on resume)."""
        skip = ("train_pareto",) if self.train_rung else TRAIN_FIELDS  # the training rung's settings are the search's
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        for name in ("lookahead", "overlap"):  # the defaults: the hash of runs from before the options stays
            if d.get(name) == 1:
                del d[name]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_duration(text: str) -> float:
    """``"30m"``, ``"90s"``, ``"1h"``, ``"45"`` (seconds) -> seconds; ``CosearchError`` otherwise."""
    from cosearch.cli_args import duration_s

    return duration_s("--budget", text)
