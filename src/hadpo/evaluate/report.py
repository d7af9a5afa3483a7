"""Evaluation reports: one `results.json` per evaluated model (a section per benchmark, merged as each
`hadpo eval` command finishes), its markdown table, and before/after comparisons with deltas and PNG plots.

results.json holds fractions (0.8613); the markdown shows ratios as percentages (86.13), as the papers do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from hadpo.files import read_json
from hadpo.records import RecordError  # noqa: E402

POPE_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
SECTIONS = ("pope", "chair", "shr", "mme")  # what `hadpo eval` writes into results.json
# (section, key path, label, shown as a percentage); the order is the order of the tables.
HEADLINE = [
    ("chair", "chair_s", "CHAIRs", True),
    ("chair", "chair_i", "CHAIRi", True),
    ("chair", "recall", "CHAIR recall", True),
    ("chair", "avg_length", "caption words", False),
    ("shr", "shr", "SHR", True),
    ("shr", "hallucinated_word_ratio", "SHR hallucinated words", True),
    ("shr", "sentences_per_image", "sentences / image", False),
    ("shr", "words_per_image", "words / image", False),
    ("shr", "failed_judgements", "failed judgements", False),
    *[("shr", f"ngram_unique_ratio.{n}", f"unique {n}-grams", True) for n in range(1, 5)],
    ("mme", "perception", "MME perception", False),
    ("mme", "cognition", "MME cognition", False),
]


def lookup(data: dict, path: str):
    """The value at a dotted key path, as written (None where a key is missing)."""
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(data: dict, path: str) -> float | None:
    value = lookup(data, path)
    return value if _is_number(value) else None


def metric_entries(results: dict) -> list[tuple[str, str, object, bool]]:
    """(label, key path, value as written, is_percentage) of every headline metric results.json holds, in table
    order."""
    rows = []
    pope = results.get("pope", {})
    splits = pope.get("splits", {}) if isinstance(pope.get("splits"), dict) else {}
    for split in [*splits, "mean"]:
        where = "pope.mean" if split == "mean" else f"pope.splits.{split}"
        source = lookup(results, where)
        for name in POPE_METRICS:
            if isinstance(source, dict) and name in source:
                rows.append((f"POPE {split} {name}", f"{where}.{name}", source[name], True))
    for split, agreement in (pope.get("mode_agreement") or {}).items():
        rate = agreement.get("rate") if isinstance(agreement, dict) else agreement
        rows.append((f"POPE {split} generate/logits agreement", f"pope.mode_agreement.{split}.rate", rate, True))
    for section, path, label, percent in HEADLINE:
        value = lookup(results.get(section, {}), path)
        if value is not None:
            rows.append((label, f"{section}.{path}", value, percent))
    for subtask, scores in (results.get("mme", {}).get("subtasks") or {}).items():
        score = scores.get("score") if isinstance(scores, dict) else scores
        rows.append((f"MME {subtask}", f"mme.subtasks.{subtask}.score", score, False))
    return rows


def headline_metrics(results: dict) -> list[tuple[str, float | None, bool]]:
    """(label, value, is_percentage) rows of the metrics a reader compares, in table order."""
    return [
        (label, value if _is_number(value) else None, percent) for label, _, value, percent in metric_entries(results)
    ]


def check_metrics(results: dict, source: str) -> None:
    """Every headline metric is a number, or null where it has none: a value such as "high" would show as "-"
    and compare as if the metric were missing."""
    for _, path, value, _ in metric_entries(results):
        if value is not None and not _is_number(value):
            raise RecordError(f"{source}: {path}: {value!r} is not a number (a metric is a number, or null)")


def _format(value: float | None, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}" if percent else (f"{value:.2f}" if isinstance(value, float) else str(value))


def results_markdown(results: dict) -> str:
    lines = [f"# Evaluation of {results.get('model') or 'model'}", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {label} | {_format(value, percent)} |" for label, value, percent in headline_metrics(results)]
    skipped = {
        section: data.get("skipped")
        for section, data in results.items()
        if isinstance(data, dict) and data.get("skipped")
    }
    if skipped:
        lines += ["", "Skipped records: " + ", ".join(f"{s} {n}" for s, n in skipped.items())]
    lines.append("")
    lines.append("Ratios in percent; POPE parsing: " + str(results.get("pope", {}).get("parsing", "-")) + ".")
    return "\n".join(lines) + "\n"


def update_results(folder: str | Path, section: str, data: dict, model: str = "") -> Path:
    """Merge one benchmark's section into `folder/results.json` and rewrite `folder/results.md`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    results = read_json(path) if path.exists() else {}
    if model:
        results["model"] = model
    results[section] = data
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "results.md").write_text(results_markdown(results), encoding="utf-8")
    return path


