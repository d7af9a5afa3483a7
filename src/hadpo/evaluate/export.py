"""Write hadpo's results in the layouts of lmms-eval and VLMEvalKit (`hadpo eval ... --export lmms-eval
vlmevalkit`), so that hadpo's numbers can be read by those tools' own scripts and dashboards, beside theirs.

The numbers are hadpo's (the protocol in each section of results.json, by default the reference code's); only the
layout is the other tool's (docs/evaluation.md, "Exports"):
- lmms-eval: `OUT/lmms-eval/<model>/<date>_results.json` as its EvaluationTracker writes it: `results` per task
  (`"<metric>,none"` keys with `"<metric>_stderr,none": "N/A"` and an `alias`), `group_subtasks`, `configs`,
  `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`, `date`. Tasks: pope_random / pope_pop /
  pope_adv (metrics pope_accuracy, pope_precision, pope_recall, pope_f1_score, pope_yes_ratio, fractions), mme
  (mme_perception_score, mme_cognition_score), coco_cap_chair (coco_cap_chair_s, coco_cap_chair_i,
  coco_cap_recall, in percent as lmms-eval reports them).
- VLMEvalKit: `OUT/vlmevalkit/<model>/<model>_<dataset>.tsv` (its prediction file with PRED_FORMAT=tsv: index,
  question, answer, category, image_path, prediction) and `<model>_<dataset>_score.csv` as its POPE_rating /
  MME_rating write them (POPE: rows Overall + one per split, columns split, Overall (F1), acc, precision, recall,
  in percent; MME: one row, perception, reasoning and the 14 subtasks). VLMEvalKit has no CHAIR task.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

from hadpo.evaluate import mme, pope
from hadpo.files import read_json

FORMATS = ("lmms-eval", "vlmevalkit")
LMMS_POPE_TASKS = {"random": "pope_random", "popular": "pope_pop", "adversarial": "pope_adv"}
LMMS_POPE_METRICS = {
    "accuracy": "pope_accuracy",
    "precision": "pope_precision",
    "recall": "pope_recall",
    "f1": "pope_f1_score",
    "yes_ratio": "pope_yes_ratio",
}
LMMS_CHAIR_METRICS = {
    "chair_s": ("coco_cap_chair_s", False),
    "chair_i": ("coco_cap_chair_i", False),
    "recall": ("coco_cap_recall", True),
}


def model_name(results: dict) -> str:
    """A folder name for the model: its path or hub id with '/' as '__' (lmms-eval's sanitising)."""
    name = str(results.get("model") or "model").rstrip("/")
    return name.replace("/", "__").replace(":", "-") or "model"


def write_exports(out_dir: str | Path, formats: list[str] | tuple[str, ...]) -> list[Path]:
    """Export every section of `out_dir/results.json` in each of `formats`; returns the files written."""
    out_dir = Path(out_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; expected one of {', '.join(FORMATS)}")
    results = read_json(out_dir / "results.json")
    written = []
    if "lmms-eval" in formats:
        written.append(export_lmms_eval(results, out_dir / "lmms-eval"))
    if "vlmevalkit" in formats:
        written += export_vlmevalkit(results, out_dir / "vlmevalkit")
    return written


# --- lmms-eval ------------------------------------------------------------------------------------------------


def _lmms_task(metrics: dict[str, float], higher: dict[str, bool], n: int, protocol: str) -> tuple:
    row = {}
    for name, value in metrics.items():
        row[f"{name},none"] = value
        row[f"{name}_stderr,none"] = "N/A"
    config = {
        "output_type": "generate_until",
        "metric_list": [{"metric": name, "higher_is_better": higher[name]} for name in metrics],
        "metadata": {"version": 0.0, "scored_by": "hadpo", "protocol": protocol},
    }
    return row, config, n


def export_lmms_eval(results: dict, folder: Path) -> Path:
    tasks: dict[str, tuple] = {}
    groups: dict[str, list[str]] = {}
    pope_section = results.get("pope", {})
    for split, metrics in pope_section.get("splits", {}).items():
        task = LMMS_POPE_TASKS.get(split, f"pope_{split}")
        values = {LMMS_POPE_METRICS[k]: metrics[k] for k in LMMS_POPE_METRICS}
        higher = {name: True for name in values}
        tasks[task] = _lmms_task(values, higher, metrics["n"], metrics.get("protocol", "reference"))
        groups.setdefault("pope_full", []).append(task)
    if "mme" in results:
        section = results["mme"]
        values = {"mme_perception_score": section["perception"], "mme_cognition_score": section["cognition"]}
        questions = sum(s["questions"] for s in section.get("subtasks", {}).values())
        tasks["mme"] = _lmms_task(
            values, {name: True for name in values}, questions, section.get("protocol", "reference")
        )
    if "chair" in results:
        section = results["chair"]
        values = {name: 100 * section[key] for key, (name, _) in LMMS_CHAIR_METRICS.items()}
        higher = {name: better for name, better in LMMS_CHAIR_METRICS.values()}
        tasks["coco_cap_chair"] = _lmms_task(values, higher, section["captions"], section.get("protocol", "reference"))
    grouped = {task for members in groups.values() for task in members}
    now = datetime.now()
    document = {
        "results": {task: {"alias": task, **row} for task, (row, _, _) in tasks.items()},
        "group_subtasks": {**{task: [] for task in tasks if task not in grouped}, **groups},
        "configs": {task: {"task": task, **config} for task, (_, config, _) in tasks.items()},
        "versions": {task: 0.0 for task in tasks},
        "n-shot": {task: 0 for task in tasks},
        "higher_is_better": {
            task: {m["metric"]: m["higher_is_better"] for m in config["metric_list"]}
            for task, (_, config, _) in tasks.items()
        },
        "n-samples": {task: {"original": n, "effective": n} for task, (_, _, n) in tasks.items()},
        "config": {
            "model": results.get("model", ""),
            "model_args": f"pretrained={results.get('model', '')}",
            "scored_by": "hadpo",
        },
        "date": now.timestamp(),
    }
    path = folder / model_name(results) / f"{now.strftime('%Y%m%d_%H%M%S')}_results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# --- VLMEvalKit -----------------------------------------------------------------------------------------------


def _write_table(path: Path, header: list[str], rows: list[list], delimiter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _pooled(splits: dict[str, dict]) -> dict:
    """POPE metrics over the questions of all splits together (VLMEvalKit's "Overall" row)."""
    tp, fp, tn, fn, n = (sum(m[k] for m in splits.values()) for k in ("tp", "fp", "tn", "fn", "n"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "accuracy": (tp + tn) / n if n else 0.0, "precision": precision, "recall": recall}


def export_vlmevalkit(results: dict, folder: Path) -> list[Path]:
    name = model_name(results)
    folder = folder / name
    written = []
    splits = results.get("pope", {}).get("splits", {})
    if splits:
        rows = [["Overall", *(100 * v for v in _pooled(splits).values())]]
        rows += [[split, *(100 * v for v in _pooled({split: m}).values())] for split, m in splits.items()]
        written.append(
            _write_table(
                folder / f"{name}_POPE_score.csv", ["split", "Overall", "acc", "precision", "recall"], rows, ","
            )
        )
        predictions = []
        for split, files in results["pope"].get("files", {}).items():
            questions, _ = pope.read_questions(files["questions"])
            answers, _ = pope.read_answers(files["answers"], questions, missing="skip")  # as scored
            predictions += [
                [q.text, q.label.capitalize(), split, q.image, a or ""]
                for q, a in zip(questions, answers)
                if a is not None
            ]
        if predictions:
            written.append(
                _write_table(
                    folder / f"{name}_POPE.tsv",
                    ["index", "question", "answer", "category", "image_path", "prediction"],
                    [[i, *row] for i, row in enumerate(predictions)],
                    "\t",
                )
            )
    if "mme" in results:
        section = results["mme"]
        scores = {subtask: s["score"] for subtask, s in section.get("subtasks", {}).items()}
        row = {"perception": section["perception"], "reasoning": section["cognition"], **scores}
        written.append(_write_table(folder / f"{name}_MME_score.csv", list(row), [list(row.values())], ","))
        if section.get("results_dir"):
            rows, _ = mme.read_results(section["results_dir"], section.get("protocol", "reference"))
            predictions = [
                [r.question, r.answer.capitalize(), subtask, f"{subtask}/{r.image}", r.prediction]
                for subtask, subtask_rows in rows.items()
                for r in subtask_rows
            ]
            written.append(
                _write_table(
                    folder / f"{name}_MME.tsv",
                    ["index", "question", "answer", "category", "image_path", "prediction"],
                    [[i, *row] for i, row in enumerate(predictions)],
                    "\t",
                )
            )
    return written
