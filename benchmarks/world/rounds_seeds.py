"""Iterative rounds against the same-steps baseline, across seeds: run `hadpo demo --rounds N` for each seed (or
read finished chains) and print one markdown table per question the rounds must answer.

    python -m benchmarks.world.rounds_seeds --seeds 0 1 2 --rounds 3                # runs the chains, one after another
    python -m benchmarks.world.rounds_seeds --seeds 0 1 2 --rounds 3 --summarize    # only reads the finished chains
    python -m benchmarks.world.rounds_seeds --seeds 0 1 2 --rounds 3 --name refbase rounds.reference=base   # a variant
    python -m benchmarks.world.rounds_seeds --seeds 0 1 2 --rounds 3 --name refbase --baseline-from - \
        rounds.reference=base rounds.baseline=false     # a variant compared with the unnamed chains' baseline

Each chain is runs/demo/seed<N>-rounds[-<name>]/ and resumes where it stopped. Tables: the base, the same-steps
baseline (one round from the base on round 1's pairs, trained for all rounds' steps) and every round, with the
spread over the seeds of round N minus the baseline; the share of hallucinated sentences in the descriptions each
round sampled (round r samples with round r-1's model); and the issue's checks, per seed.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hadpo.world.report import format_cell, lookup
from hadpo.world.rounds import run_demo_rounds

FIGURES = [  # (label, path in a model's summary, percentage, lower is better)
    ("POPE adversarial accuracy (%)", "pope.adversarial.accuracy", True, False),
    ("POPE adversarial recall (%)", "pope.adversarial.recall", True, False),
    ("POPE adversarial yes-ratio (%)", "pope.adversarial.yes_ratio", True, None),
    ("POPE random accuracy (%)", "pope.random.accuracy", True, False),
    ("CHAIRs (%)", "chair.chair_s", True, True),
    ("SHR (%)", "shr.shr", True, True),
    ("words / description", "shr.words_per_image", False, None),
    ("object coverage (%)", "coverage", True, False),
    ("held-out colour accuracy (%)", "heldout.color", True, False),
    ("held-out count accuracy (%)", "heldout.count", True, False),
]


def models(chain: dict) -> dict[str, dict]:
    named = {("base" if row["round"] == 0 else f"r{row['round']}"): row["eval"] for row in chain["rounds"]}
    return {"base": named.pop("base"), "baseline": chain["baseline"]["eval"], **named}


def read_chain(folder: Path, baseline_from: Path | None) -> dict:
    """A chain's rounds.json; a variant run without its own baseline takes another chain's of the same seed
    (the same base and round 1 when the variant leaves round 1 alone, e.g. reference base)."""
    chain = json.loads((folder / "rounds.json").read_text())
    if chain.get("baseline") is None and baseline_from is not None:
        chain["baseline"] = json.loads((baseline_from / "rounds.json").read_text())["baseline"]
    return chain


def spread(values: list[float], percent: bool) -> str:
    return f"{format_cell(min(values), percent, '+')} .. {format_cell(max(values), percent, '+')}" if values else "-"


def comparison(chains: dict[int, dict]) -> str:
    last = f"r{max(row['round'] for row in next(iter(chains.values()))['rounds'])}"
    names = list(models(next(iter(chains.values()))))
    lines = [
        "| figure | "
        + " | ".join(f"seed {seed}: {' / '.join(names)}" for seed in chains)
        + f" | {last} - baseline: min .. max | {last} - base: min .. max |",
        "|---" * (len(chains) + 3) + "|",
    ]
    for label, path, percent, _ in FIGURES:
        cells, against_baseline, against_base = [], [], []
        for chain in chains.values():
            values = {name: lookup(model, path) for name, model in models(chain).items()}
            cells.append(" / ".join(format_cell(v, percent) for v in values.values()))
            if None not in (values[last], values["baseline"], values["base"]):
                against_baseline.append(values[last] - values["baseline"])
                against_base.append(values[last] - values["base"])
        lines.append(
            f"| {label} | {' | '.join(cells)} | {spread(against_baseline, percent)} | {spread(against_base, percent)} |"
        )
    steps = [
        " / ".join(
            ["-", str(chain["baseline"]["training"]["steps"])]
            + [str(r["training"]["steps"]) for r in chain["rounds"][1:]]
        )
        for chain in chains.values()
    ]
    lines.append("| training steps | " + " | ".join(steps) + " | | |")
    return "\n".join(lines)


def hallucination_shares(chains: dict[int, dict]) -> str:
    """Per seed: the hallucinated-sentence share of the descriptions each round sampled for its pairs (by the
    model before it); the comparison's SHR row is the same share in every model's greedy eval descriptions."""
    rounds = [row["round"] for row in next(iter(chains.values()))["rounds"][1:]]
    header = [f"round {r} (model {r - 1})" for r in rounds]
    lines = [
        "| seed | sampled descriptions, hallucinated sentences: " + " | ".join(header) + " | falling every round |",
        "|---" * (len(rounds) + 2) + "|",
    ]
    for seed, chain in chains.items():
        shares = [row["pairs"]["sentence_hallucination_rate"] for row in chain["rounds"][1:]]
        falling = all(later < earlier for earlier, later in zip(shares, shares[1:]))
        lines.append(f"| {seed} | " + " | ".join(format_cell(s, True) for s in shares) + f" | {falling} |")
    return "\n".join(lines)


def checks(chains: dict[int, dict]) -> str:
    lines = ["| seed | last round > baseline, POPE adv. acc | last round < baseline, CHAIRs | recall >= base - 5 |"]
    lines.append("|---|---|---|---|")
    for seed, chain in chains.items():
        named = models(chain)
        last = named[list(named)[-1]]
        adversarial = [lookup(m, "pope.adversarial.accuracy") for m in (last, named["baseline"])]
        chair = [lookup(m, "chair.chair_s") for m in (last, named["baseline"])]
        recall = [lookup(m, "pope.adversarial.recall") for m in (last, named["base"])]
        lines.append(
            f"| {seed} | {adversarial[0] > adversarial[1]} | {chair[0] < chair[1]} | {recall[0] >= recall[1] - 0.05} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--name", default="", help="a variant's name (its chains' folder suffix)")
    parser.add_argument("--summarize", action="store_true", help="read finished chains instead of running them")
    parser.add_argument(
        "--baseline-from",
        metavar="NAME",
        help="for chains run with rounds.baseline=false: the baseline of the chains named NAME ('-' = unnamed)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="demo config keys, e.g. rounds.reference=base"
    )
    args = parser.parse_args()
    overrides = [*args.overrides, *([f"rounds.name={args.name}"] if args.name else [])]
    if not args.summarize:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")  # each stage's progress
        for seed in args.seeds:
            run_demo_rounds(args.config, seed, args.runs_dir, args.rounds, overrides)

    def folder(seed: int, name: str) -> Path:
        return Path(args.runs_dir) / "demo" / f"seed{seed}-rounds{f'-{name}' if name and name != '-' else ''}"

    chains = {
        seed: read_chain(folder(seed, args.name), folder(seed, args.baseline_from) if args.baseline_from else None)
        for seed in args.seeds
    }
    print(comparison(chains), hallucination_shares(chains), checks(chains), sep="\n\n")


if __name__ == "__main__":
    main()