def load_results(path: str | Path, with_results: bool = True) -> dict:
    """A results.json (or the one in a folder); `with_results`: one without any benchmark section is an error."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = read_json(path)
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a hadpo results.json (expected a JSON object)")
    if with_results and not set(data) & set(SECTIONS):
        raise RecordError(f"{path}: no benchmark results in it (sections {', '.join(SECTIONS)}): nothing to compare")
    check_metrics(data, str(path))
    return data


def compare_markdown(before: dict, after: dict, names: tuple[str, str] = ("before", "after")) -> str:
    """A side-by-side table of every headline metric either result has, with after - before."""
    first = {label: (value, percent) for label, value, percent in headline_metrics(before)}
    second = {label: (value, percent) for label, value, percent in headline_metrics(after)}
    labels = list(first) + [label for label in second if label not in first]
    lines = [f"| metric | {names[0]} | {names[1]} | delta |", "|---|---:|---:|---:|"]
    for label in labels:
        a, percent = first.get(label, (None, second.get(label, (None, False))[1]))
        b, _ = second.get(label, (None, percent))
        delta = b - a if a is not None and b is not None else None
        sign = "+" if delta is not None and delta > 0 else ""
        lines.append(f"| {label} | {_format(a, percent)} | {_format(b, percent)} | {sign}{_format(delta, percent)} |")
    return "\n".join(lines) + "\n"


def grouped_bars(ax, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        xs = [g + index * width for g in range(len(groups))]
        # A metric a result lacks is left blank, not drawn as 0 (which would read as a perfect score).
        ax.bar(xs, [v if v is not None else math.nan for v in values], width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()


def save_figure(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else scale * value


def _percent(value: float | None) -> float | None:
    return _scaled(value, 100)


# (file, title, y label, [(section, key path, label)], scale): the plots beside POPE's.
SUMMARY_PLOTS = [
    (
        "hallucination.png",
        "Hallucination (lower is better)",
        "%",
        [("shr", "shr", "SHR"), ("chair", "chair_s", "CHAIRs"), ("chair", "chair_i", "CHAIRi")],
        100,
    ),
    (
        "length.png",
        "Description length",
        "words / sentences",
        [
            ("shr", "words_per_image", "words / image"),
            ("shr", "sentences_per_image", "sentences / image"),
            ("chair", "avg_length", "caption words"),
        ],
        1,
    ),
]


def plot_comparison(results: dict[str, dict], folder: str | Path) -> list[Path]:
    """PNG plots comparing named results ({"before": ..., "after": ...}): POPE metrics per split, yes-ratio,
    SHR / CHAIR, and description length. A plot is drawn only when some result has its data."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(figure, name):
        written.append(save_figure(figure, folder / name))

    splits = list(dict.fromkeys(s for r in results.values() for s in r.get("pope", {}).get("splits", {})))
    if splits:
        figure, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), squeeze=False)
        for ax, split in zip(axes[0], splits):
            series = {
                name: [_percent(_number(r.get("pope", {}), f"splits.{split}.{m}")) for m in POPE_METRICS[:4]]
                for name, r in results.items()
            }
            grouped_bars(ax, list(POPE_METRICS[:4]), series, f"POPE {split}", "%")
        save(figure, "pope_metrics.png")
        figure, ax = plt.subplots(figsize=(6, 4))
        series = {
            name: [_percent(_number(r.get("pope", {}), f"splits.{s}.yes_ratio")) for s in splits]
            for name, r in results.items()
        }
        grouped_bars(ax, splits, series, "POPE yes-ratio (50 % = balanced)", "% answered yes")
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        save(figure, "pope_yes_ratio.png")
    for filename, title, ylabel, wanted, scale in SUMMARY_PLOTS:
        present = [
            (s, p, label)
            for s, p, label in wanted
            if any(_number(r.get(s, {}), p) is not None for r in results.values())
        ]
        if present:
            figure, ax = plt.subplots(figsize=(6, 4))
            series = {
                name: [_scaled(_number(r.get(s, {}), p), scale) for s, p, _ in present] for name, r in results.items()
            }
            grouped_bars(ax, [label for _, _, label in present], series, title, ylabel)
            save(figure, filename)
    return written
