"""`hadpo eval ...` and `hadpo report` end to end on the shared fixtures (tiny random LLaVA, four images)."""

from __future__ import annotations

import json
import logging
import re

from hadpo.cli import main
from hadpo.evaluate.pope import read_questions
from hadpo.records import Answer, read_jsonl


def test_pope_build_run_score_and_report(tiny_model_dir, image_records, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "pope"
    assert main(["eval", "pope", "build", "--annotations", str(image_records), "--out", str(out), "--seed", "1"]) == 0
    questions, _ = read_questions(out / "pope_random.jsonl")
    # Images 0 and 2 have 3 objects; the sampled set has 5 objects, so each image has only 2 absent ones:
    # 3 positives + 2 negatives per image (the missing negative is logged).
    assert len(questions) == 10 and {q.image for q in questions} == {"../images/0.png", "../images/2.png"}
    files = [str(out / f"pope_{split}.jsonl") for split in ("random", "popular", "adversarial")]
    common = ["--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]
    assert main(["eval", "pope", "run", "--questions", *files, *common, "--max-new-tokens", "2"]) == 0
    # The splits share their positives: later splits copy those answers instead of computing them again.
    reused = re.search(r"answers_popular_generate.jsonl: resuming, (\d+) of 10", caplog.text)
    assert reused and int(reused.group(1)) >= 6
    texts = {}
    for split in ("random", "popular", "adversarial"):
        questions = {q.question_id: q for q in read_questions(out / f"pope_{split}.jsonl")[0]}
        for answer in read_jsonl(out / f"answers_{split}_generate.jsonl", Answer):
            key = (questions[answer.question_id].image, questions[answer.question_id].text)
            assert texts.setdefault(key, answer.text) == answer.text
    results = json.loads((out / "results.json").read_text())
    assert set(results["pope"]["splits"]) == {"random", "popular", "adversarial"}
    assert (
        main(["eval", "pope", "run", "--questions", files[0], *common, "--mode", "logits", "--batch-size", "10"]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["pope"]["mode"] == "logits" and len(read_jsonl(out / "answers_random_logits.jsonl", Answer)) == 10
    # Both modes have run on the random split: their agreement is in the results.
    assert set(results["pope"]["mode_agreement"]["random"]) == {"compared", "agreed", "rate"}
    assert "| POPE mean f1 |" in (out / "results.md").read_text()

    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "pope",
                "score",
                "--questions",
                files[0],
                "--answers",
                str(out / "answers_random_logits.jsonl"),
                "--json",
            ]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored["n"] == 10 and set(scored) >= {"accuracy", "precision", "recall", "f1", "yes_ratio"}
    assert scored == results["pope"]["splits"]["random"]

    assert (
        main(
            [
                "eval",
                "pope",
                "agreement",
                "--generated",
                str(out / "answers_random_generate.jsonl"),
                "--logits",
                str(out / "answers_random_logits.jsonl"),
            ]
        )
        == 0
    )
    assert set(json.loads(capsys.readouterr().out)) == {"compared", "agreed", "rate"}

    after = tmp_path / "after"
    after.mkdir()
    changed = results | {"model": "after", "pope": results["pope"] | {"mean": {**results["pope"]["mean"], "f1": 0.9}}}
    (after / "results.json").write_text(json.dumps(changed))
    assert main(["report", str(out / "results.json"), str(after), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "| POPE mean f1 |" in table and "delta" in table
    assert (tmp_path / "cmp" / "pope_metrics.png").exists() and (tmp_path / "cmp" / "comparison.md").exists()


def test_chair_shr_mme_commands(tiny_model_dir, image_records, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "chair",
                "--annotations",
                str(image_records),
                "--model",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--max-new-tokens",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(read_jsonl(out / "captions_generate.jsonl", Answer)) == 4
    assert json.loads(capsys.readouterr().out)["skipped"] == 0

    descriptions = tmp_path / "descriptions.jsonl"
    descriptions.write_text(json.dumps({"image_id": "1", "text": "A red dog. A blue cup."}) + "\n")
    assert (
        main(
            [
                "eval",
                "shr",
                "--descriptions",
                str(descriptions),
                "--images",
                str(image_records),
                "--judge",
                "annotations",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["shr"] == 0.5  # image 1 has a red dog and no cup

    results = tmp_path / "mme_results"
    results.mkdir()
    (results / "existence.txt").write_text("a.jpg\tIs there a dog?\tYes\tYes\na.jpg\tIs there a cat?\tNo\tYes\n")
    assert main(["eval", "mme", "--results", str(results), "--out", str(out)]) == 0
    # acc 1/2, acc+ 0/1 -> 50.
    assert json.loads(capsys.readouterr().out)["perception"] == 50.0
    assert set(json.loads((out / "results.json").read_text())) == {"model", "chair", "shr", "mme"}

    # The official layout answered by the model: existence/ with images and .txt side by side.
    root = tmp_path / "MME" / "existence"
    root.mkdir(parents=True)
    for index in (0, 2):
        (root / f"{index}.png").write_bytes((image_records.parent / "images" / f"{index}.png").read_bytes())
        (root / f"{index}.txt").write_text(
            "Is there a knife? Please answer yes or no.\tYes\nIs there a dog? Please answer yes or no.\tNo\n"
        )
    assert (
        main(
            [
                "eval",
                "mme",
                "--root",
                str(tmp_path / "MME"),
                "--model",
                str(tiny_model_dir),
                "--mode",
                "logits",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert 0 <= scores["perception"] <= 200 and scores["subtasks"].keys() == {"existence"}
    assert len((out / "mme_results" / "existence.txt").read_text().splitlines()) == 4


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["eval", "pope", "score", "--questions", str(tmp_path / "missing.jsonl"), "--answers", "x"]) == 2
    assert "hadpo: error:" in capsys.readouterr().err
