"""`hadpo` command line: one sub-command per stage. Each wing registers its verbs from its own module here;
library modules never import from `hadpo.cli`. Verbs from outside the toolkit (the scene world's `world` and
`demo`) are found through the `hadpo.cli` entry-point group, so the toolkit never imports them."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from hadpo.cli import eval, models, pairs, report, train
from hadpo.records import RecordError

WINGS = [pairs, train, eval, report, models]
ENTRY_POINTS = "hadpo.cli"  # each entry point names a `register(subparsers)` function


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hadpo", description="Hallucination-Aware DPO for vision-language models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for wing in WINGS:
        wing.register(subparsers)
    for entry_point in entry_points(group=ENTRY_POINTS):
        entry_point.load()(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (RecordError, ValueError, FileNotFoundError) as error:
        # Bad input ends in one clear line, not a traceback.
        print(f"hadpo: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
