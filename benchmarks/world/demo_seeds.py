"""The demo's signature across seeds: run `hadpo demo` for each seed (or read finished runs) and print one
markdown table of base -> HA-DPO figures and the checks met.

    python -m benchmarks.world.demo_seeds --seeds 0 1 2              # runs the demos (base models cached)
    python -m benchmarks.world.demo_seeds --seeds 0 1 2 --jobs 2     # two at a time, one torch thread each
    python -m benchmarks.world.demo_seeds --seeds 0 1 2 --summarize  # only reads runs/demo/seed*/results.json

The last column is the spread of the change over the seeds (smallest and largest HA-DPO - base).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hadpo.world.report import OTHER_ROWS, POPE_ROWS, format_cell, lookup

# The rows of the demo report that tell the signature, by their path in results.json.
FIGURES = [
    row
    for row in [*POPE_ROWS, *OTHER_ROWS]
    if row[1]
    in {
        "pope.random.accuracy",
        "pope.adversarial.accuracy",
        "pope.adversarial.yes_ratio",
        "chair.chair_s",
        "shr.shr",
        "shr.words_per_image",
        "coverage",
        "heldout.color",
        "heldout.count",
    }
]


def table(results: list[dict]) -> str:
    lines = [
        "| figure | " + " | ".join(f"seed {r['seed']}: base -> HA-DPO" for r in results) + " | change: min .. max |",
        "|---" * (len(results) + 2) + "|",
    ]
    for label, path, percent in FIGURES:
        cells, changes = [], []
        for r in results:
            before, after = (lookup(r["models"][name], path) for name in ("base", "hadpo"))
            cells.append(f"{format_cell(before, percent)} -> {format_cell(after, percent)}")
            if before is not None and after is not None:
                changes.append(after - before)
        spread = (
            f"{format_cell(min(changes), percent, '+')} .. {format_cell(max(changes), percent, '+')}"
            if changes
            else "-"
        )
        lines.append(f"| {label}{' (%)' if percent else ''} | " + " | ".join(cells) + f" | {spread} |")
    share = [lookup(r, "pope_adversarial_negatives.share") for r in results]
    lines.append(
        "| POPE adversarial negatives that are absent family members (%) | "
        + " | ".join(format_cell(s, True) for s in share)
        + " | |"
    )
    words = [(lookup(r, "pairs.words.chosen"), lookup(r, "pairs.words.rejected")) for r in results]
    lines.append(
        "| words per description pair: chosen / rejected | "
        + " | ".join(f"{format_cell(c, False)} / {format_cell(w, False)}" for c, w in words)
        + " | |"
    )
    met = [f"{sum(r['checks'].values())} / {len(r['checks'])}" for r in results]
    lines.append("| checks met | " + " | ".join(met) + " | |")
    lines.append(
        "| demo wall time (s; includes pretraining when the base was not cached) | "
        + " | ".join(str(r["seconds"]) for r in results)
        + " | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--summarize", action="store_true", help="read finished runs instead of running")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="demos run side by side, each a process with one torch thread (OMP_NUM_THREADS=1)",
    )
    args = parser.parse_args()
    if not args.summarize:
        run_seeds(args)
    print(table(read_results(args.runs_dir, args.seeds)))


def run_seeds(args, extra: list[str] = ()) -> None:
    """One demo per seed (`extra`: more `hadpo demo` arguments), `args.jobs` at a time, each in its own process
    with one torch thread; in this process when jobs is 1."""
    if args.jobs > 1:
        with ThreadPoolExecutor(args.jobs) as pool:
            codes = list(pool.map(lambda seed: run_process(args, seed, extra), args.seeds))
        if any(codes):
            sys.exit(f"a demo failed (exit codes {dict(zip(args.seeds, codes))}); see runs_dir/demo/seed<N>.log")
        return
    for seed in args.seeds:
        if subprocess.call(demo_command(args, seed, extra)):
            sys.exit(f"the demo of seed {seed} failed")


def read_results(runs_dir: str, seeds: list[int]) -> list[dict]:
    return [json.loads((Path(runs_dir) / "demo" / f"seed{seed}" / "results.json").read_text()) for seed in seeds]


def demo_command(args, seed: int, extra: list[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from hadpo.cli import main; sys.exit(main())",
        "demo",
        "--config",
        args.config,
        "--seed",
        str(seed),
        "--runs-dir",
        args.runs_dir,
        *extra,
    ]


def run_process(args, seed: int, extra: list[str] = ()) -> int:
    """One seed's demo as its own process (its console output in runs_dir/demo/seed<N>.log)."""
    log = Path(args.runs_dir) / "demo" / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        return subprocess.call(
            demo_command(args, seed, extra),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


if __name__ == "__main__":
    main()
