"""The demo's signature across seeds: run `hadpo demo` for each seed (or read finished runs) and print one
markdown table of base -> HA-DPO figures and the checks met.

    python benchmarks/demo_seeds.py --seeds 0 1 2              # runs the demos (base models cached)
    python benchmarks/demo_seeds.py --seeds 0 1 2 --summarize  # only reads runs/demo/seed*/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hadpo.world.demo import run_demo
from hadpo.world.report import ROWS, format_cell, lookup

# The rows of the demo report that tell the signature, by their path in results.json.
FIGURES = [row for row in ROWS if row[1] in {
    "pope.random.accuracy", "pope.adversarial.accuracy", "pope.adversarial.yes_ratio", "chair.chair_s", "shr.shr",
    "shr.words_per_image", "coverage", "heldout.color", "heldout.count"}]


def table(results: list[dict]) -> str:
    lines = ["| figure | " + " | ".join(f"seed {r['seed']}: base -> HA-DPO" for r in results) + " |",
             "|---" * (len(results) + 1) + "|"]
    for label, path, percent in FIGURES:
        cells = []
        for r in results:
            before, after = (lookup(r["models"][name], path) for name in ("base", "hadpo"))
            cells.append(f"{format_cell(before, percent)} -> {format_cell(after, percent)}")
        lines.append(f"| {label}{' (%)' if percent else ''} | " + " | ".join(cells) + " |")
    met = [f"{sum(r['checks'].values())} / {len(r['checks'])}" for r in results]
    lines.append("| checks met | " + " | ".join(met) + " |")
    lines.append("| demo wall time (s; includes pretraining when the base was not cached) | " + " | ".join(str(r["seconds"]) for r in results) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--summarize", action="store_true", help="read finished runs instead of running")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        path = Path(args.runs_dir) / "demo" / f"seed{seed}" / "results.json"
        results.append(json.loads(path.read_text()) if args.summarize else run_demo(args.config, seed, args.runs_dir))
    print(table(results))


if __name__ == "__main__":
    main()
