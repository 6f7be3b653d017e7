"""`cosearch compare`: joint vs sequential (vs brute) at the same budget, each on its own
copy of the starting schedule database; see docs/search.md."""

from __future__ import annotations

import sys
from pathlib import Path



def register(sub) -> None:
    from cosearch.commands.search import add_search_options

    p = sub.add_parser("compare", help="compare search strategies at the same budget",
                       description="Runs each strategy with the same budget and reference point, each on its own "
                       "copy of the starting schedule database; writes DIR/compare.json and a report.")
    add_search_options(p)
    p.add_argument("--strategies", default="joint,sequential", metavar="LIST", help="comma-separated (default joint,sequential)")
    p.add_argument("--proxy", default=None, metavar="P", help="sequential's proxy: flops (default) | untuned")
    p.add_argument("--subset", default=None, metavar="N", help="brute: subset size")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from cosearch.commands.search import build_config, parallel_of
    from cosearch.search import compare

    strategies = compare.parse_strategies(args.strategies)
    cfg, _ = build_config(args, strategy=strategies[0])
    data = compare.run_compare(cfg, strategies, Path(args.out), schedules=args.schedules,
                               progress=not args.no_progress, parallel=parallel_of(args))
    report = None
    try:
        from cosearch.search.report import write_compare_report

        report = write_compare_report(Path(args.out))
    except Exception as e:  # noqa: BLE001 - compare.json stands without its report
        print(f"cosearch compare: warning: report failed: {e}", file=sys.stderr)
    print(compare.summary_text(Path(args.out), data, report))
    return 0
