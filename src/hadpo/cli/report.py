"""`hadpo report BEFORE AFTER`: a side-by-side table of two evaluations with deltas, and comparison plots."""

from __future__ import annotations

from pathlib import Path

from hadpo.files import check_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="compare two evaluations (results.json): table with deltas + plots")
    parser.add_argument("before", help="results.json (or its folder) of the model before")
    parser.add_argument("after", help="results.json (or its folder) of the model after")
    parser.add_argument("--out", help="folder for comparison.md and the PNG plots (default: comparison/ beside AFTER)")
    parser.set_defaults(func=_report)


def _report(args) -> int:
    from hadpo.evaluate.suite import compare  # deferred: the evaluation suite imports torch and matplotlib

    after = Path(args.after)
    out = check_dir(args.out or (after if after.is_dir() else after.parent) / "comparison", "--out")
    print(compare(args.before, args.after, out), end="")
    print(f"plots and comparison.md in {out}")
    return 0
