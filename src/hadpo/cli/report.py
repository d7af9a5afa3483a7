"""`hadpo report BEFORE AFTER`: a side-by-side table of two evaluations with deltas, and comparison plots."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="compare two evaluations (results.json): table with deltas + plots")
    parser.add_argument("before", help="results.json (or its folder) of the model before")
    parser.add_argument("after", help="results.json (or its folder) of the model after")
    parser.add_argument("--out", help="folder for comparison.md and the PNG plots (default: print the table only)")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from hadpo.evaluate.suite import compare

    print(compare(args.before, args.after, args.out), end="")
    return 0
