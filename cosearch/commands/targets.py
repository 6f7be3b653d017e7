"""`cosearch targets`: list the named targets and where each comes from;
`cosearch targets show NAME|PATH`: one target resolved, with its identity and machine key."""

from __future__ import annotations

import json

HELP = "list compilation targets (built-in and user *.json) or show one resolved"
DESCRIPTION = """\
Target names are looked up in $COSEARCH_TARGETS_DIR, then the user folder
($XDG_CONFIG_HOME/cosearch/targets, default ~/.config/cosearch/targets), then the built-in ones; the
first match wins. --target also takes a path to a .json file."""  # argparse re-flows it


def register(sub) -> None:
    p = sub.add_parser("targets", help=HELP, description=DESCRIPTION)
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list", help="list (default) or show")
    p.add_argument("target", nargs="?", help="for show: a target name or a path to a .json target file")
    p.set_defaults(func=run)


def run(args) -> int:
    from cosearch.compile.target import list_targets, load_target
    from cosearch.errors import CosearchError
    from cosearch.paths import target_search_path

    if args.action == "show":
        if not args.target:
            raise CosearchError("'targets show' needs a target name or a path to a .json file")
        spec = load_target(args.target)
        d = spec.to_dict()
        d["origin"] = spec.origin
        d["identity"] = spec.identity()
        d["machine_key"] = spec.machine_key()
        if spec.kind == "llvm":
            ok, why = spec.runs_here()
            d["runs_here"] = {"ok": ok, "why": why}
        print(json.dumps(d, indent=2))
        return 0
    if args.target:
        raise CosearchError(f"'targets list' takes no target, got {args.target!r}; use 'targets show {args.target}'")
    specs = list_targets()
    search = target_search_path()
    if specs:
        rows = [("NAME", "KIND", "MEASURE", "RUNS HERE", "SOURCE", "DESCRIPTION")]
        for s in specs:
            how = s.measure if s.rpc is None else f"rpc {s.rpc.tracker_host}:{s.rpc.tracker_port} key={s.rpc.key}"
            here = ("yes" if s.runs_here()[0] else "no") if s.kind == "llvm" else "no"
            desc = s.description.split(". ")[0]
            kind = s.kind + f" {s.target.get('mcpu') or s.target.get('arch') or s.target.get('mtriple') or ''}"
            rows.append((s.name, kind.strip(), how, here, s.origin, desc[:60]))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    else:
        print("(no targets found)")
    print("searched, first match wins: " + "; ".join(
        f"{origin} {d}{'' if d.is_dir() else ' (missing)'}" for origin, d in search))
    return 0
