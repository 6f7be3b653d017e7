"""``cosearch`` command line.

Each verb lives in ``cosearch/commands/<verb>.py`` exposing
``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
Heavy imports (torch, TVM) happen inside ``func``, so ``cosearch --help`` and
bad-input errors are fast. ``CosearchError`` -> one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["targets", "tune", "run", "estimate", "search", "compare", "train", "bench"]


def load_plugins() -> None:
    """Import modules named in ``COSEARCH_PLUGINS`` (comma-separated) so they can
    register their own spaces/estimators."""
    from cosearch.errors import CosearchError

    for mod in filter(None, (m.strip() for m in os.environ.get("COSEARCH_PLUGINS", "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise CosearchError(f"COSEARCH_PLUGINS names {mod!r}, which cannot be imported: {e}") from e


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosearch",
        description="Compiler-integrated co-search of neural architectures and TVM schedules.",
    )
    from cosearch import __version__

    parser.add_argument("--version", action="version", version=f"cosearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"cosearch.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cosearch.errors import CosearchError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load_plugins()
        rc = args.func(args)
    except CosearchError as e:
        print(f"cosearch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cosearch {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
