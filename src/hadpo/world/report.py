"""The demo's report: results.json, report.md (tables, checks, the world's bias knobs, pair statistics,
training summary) and PNG plots, all in one folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hadpo.evaluate.report import grouped_bars, lookup, plot_comparison, plt, save_figure

console = Console()

POPE_ROWS = [
    ("POPE random accuracy", "pope.random.accuracy", True),
    ("POPE popular accuracy", "pope.popular.accuracy", True),
    ("POPE adversarial accuracy", "pope.adversarial.accuracy", True),
    ("POPE adversarial F1", "pope.adversarial.f1", True),
    ("POPE adversarial precision", "pope.adversarial.precision", True),
    ("POPE adversarial recall", "pope.adversarial.recall", True),
    ("POPE random yes-ratio", "pope.random.yes_ratio", True),
    ("POPE adversarial yes-ratio", "pope.adversarial.yes_ratio", True),
]
# POPE at n question pairs per image (`pope_<n>`, the suite's pope_recall_per_image), where it was asked
RECALL_ROWS = [
    ("random accuracy", "random.accuracy"),
    ("adversarial accuracy", "adversarial.accuracy"),
    ("adversarial precision", "adversarial.precision"),
    ("recall", "adversarial.recall"),
    ("adversarial yes-ratio", "adversarial.yes_ratio"),
]
OTHER_ROWS = [
    ("CHAIRs", "chair.chair_s", True),
    ("CHAIRi", "chair.chair_i", True),
    ("SHR", "shr.shr", True),
    ("words / description", "shr.words_per_image", False),
    ("sentences / description", "shr.sentences_per_image", False),
    ("object coverage", "coverage", True),
    ("held-out colour accuracy", "heldout.color", True),
    ("held-out count accuracy", "heldout.count", True),
]


def recall_key(model: dict) -> str | None:
    """The summary's key of POPE at several question pairs per image (`pope_<n>`), None where it was not asked."""
    return next((key for key in model if re.fullmatch(r"pope_\d+", key)), None)


def rows(models: dict[str, dict]) -> list[tuple[str, str, bool]]:
    """The report's rows (label, path in a model's summary, shown as a percentage) for these models."""
    key = recall_key(next(iter(models.values()), {}))
    recall = (
        [] if key is None else [(f"POPE {key[5:]}/image {label}", f"{key}.{path}", True) for label, path in RECALL_ROWS]
    )
    return [*POPE_ROWS, *recall, *OTHER_ROWS]


def format_cell(value: float | None, percent: bool, sign: str = "") -> str:
    """A table cell: fractions as percentages with one decimal, "-" for a missing value."""
    return "-" if value is None else f"{100 * value if percent else value:{sign}.1f}"


def suite_shape(model: dict) -> dict:
    """A demo model summary in the evaluation reports' shape, for their plots."""
    return {"pope": {"splits": model["pope"]}, "chair": model["chair"], "shr": model["shr"]}


def plot_coverage(models: dict[str, dict], folder: Path) -> Path:
    """Object coverage and held-out colour / count accuracy per model (the skills HA-DPO must not cost)."""
    paths = ["coverage", "heldout.color", "heldout.count"]
    series = {
        name: [None if (v := lookup(model, p)) is None else 100 * v for p in paths] for name, model in models.items()
    }
    figure, ax = plt.subplots(figsize=(6, 4))
    grouped_bars(
        ax,
        ["object coverage", "held-out colour", "held-out count"],
        series,
        "Coverage and held-out questions (higher is better)",
        "%",
    )
    ax.set_ylim(0, 100)
    return save_figure(figure, folder / "coverage_heldout.png")


