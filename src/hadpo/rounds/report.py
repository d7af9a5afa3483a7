"""rounds.json, rounds.md and rounds.png of a chain: one row per round (0 = the base; the same-steps baseline last
when it ran) with its evaluation (POPE per split with precision, recall and yes-ratio; CHAIRs, SHR, words,
coverage, held-out types where the data has them), its pairs (how many, and how often the descriptions they
came from hallucinated) and its training (steps, seconds), and a plot of the headline metrics against the round.
Rewritten after every round, so a long chain shows its progress."""

from __future__ import annotations

import json
from pathlib import Path

from hadpo.evaluate.report import lookup, plt, save_figure
from hadpo.files import write_json_atomic

POPE_COLUMNS = (("accuracy", "acc"), ("precision", "prec"), ("recall", "rec"), ("yes_ratio", "yes"))
# (header, key path in a row, shown as a percentage)
HEADLINE = [
    ("sampled descriptions: hallucinated sentences (%)", "pairs.sentence_hallucination_rate", True),
    ("pairs desc", "pairs.pairs.desc", False),
    ("pairs QA", "pairs.pairs.qa", False),
    ("POPE adv. acc (%)", "eval.pope.adversarial.accuracy", True),
    ("POPE adv. recall (%)", "eval.pope.adversarial.recall", True),
    ("POPE adv. yes (%)", "eval.pope.adversarial.yes_ratio", True),
    ("POPE random acc (%)", "eval.pope.random.accuracy", True),
    ("CHAIRs (%)", "eval.chair.chair_s", True),
    ("SHR (%)", "eval.shr.shr", True),
    ("words", "eval.shr.words_per_image", False),
    ("coverage (%)", "eval.coverage", True),
    ("training steps", "training.steps", False),
    ("training s", "training.seconds", False),
]
DESCRIPTION_COLUMNS = [
    ("CHAIRs (%)", "eval.chair.chair_s", True),
    ("CHAIRi (%)", "eval.chair.chair_i", True),
    ("SHR (%)", "eval.shr.shr", True),
    ("words", "eval.shr.words_per_image", False),
    ("sentences", "eval.shr.sentences_per_image", False),
    ("coverage (%)", "eval.coverage", True),
]
PAIRS_COLUMNS = [
    ("images described", "pairs.images", False),
    ("descriptions judged", "pairs.descriptions_judged", False),
    ("with a hallucination (%)", "pairs.description_hallucination_rate", True),
    ("sentences hallucinated (%)", "pairs.sentence_hallucination_rate", True),
    ("judge = ground truth (%)", "pairs.judge_agreement_with_ground_truth", True),
    ("desc pairs", "pairs.pairs.desc", False),
    ("QA pairs", "pairs.pairs.qa", False),
    ("steps", "training.steps", False),
    ("trainer s", "training.train_runtime_s", False),
    ("pairs stage s", "pairs.seconds", False),
    ("training stage s", "training.seconds", False),
]
# The plot: (label, key path, panel) with panel 0 = higher is better, 1 = lower is better.
PLOTTED = [
    ("POPE adversarial accuracy", "eval.pope.adversarial.accuracy", 0),
    ("POPE adversarial recall", "eval.pope.adversarial.recall", 0),
    ("POPE random accuracy", "eval.pope.random.accuracy", 0),
    ("object coverage", "eval.coverage", 0),
    ("CHAIRs", "eval.chair.chair_s", 1),
    ("SHR", "eval.shr.shr", 1),
]
# Round r's pairs come from round r-1's model: plotted at the model that sampled them.
SAMPLED = ("hallucinated sentences, the model's sampled descriptions", "pairs.sentence_hallucination_rate")


def cell(value, percent: bool) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.1f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def label(row: dict) -> str:
    if row["round"] == "baseline":
        return f"baseline ({lookup(row, 'training.steps')} steps on round 1's pairs)"
    return "0 (base)" if row["round"] == 0 else str(row["round"])


def table(rows: list[dict], columns: list[tuple[str, str, bool]]) -> list[str]:
    lines = ["| round | " + " | ".join(c[0] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        lines.append(f"| {label(row)} | " + " | ".join(cell(lookup(row, p), pct) for _, p, pct in columns) + " |")
    return lines


def pope_columns(rows: list[dict]) -> list[tuple[str, str, bool]]:
    splits = list(dict.fromkeys(s for row in rows for s in (lookup(row, "eval.pope") or {})))
    return [
        (f"{split} {short} (%)", f"eval.pope.{split}.{name}", True) for split in splits for name, short in POPE_COLUMNS
    ]


def heldout_columns(rows: list[dict]) -> list[tuple[str, str, bool]]:
    names = list(dict.fromkeys(s for row in rows for s in (lookup(row, "eval.heldout") or {})))
    return [(f"held-out {name} acc (%)", f"eval.heldout.{name}", True) for name in names]


def markdown(rows: list[dict]) -> str:
    last = max((row["round"] for row in rows if row["round"] != "baseline"), default=0)
    lines = [
        f"# Rounds: {last} round(s) of describe -> judge -> pairs -> train -> evaluate",
        "",
        "Round r samples descriptions of its images with round r-1's model (round 1: the base), builds pairs from "
        "them and trains from round r-1's model; its row evaluates the model it trained. Fractions in percent.",
        "",
        *table(rows, HEADLINE),
        "",
        "## POPE per split",
        "",
        *table(rows, pope_columns(rows)),
        "",
        "## Descriptions and held-out questions",
        "",
        *table(rows, DESCRIPTION_COLUMNS + heldout_columns(rows)),
        "",
        "## Pairs and training",
        "",
        *table(rows, PAIRS_COLUMNS),
        "",
        "![headline metrics against the round](rounds.png)",
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path | None:
    """The headline metrics against the round; the same-steps baseline as a dashed line of the same colour."""
    rounds = [row for row in rows if row["round"] != "baseline"]
    baseline = next((row for row in rows if row["round"] == "baseline"), None)
    if not rounds:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    titles = ("higher is better", "lower is better")
    for index, (name, key, panel) in enumerate(PLOTTED):
        points = [(row["round"], 100 * v) for row in rounds if (v := lookup(row, key)) is not None]
        if not points:
            continue
        colour = f"C{index}"
        axes[panel].plot(*zip(*points), marker="o", color=colour, label=name)
        if baseline is not None and (v := lookup(baseline, key)) is not None:
            axes[panel].axhline(100 * v, color=colour, linestyle="--", linewidth=1)
    sampled = [(row["round"] - 1, 100 * v) for row in rounds if (v := lookup(row, SAMPLED[1])) is not None]
    if sampled:
        axes[1].plot(*zip(*sampled), marker="s", color=f"C{len(PLOTTED)}", label=SAMPLED[0])
    for ax, title in zip(axes, titles):
        ax.set_title(f"{title} (dashed: same-steps baseline)" if baseline else title)
        ax.set_xlabel("model of round (0 = base)")
        ax.set_ylabel("%")
        ax.set_xticks([row["round"] for row in rounds])
        ax.legend(fontsize=8)
    return save_figure(figure, path)


def write_rounds_report(root: Path, rows: list[dict], baseline: dict | None) -> dict:
    """rounds.json, rounds.md and rounds.png in `root`; returns what rounds.json holds."""
    shown = rows + ([baseline] if baseline else [])
    results = {"rounds": rows, "baseline": baseline}
    write_json_atomic(root / "rounds.json", results)
    (root / "rounds.md").write_text(markdown(shown), encoding="utf-8")
    plot(shown, root / "rounds.png")
    return json.loads(json.dumps(results))
