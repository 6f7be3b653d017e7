"""``cosearch estimate``: score architectures with a training-free (or table) estimator.

    cosearch estimate --space nb201 --estimator tenas (--archs FILE | --sample N --seed S) --out scores.csv

Writes ``scores.csv`` (``arch,score,<one column per signal>,seconds``; a signal an
architecture does not have, e.g. ``linear_regions`` of a GELU network, is ``nan``,
never 0) and ``scores.config.json`` (resolved config) next to it, both atomically.
The config's ``applied`` records what was computed: fidelities, whether scores are
absolute / population-relative, and for learned combinations whether the learned
model was used or, on a space they were not fit on, the rank fallback and its signals.
"""

from __future__ import annotations

import argparse

from cosearch.errors import CosearchError


def register(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="score architectures with a training-free estimator (see --estimator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", required=True, help="search space name (e.g. nb201)")
    from cosearch.estimate import ESTIMATORS

    p.add_argument("--estimator", required=True,
                   help=f"one of {', '.join(ESTIMATORS.names())}, or table:PATH (CSV with arch,accuracy)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--archs", metavar="FILE", help="one arch per line; blank lines and '#' comments ignored")
    src.add_argument("--sample", type=int, metavar="N", help="score N architectures sampled with --seed")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and for the estimator (default 0)")
    p.add_argument("--out", required=True, help="output CSV path")
    p.set_defaults(func=run)


def read_archs(path: str) -> list[str]:
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as e:
        raise CosearchError(f"cannot read --archs file {path!r}: {e.strerror or e}") from None
    archs = [ln.split("#", 1)[0].strip() for ln in lines]
    archs = [a for a in archs if a]
    if not archs:
        raise CosearchError(f"--archs file {path!r} lists no architectures")
    return archs


def run(args) -> int:
    import json
    import os
    import sys

    import numpy as np

    from cosearch.estimate import create_estimator
    from cosearch.fsio import atomic_write_text
    from cosearch.space import create_space

    if args.sample is not None and args.sample <= 0:
        raise CosearchError(f"--sample must be a positive integer, got {args.sample}")
    if args.seed is None or args.seed < 0:
        raise CosearchError(f"--seed must be a non-negative integer, got {args.seed}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CosearchError(f"--out directory {out_dir!r} does not exist")

    space = create_space(args.space)
    if args.archs is not None:
        raw = read_archs(args.archs)
        archs = []
        for i, a in enumerate(raw, start=1):
            try:
                archs.append(space.canonical(a))
            except CosearchError as e:
                raise CosearchError(f"{args.archs}: arch #{i}: {e}") from None
    else:
        rng = np.random.default_rng(args.seed)
        archs = [space.sample(rng) for _ in range(args.sample)]
    estimator = create_estimator(args.estimator, seed=args.seed)

    ests = estimator.estimate_many(space, archs)
    signal_names: list[str] = []
    for e in ests:
        signal_names += [k for k in e.signals if k not in signal_names]
    rows = [",".join(["arch", "score", *signal_names, "seconds"])]
    for e in ests:
        vals = [repr(float(e.signals.get(k, float("nan")))) for k in signal_names]
        rows.append(",".join([e.arch, repr(float(e.score)), *vals, f"{e.seconds:.4f}"]))
    config = {
        "command": "estimate",
        "argv": sys.argv[1:],
        "space": space.config(),
        "estimator": estimator.config(),
        "applied": estimator.applied(space, ests),
        "archs": args.archs,
        "sample": args.sample,
        "seed": args.seed,
        "n_archs": len(archs),
        "out": os.path.abspath(args.out),
        "total_seconds": sum(e.seconds for e in ests),
    }
    base, _ = os.path.splitext(args.out)
    atomic_write_text(base + ".config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    atomic_write_text(args.out, "\n".join(rows) + "\n")
    print(f"wrote {len(ests)} estimates to {args.out} ({estimator.name}, {config['total_seconds']:.1f} s)")
    return 0