def plot_training(histories: dict[str, list[dict]], folder: Path) -> Path | None:
    """DPO loss, SFT loss and reward accuracy against the step, one line per run."""
    panels = [("loss/dpo", "DPO loss"), ("loss/sft", "auxiliary SFT loss"), ("rewards/accuracies", "reward accuracy")]
    if not any(key in entry for history in histories.values() for entry in history for key, _ in panels):
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5))
    for ax, (key, title) in zip(axes, panels):
        for name, history in histories.items():
            points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
            if points:
                ax.plot(*zip(*points), label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    return save_figure(figure, folder / "training.png")


def models_table(models: dict[str, dict], delta: tuple[str, str, str] = ("HA-DPO - base", "hadpo", "base")) -> str:
    """One column per model, every row of the suite, and `delta` (its title, then two of the models: after,
    before) as a last column of differences where both models are there."""
    names = list(models)
    title, after, before = delta
    compare = after in models and before in models
    header = "| metric | " + " | ".join(names) + (f" | {title} |" if compare else " |")
    lines = [header, "|---" * (len(names) + 1 + compare) + "|"]
    for label, path, percent in rows(models):
        cells = [format_cell(lookup(model, path), percent) for model in models.values()]
        if compare:
            ours, theirs = lookup(models[after], path), lookup(models[before], path)
            cells.append(format_cell(None if ours is None or theirs is None else ours - theirs, percent, "+"))
        lines.append(f"| {label}{' (%)' if percent else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_section(targets: dict[str, dict[str, bool]]) -> list[str]:
    """Which trained model meets which of issue 19's targets (world/checks.py `recipe_targets`)."""
    if not targets:
        return []
    names = list(next(iter(targets.values())))
    lines = ["## Recipe targets (issue 19)", "", "| target | " + " | ".join(targets) + " |"]
    lines.append("|---" * (len(targets) + 1) + "|")
    lines += [
        f"| {name} | " + " | ".join("met" if met[name] else "no" for met in targets.values()) + " |" for name in names
    ]
    return [*lines, ""]


def write_report(folder: Path, results: dict, histories: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (folder / "training_log.json").write_text(json.dumps(histories, indent=1) + "\n", encoding="utf-8")
    models = results["models"]
    plots = plot_comparison({name: suite_shape(m) for name, m in models.items()}, folder)
    plots.append(plot_coverage(models, folder))
    training_plot = plot_training(histories, folder)
    if training_plot:
        plots.append(training_plot)
    pairs = results["pairs"]
    checks = "\n".join(f"- {'met' if ok else '**not met**'}: {name}" for name, ok in results["checks"].items())
    training = "\n".join(
        f"- {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
        for name, m in results["training"].items()
    )
    lines = [
        f"# HA-DPO on the scene world (seed {results['seed']})",
        "",
        "A tiny LLaVA, pretrained on the world's web-like data, hallucinates the way real VLMs do (co-occurring "
        "objects in its descriptions, a yes-bias on objects of a present object's family). HA-DPO pairs built "
        "from its own descriptions, then DPO + auxiliary SFT, on the held-out eval split:",
        "",
        models_table(models),
        "",
        "Fractions are shown as percentages; POPE answers compare P(Yes) and P(No) after the question.",
        "",
        "## Checks (computed from the numbers above)",
        checks,
        "",
        *targets_section(results.get("targets", {})),
        f"POPE adversarial negatives that are an absent member of a present object's family (the co-occurrence "
        f"the split tests): {_share(results.get('pope_adversarial_negatives'))}.",
        "",
        "## The world's bias knobs",
        "```json",
        json.dumps(results["world"], indent=2),
        "```",
        "",
        "## Pairs",
        f"{pairs.get('images')} pairs-split images; {pairs['desc']} description-pair rows (each pair with its "
        f"style-consistent rewrites) and {pairs['qa']} QA pairs. Descriptions with a hallucination: "
        f"{_percent(pairs.get('description_hallucination_rate'))}; sentences: "
        f"{_percent(pairs.get('sentence_hallucination_rate'))}. Offline judge vs the world's own sentence truth: "
        f"{json.dumps(pairs.get('judge_agreement_with_world_truth'))}. Words per description pair (original "
        f"texts): chosen {format_cell(lookup(pairs, 'words.chosen'), False)}, rejected "
        f"{format_cell(lookup(pairs, 'words.rejected'), False)}.",
        "",
        "## Training (last logged values)",
        training,
        "",
        "## Plots",
        *[f"![{path.stem}]({path.name})" for path in plots],
        "",
        f"Stage times (s): {json.dumps(results['timings_s'])}; total {results['seconds']} s.",
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _share(counts: dict | None) -> str:
    if not counts or counts.get("share") is None:
        return "-"
    return f"{counts['family_members']} of {counts['negatives']} ({100 * counts['share']:.1f} %)"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


# --- console output ------------------------------------------------------------------------------------------


def print_models(models: dict[str, dict]) -> None:
    table = Table(title="Evaluation suite (world eval split)")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for label, path, percent in rows(models):
        table.add_row(
            label + (" %" if percent else ""), *[format_cell(lookup(m, path), percent) for m in models.values()]
        )
    console.print(table)


def print_pair_stats(stats: dict) -> None:
    pairs = stats["pairs"]
    rate = stats.get("description_hallucination_rate")
    console.print(
        f"   {stats['images']} images, descriptions with a hallucination: "
        f"{'-' if rate is None else f'{rate:.1%}'}; pairs: {pairs['desc']} description + {pairs['qa']} QA"
    )
