"""The preference methods after HA-DPO side by side on the scene world (issue 19, docs/methods.md): for each seed,
`hadpo demo --methods ...` trains HA-DPO and every named method of the config's `methods` section from the same base
and pairs and evaluates each; this prints one table, a row per model, each cell the smallest .. largest value over
the seeds, and which of issue 19's targets each method meets on every seed.

    python -m benchmarks.world.methods --seeds 0 1 2 --methods all --jobs 2      # runs the demos
    python -m benchmarks.world.methods --seeds 0 1 2 --summarize                 # reads runs/demo/seed*/results.json

The bases are cached under runs/base (pretrain them first with `hadpo world pretrain --seed N` to keep the demo's
wall time its own). Each demo overwrites runs/demo/seed<N>/ (its log beside it, seed<N>.log).
"""

from __future__ import annotations

import argparse

from benchmarks.world.demo_seeds import read_results, run_seeds
from hadpo.world.report import format_cell, lookup

# (column, path in a model's results, shown as a percentage)
COLUMNS = [
    ("POPE adv. acc.", "pope.adversarial.accuracy", True),
    ("adv. precision", "pope.adversarial.precision", True),
    ("adv. recall", "pope.adversarial.recall", True),
    ("adv. yes-ratio", "pope.adversarial.yes_ratio", True),
    ("POPE random acc.", "pope.random.accuracy", True),
    ("3/image: adv. acc.", "pope_3.adversarial.accuracy", True),
    ("3/image: precision", "pope_3.adversarial.precision", True),
    ("3/image: recall", "pope_3.adversarial.recall", True),
    ("3/image: yes-ratio", "pope_3.adversarial.yes_ratio", True),
    ("3/image: random acc.", "pope_3.random.accuracy", True),
    ("held-out colour", "heldout.color", True),
    ("held-out count", "heldout.count", True),
    ("CHAIRs", "chair.chair_s", True),
    ("SHR", "shr.shr", True),
    ("words", "shr.words_per_image", False),
    ("coverage", "coverage", True),
]


def spread(values: list[float | None], percent: bool) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    low, high = min(values), max(values)
    return format_cell(low, percent) if low == high else f"{format_cell(low, percent)} .. {format_cell(high, percent)}"


def table(results: list[dict]) -> str:
    names = [name for name in results[0]["models"] if all(name in r["models"] for r in results)]
    header = ["model", *(label for label, _, _ in COLUMNS), "training s", "targets met (of 5, per seed)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in names:
        cells = [spread([lookup(r["models"][name], path) for r in results], pct) for _, path, pct in COLUMNS]
        seconds = spread([lookup(r, f"training.{name}.seconds") for r in results], False)
        targets = [r.get("targets", {}).get(name) for r in results]
        met = " / ".join("-" if t is None else str(sum(t.values())) for t in targets)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds} | {met} |")
    return "\n".join(lines)


def targets_table(results: list[dict]) -> str:
    """Per target, the methods that meet it on every seed."""
    first = results[0].get("targets", {})
    if not first:
        return ""
    names = list(first)
    lines = ["| target | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for target in next(iter(first.values())):
        cells = [f"{sum(r['targets'][name][target] for r in results)}/{len(results)}" for name in names]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["all"], help="names of the config's methods, or all")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--jobs", type=int, default=1, help="demos side by side, one torch thread each")
    parser.add_argument("--summarize", action="store_true", help="read finished runs instead of running")
    args = parser.parse_args()
    if not args.summarize:
        run_seeds(args, ["--methods", *args.methods])
    results = read_results(args.runs_dir, args.seeds)
    print(f"Seeds {', '.join(str(r['seed']) for r in results)}; each cell min .. max over the seeds.\n")
    print(table(results))
    print("\nSeeds on which each method meets each target:\n")
    print(targets_table(results))


if __name__ == "__main__":
    main()
