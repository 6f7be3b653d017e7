"""`cosearch bench build|info|export|score|estimates`: co-search benchmarks (docs/benchmark.md).

Thin: parses and validates, calls ``cosearch.cobench``, prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cosearch.errors import CosearchError


def register(sub) -> None:
    p = sub.add_parser("bench", help="build and read co-search benchmarks (tuned latency ground truth)",
                       description="A benchmark holds every task of a set of architectures tuned to convergence "
                       "(curves for several seeds) and every architecture's end-to-end latency on this CPU; "
                       "--evaluator replay:BENCH replays searches on it. See docs/benchmark.md.")
    bsub = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    b = bsub.add_parser("build", help="build, extend or resume a benchmark (resumable after kill -9)")
    b.add_argument("--space", default="nb201", metavar="S", help="search space (default nb201)")
    b.add_argument("--space-opt", action="append", default=[], metavar="K=V", help="space setting, repeatable")
    b.add_argument("--target", default="host", metavar="NAME|PATH", help="a target measured locally (default host)")
    b.add_argument("--archs", default=None, metavar="FILE", help="architectures, one per line")
    b.add_argument("--table", default=None, metavar="CSV", help="architectures of a CSV's 'arch' column")
    b.add_argument("--sample", default=None, metavar="N", help="a seeded sample of N other distinct architectures")
    b.add_argument("--seed", default="0", metavar="S", help="seed of --sample (default 0)")
    b.add_argument("--all", action="store_true", help="every distinct architecture of the space")
    b.add_argument("--tuning-seeds", default="0,1", metavar="LIST", help="tuning seeds (default 0,1)")
    b.add_argument("--min-trials", default=None, metavar="N", help="convergence: flat only after N trials (default 128)")
    b.add_argument("--max-trials", default=None, metavar="N", help="convergence: at most N trials (default 256)")
    b.add_argument("--window", default=None, metavar="N", help="convergence: flat = under 1%% gain over N trials (default 64)")
    b.add_argument("--chunk", default=None, metavar="N", help="trials per workload and tuning call (default 32)")
    b.add_argument("--workers", default=None, metavar="N", help="planning processes (default 2)")
    b.add_argument("--phases", default="plan,tune,measure", metavar="LIST", help="phases to run (default all)")
    b.add_argument("--measure-limit", default=None, metavar="N", help="measure at most N architectures in this call")
    b.add_argument("--out", required=True, metavar="BENCH", help="a new folder, or a benchmark to extend or resume")
    b.set_defaults(func=run_build)
    i = bsub.add_parser("info", help="print one JSON object describing a benchmark")
    i.add_argument("bench", metavar="BENCH")
    i.add_argument("--arch", default=None, metavar="A", help="print this architecture's record instead")
    i.set_defaults(func=run_info)
    e = bsub.add_parser("export", help="compile one of the benchmark's architectures against its converged database")
    e.add_argument("bench", metavar="BENCH")
    e.add_argument("--arch", required=True, metavar="A")
    e.add_argument("--target", default="host", metavar="NAME|PATH", help="the benchmark's target (default host)")
    e.add_argument("--out", required=True, metavar="DIR", help="artifact directory (new or empty)")
    e.set_defaults(func=run_export)
    s = bsub.add_parser("score", help="score search or compare runs against the benchmark's true front")
    s.add_argument("bench", metavar="BENCH")
    s.add_argument("runs", nargs="+", metavar="DIR", help="search folders (result.json) or compare folders")
    s.add_argument("--oracle", required=True, metavar="table:CSV", help="the accuracy oracle, e.g. table:PATH")
    s.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")
    s.set_defaults(func=run_score)
    t = bsub.add_parser("estimates", help="write the measured architectures' recorded training-free estimates "
                        "as a table: CSV (a second accuracy oracle covering the whole benchmark)")
    t.add_argument("bench", metavar="BENCH")
    t.add_argument("--out", required=True, metavar="CSV", help="the CSV to write (arch,accuracy)")
    t.set_defaults(func=run_estimates)


def _int(name: str, text, minimum: int = 1) -> int | None:
    from cosearch.cli_args import positive_int

    return None if text is None else positive_int(name, text, minimum=minimum)


def _int_list(name: str, text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise CosearchError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise CosearchError(f"{name} must name at least one integer, got {text!r}")
    return vals


def run_build(args) -> int:
    from cosearch.cobench.build import BuildConfig, build, resolve_archs
    from cosearch.cobench.store import Convergence
    from cosearch.cli_args import space_settings
    from cosearch.space import create_space

    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    bad = [x for x in phases if x not in ("plan", "tune", "measure")]
    if bad or not phases:
        raise CosearchError(f"--phases: unknown {', '.join(bad) or '(none)'}; accepted: plan, tune, measure")
    sample = _int("--sample", args.sample)
    if args.all and sample:
        raise CosearchError("give --all or --sample N, not both")
    out = Path(args.out)
    extending = (out / "header.json").exists()
    if not (args.archs or args.table or sample or args.all or extending):
        raise CosearchError("give the architectures: --archs FILE, --table CSV, --sample N [--seed S] or --all")
    conv = Convergence(**{k: v for k, v in (("min_trials", _int("--min-trials", args.min_trials)),
                                            ("max_trials", _int("--max-trials", args.max_trials)),
                                            ("window", _int("--window", args.window))) if v is not None})
    kw = {k: v for k, v in (("chunk", _int("--chunk", args.chunk)), ("workers", _int("--workers", args.workers)))
          if v is not None}
    settings = space_settings(args.space_opt) if args.space_opt else {}
    cfg = BuildConfig(space=args.space, space_settings=settings, target=args.target,
                      seeds=_int_list("--tuning-seeds", args.tuning_seeds), convergence=conv, **kw)
    space = create_space(cfg.space, **cfg.space_settings)
    archs = resolve_archs(space, archs_file=args.archs, table=args.table, sample=sample,
                          seed=_int("--seed", args.seed, 0) or 0, all_archs=args.all)

    def say(msg: str) -> None:
        print(f"cosearch bench: {msg}", file=sys.stderr, flush=True)

    prog = build(out, cfg, archs, say=say, phases=phases, measure_limit=_int("--measure-limit", args.measure_limit))
    print(json.dumps(prog))
    return 0


def run_info(args) -> int:
    from cosearch.cobench.store import open_bench

    b = open_bench(args.bench)
    if args.arch is not None:
        a = b.entry(b.space(), args.arch)
        print(json.dumps({"arch": a.arch, "key": a.key, "source": a.source, "tasks": a.tasks, "plan_s": a.plan_s,
                          "measured": a.measured, "failed": a.failed}))
        return 0
    print(json.dumps(b.info()))
    return 0


def run_export(args) -> int:
    from cosearch.cobench.build import export_arch
    from cosearch.cobench.store import open_bench

    print(json.dumps(export_arch(open_bench(args.bench), args.arch, args.out, target=args.target)))
    return 0


def run_estimates(args) -> int:
    from cosearch.cobench.store import open_bench

    print(json.dumps(open_bench(args.bench).write_estimates(args.out)))
    return 0


def run_score(args) -> int:
    from cosearch.cobench.score import score_runs

    data = score_runs(args.bench, [Path(r) for r in args.runs], oracle=args.oracle)
    text = json.dumps(data, indent=1)
    if args.out:
        from cosearch.fsio import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0
