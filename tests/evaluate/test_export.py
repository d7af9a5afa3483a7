"""Exports in lmms-eval's and VLMEvalKit's result layouts carry the fields those tools write and read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hadpo.cli import main
from hadpo.evaluate.export import write_exports
from hadpo.evaluate.suite import run_chair, score_mme_folder, score_pope_answers

DATA = Path(__file__).parent / "data"


def _table(path, delimiter):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


@pytest.fixture
def results_folder(tmp_path):
    out = tmp_path / "eval"
    score_pope_answers(
        DATA / "pope" / "expected_adversarial.jsonl",
        DATA / "pope" / "answers_adversarial.jsonl",
        out,
        model="org/model-7b",
    )
    score_mme_folder(DATA / "mme" / "results", out)
    run_chair(
        DATA / "chair" / "captions.json",
        DATA / "chair" / "instances.json",
        out,
        DATA / "chair" / "reference_captions.json",
        several_per_image=True,  # the reference test's captions: some images have two
    )
    return out


def test_lmms_eval_results_file(results_folder):
    results = json.loads((results_folder / "results.json").read_text())
    [path] = write_exports(results_folder, ["lmms-eval"])
    assert path.parent == results_folder / "lmms-eval" / "org__model-7b" and path.name.endswith("_results.json")
    exported = json.loads(path.read_text())
    assert set(exported) >= {
        "results",
        "group_subtasks",
        "configs",
        "versions",
        "n-shot",
        "higher_is_better",
        "n-samples",
        "config",
        "date",
    }
    pope = exported["results"]["pope_adv"]
    assert pope["alias"] == "pope_adv" and pope["pope_accuracy_stderr,none"] == "N/A"
    adversarial = results["pope"]["splits"]["adversarial"]
    for ours, theirs in [
        ("accuracy", "pope_accuracy"),
        ("precision", "pope_precision"),
        ("recall", "pope_recall"),
        ("f1", "pope_f1_score"),
        ("yes_ratio", "pope_yes_ratio"),
    ]:
        assert pope[f"{theirs},none"] == adversarial[ours]
    assert exported["group_subtasks"]["pope_full"] == ["pope_adv"]
    assert exported["n-samples"]["pope_adv"] == {"original": 360, "effective": 360}
    mme = exported["results"]["mme"]
    assert (mme["mme_perception_score,none"], mme["mme_cognition_score,none"]) == (
        results["mme"]["perception"],
        results["mme"]["cognition"],
    )
    chair = exported["results"]["coco_cap_chair"]  # lmms-eval reports CHAIR in percent
    assert chair["coco_cap_chair_s,none"] == pytest.approx(100 * results["chair"]["chair_s"])
    assert exported["higher_is_better"]["coco_cap_chair"] == {
        "coco_cap_chair_s": False,
        "coco_cap_chair_i": False,
        "coco_cap_recall": True,
    }
    assert exported["configs"]["mme"]["metadata"]["protocol"] == "reference"


def test_vlmevalkit_prediction_and_score_files(results_folder):
    results = json.loads((results_folder / "results.json").read_text())
    paths = {p.name: p for p in write_exports(results_folder, ["vlmevalkit"])}
    assert set(paths) == {
        "org__model-7b_POPE_score.csv",
        "org__model-7b_POPE.tsv",
        "org__model-7b_MME_score.csv",
        "org__model-7b_MME.tsv",
    }
    score = _table(paths["org__model-7b_POPE_score.csv"], ",")
    assert score[0] == ["split", "Overall", "acc", "precision", "recall"]
    assert [row[0] for row in score[1:]] == ["Overall", "adversarial"]
    adversarial = results["pope"]["splits"]["adversarial"]
    assert float(score[2][1]) == pytest.approx(100 * adversarial["f1"])  # VLMEvalKit's "Overall" column is F1
    assert float(score[1][2]) == pytest.approx(100 * adversarial["accuracy"])
    predictions = _table(paths["org__model-7b_POPE.tsv"], "\t")
    assert predictions[0] == ["index", "question", "answer", "category", "image_path", "prediction"]
    assert len(predictions) == 361 and predictions[1][2] in ("Yes", "No") and predictions[1][3] == "adversarial"
    mme = _table(paths["org__model-7b_MME_score.csv"], ",")
    assert mme[0][:2] == ["perception", "reasoning"] and len(mme[0]) == 16
    assert float(mme[1][0]) == results["mme"]["perception"]
    assert len(_table(paths["org__model-7b_MME.tsv"], "\t")) == 1 + sum(
        s["questions"] for s in results["mme"]["subtasks"].values()
    )


def test_cli_export_and_bad_format(tmp_path, capsys):
    out = tmp_path / "mme"
    assert (
        main(
            [
                "eval",
                "mme",
                "--results",
                str(DATA / "mme" / "results"),
                "--out",
                str(out),
                "--export",
                "lmms-eval",
                "vlmevalkit",
            ]
        )
        == 0
    )
    assert list((out / "lmms-eval" / "model").glob("*_results.json"))
    assert (out / "vlmevalkit" / "model" / "model_MME_score.csv").exists()
    assert (
        main(
            [
                "eval",
                "pope",
                "score",
                "--questions",
                str(DATA / "pope" / "expected_adversarial.jsonl"),
                "--answers",
                str(DATA / "pope" / "answers_adversarial.jsonl"),
                "--export",
                "lmms-eval",
            ]
        )
        != 0
    )
    assert "--export needs --out" in capsys.readouterr().err
