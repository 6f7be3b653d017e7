"""`cosearch search`: the joint architecture x schedule search (see docs/search.md).

Thin: parses and validates, calls ``cosearch.search.api``, prints the summary.
``--evaluator fake`` swaps the compiler for ``FakeEvaluator`` (a deterministic
simulation): it exists for tests of the search logic only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cosearch.errors import CosearchError


def add_search_options(p, *, strategies: bool = True) -> None:
    p.add_argument("--target", default=None, metavar="NAME|PATH", help="target name or .json file (default host)")
    p.add_argument("--space", default=None, metavar="S", help="search space: nb201 | mbv2 (default nb201)")
    p.add_argument("--space-opt", action="append", default=[], metavar="K=V",
                   help="space setting, repeatable (e.g. C=8, N=1, resolution=32)")
    p.add_argument("--estimator", default=None, metavar="E", help="accuracy estimator, table:PATH, or ESTIMATOR+train: short real training as the top "
                   "accuracy rung, stopped early by the learning-curve rule (default naswot; see docs/search.md)")
    p.add_argument("--budget", default=None, metavar="DURATION", help="wall budget, e.g. 30m, 90s, 1h")
    p.add_argument("--max-archs", default=None, metavar="N", help="stop after N distinct architectures")
    p.add_argument("--seed", default=None, metavar="S", help="seed of every stochastic part (default 0)")
    p.add_argument("--schedules", default=None, metavar="DIR", help="schedule database (default: the target's, one per resolved machine key)")
    p.add_argument("--trials-per-task", default=None, metavar="N", help="full tuning budget per task (default 32)")
    p.add_argument("--tune-batch", default=None, metavar="N", help="trials per task per tuning step (default 8)")
    p.add_argument("--population", default=None, metavar="N", help="NSGA-II population (default 16)")
    p.add_argument("--calibration-archs", default=None, metavar="N",
                   help="seeded sample fixing the reference point (default 6)")
    p.add_argument("--evaluator", default=None, choices=None, metavar="KIND",
                   help="engine (default) | replay:BENCH (a benchmark of cosearch bench build, docs/benchmark.md) | fake (a simulated compiler, for tests only)")
    p.add_argument("--workers", default=None, metavar="N",
                   help="plan and score architectures on N Ray workers (a local Ray instance; needs "
                   "pip install 'cosearch[ray]'; docs/distributed.md)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run the workers on an existing Ray cluster (HOST:PORT of 'ray start --head', or auto)")
    p.add_argument("--lookahead", default=None, metavar="N",
                   help="architectures proposed ahead of the one screened (default 1; 2 x --workers with workers); "
                   "the search's decisions depend on it, not on the number of workers")
    p.add_argument("--overlap", default=None, metavar="K",
                   help="joint: finish K screened architectures together: gated on the same front, their new "
                   "tasks tuned in one call (split over RPC boards), measured side by side on boards "
                   "(default 1; docs/distributed.md)")
    p.add_argument("--no-progress", action="store_true", help="no live display")


def register(sub) -> None:
    p = sub.add_parser("search", help="joint search of architectures and schedules for a target",
                       description="Search accuracy x measured latency for a target; writes result.json, "
                       "Pareto artifacts, a journal and a report to --out. See docs/search.md.")
    add_search_options(p)
    p.add_argument("--strategy", default=None, metavar="S", help="joint (default) | sequential | brute")
    p.add_argument("--proxy", default=None, metavar="P", help="sequential's latency proxy: flops (default) | untuned")
    p.add_argument("--subset", default=None, metavar="N", help="brute: size of the seeded subset (default --max-archs or 20)")
    p.add_argument("--latency-max-ms", default=None, metavar="X", help="ignore architectures slower than X ms")
    p.add_argument("--train-pareto", default=None, metavar="N",
                   help="after the search, train the N front points of highest accuracy estimate into "
                   "DIR/trained/<i> (default 0: off; see docs/training.md)")
    p.add_argument("--train-epochs", default=None, metavar="E", help="epochs of the training rung and of --train-pareto (default 3)")
    p.add_argument("--train-data", default=None, metavar="D", help="dataset of --train-pareto (default digits)")
    p.add_argument("--train-limit", default=None, metavar="N",
                   help="train on a seeded subset of at most N images (quick runs, tests)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (new or empty)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue a killed or stopped search in DIR")
    p.set_defaults(func=run)


def _int(name: str, text, minimum: int = 1) -> int | None:
    from cosearch.cli_args import positive_int

    return None if text is None else positive_int(name, text, minimum=minimum)


def _float(name: str, text) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise CosearchError(f"{name} must be a positive number, got {text!r}") from None
    if not v > 0:
        raise CosearchError(f"{name} must be a positive number, got {text!r}")
    return v


def build_config(args, *, strategy: str | None = None):
    """SearchConfig from parsed args (only the options given; defaults from SearchConfig)."""
    from cosearch.search.config import SearchConfig

    given = given_settings(args, strategy=strategy)
    parallel_of(args, given)
    return SearchConfig(**given), given


def given_settings(args, *, strategy: str | None = None) -> dict:
    """The SearchConfig fields the command line gives (validated one by one), nothing else."""
    from cosearch.cli_args import space_settings
    from cosearch.search.evaluator import check_evaluator_kind
    from cosearch.search.config import parse_duration

    given = {
        "strategy": strategy or getattr(args, "strategy", None),
        "space": args.space,
        "estimator": args.estimator,
        "target": args.target,
        "budget_s": parse_duration(args.budget) if args.budget is not None else None,
        "max_archs": _int("--max-archs", args.max_archs),
        "seed": _int("--seed", args.seed, 0),
        "latency_max_ms": _float("--latency-max-ms", getattr(args, "latency_max_ms", None)),
        "proxy": getattr(args, "proxy", None),
        "subset": _int("--subset", getattr(args, "subset", None)),
        "trials_per_task": _int("--trials-per-task", args.trials_per_task),
        "tune_batch": _int("--tune-batch", args.tune_batch),
        "population": _int("--population", args.population),
        "calibration_archs": _int("--calibration-archs", args.calibration_archs),
        "evaluator": check_evaluator_kind(args.evaluator) if args.evaluator is not None else None,
        "space_settings": space_settings(args.space_opt) if args.space_opt else None,
        "train_pareto": _int("--train-pareto", getattr(args, "train_pareto", None), 0),
        "train_epochs": _int("--train-epochs", getattr(args, "train_epochs", None)),
        "train_data": getattr(args, "train_data", None),
        "train_limit": _int("--train-limit", getattr(args, "train_limit", None), 3),
        "lookahead": _int("--lookahead", getattr(args, "lookahead", None)),
        "overlap": _int("--overlap", getattr(args, "overlap", None)),
    }
    return {k: v for k, v in given.items() if v is not None}


def parallel_of(args, given: dict | None = None):
    """``Parallel`` of ``--workers`` / ``--ray-address`` (checked now: without Ray installed, one
    line and exit 2 before any work); with workers and no ``--lookahead``, ``given`` gets
    lookahead 2 x workers."""
    from cosearch.distributed.pool import Parallel, require_ray

    workers = _int("--workers", getattr(args, "workers", None))
    address = getattr(args, "ray_address", None)
    if workers is None and not address:
        return None
    require_ray()
    if given is not None and "lookahead" not in given:
        given["lookahead"] = 2 * (workers or 1)
    return Parallel(workers, address)


def run(args) -> int:
    from cosearch.search import api

    if args.resume is not None:
        cfg = None
        explicit = [a for a in ("space", "estimator", "target", "budget", "max_archs", "seed", "strategy", "proxy",
                                "subset", "trials_per_task", "tune_batch", "population", "evaluator",
                                "latency_max_ms", "calibration_archs", "train_pareto", "train_epochs",
                                "train_data", "train_limit", "lookahead", "overlap") if getattr(args, a, None) is not None]
        if args.out is not None:
            raise CosearchError("--resume DIR continues DIR; do not give --out with it")
        if explicit:
            import json

            try:
                stored = json.loads((Path(args.resume) / "config.json").read_text())["search"]
            except (OSError, ValueError, KeyError, TypeError):
                raise CosearchError(f"--resume {args.resume!r} is not a search folder (no config.json of a search)") \
                    from None
            given = given_settings(args)  # merged with the stored config below (no budget needed here)
            from cosearch.search.config import SearchConfig

            cfg = SearchConfig(**{**stored, **given})
        result = api.resume_search(Path(args.resume), cfg=cfg, progress=not args.no_progress,
                                   parallel=parallel_of(args))
        out = Path(args.resume)
    else:
        if args.out is None:
            raise CosearchError("give --out DIR (a new or empty folder), or --resume DIR")
        cfg, _ = build_config(args)
        out = Path(args.out)
        result = api.run_search(cfg, out, schedules=args.schedules, progress=not args.no_progress,
                                command=sys.argv[1:], parallel=parallel_of(args))
    report, why = api.write_report_safe(out)
    if why:
        print(f"cosearch search: warning: {why}", file=sys.stderr)
    print(api.summary_text(out, result, report))
    return 0
