"""The demo end to end on a very small world: every number of its report comes from the files its stages left,
and its log names every stage; the ablations (slow) each change one thing. (What the numbers are on the full
world is measured by `make demo`, not asserted here.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hadpo.cli import main
from hadpo.evaluate.chair import evaluate_chair
from hadpo.evaluate.pope import score_pope
from hadpo.world.checks import ablation_checks, signature_checks
from hadpo.world.demo import load_demo_config, run_demo

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = {
    "pairs_recipe": str(CONFIGS / "pairs" / "world.yaml"),
    "train_recipe": str(CONFIGS / "world_hadpo.yaml"),
    # pretraining holds 256 pretrain images out to check existence answers, and needs as many to train on
    "world": {"splits": {"pretrain": 520, "pairs": 16, "eval": 16}},
    "pretrain": {
        "vision_steps": 20,
        "lm_batch": 4,
        "warmup_steps": 2,
        "stages": [
            {"name": "captions", "steps": 5, "brief_share": 1.0, "qa_turns": 1},
            {"name": "web", "steps": 10, "from_caption": True},
        ],
    },
    "pairs": {"describe": {"per_image": 1, "max_new_tokens": 24}},
    "train": {"max_steps": 3, "per_device_train_batch_size": 2, "logging_steps": 1, "disable_tqdm": True},
    "eval": {"pope_images": 8, "pope_per_image": 1, "max_new_tokens": 24},
}


def _small_config(tmp_path: Path) -> Path:
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    return config


def test_the_demo_end_to_end_reports_what_its_files_hold(tmp_path, capfd, monkeypatch):
    """`hadpo demo` on a very small world, as a user runs it with its output in a log: every number of the report
    is what the standalone tools compute from the files the stages left, the trained model is another model
    than the base, and the log names every stage in plain lines (no bar redraws)."""
    monkeypatch.delenv("HADPO_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    runs = tmp_path / "runs"
    assert main(["demo", "--config", str(_small_config(tmp_path)), "--seed", "3", "--runs-dir", str(runs)]) == 0
    log = "".join(capfd.readouterr())
    folder = runs / "demo" / "seed3"
    results = json.loads((folder / "results.json").read_text())
    base, hadpo = results["models"]["base"], results["models"]["hadpo"]

    # POPE: each split's metrics are the scores of the answer file on disk against its question file.
    for name, model in (("base", base), ("hadpo", hadpo)):
        for split, metrics in model["pope"].items():
            answers = folder / "eval" / name / f"answers_{split}_logits.jsonl"
            rescored = score_pope(folder / "questions" / f"pope_{split}.jsonl", answers, missing="skip")
            assert metrics == {k: pytest.approx(rescored[k]) for k in metrics}, (name, split)
        # CHAIR and coverage: the model's descriptions scored again by `hadpo eval chair`'s code.
        chair = evaluate_chair(folder / "eval" / name / "descriptions.jsonl", results_images(runs), protocol="hadpo")
        assert (model["chair"]["chair_s"], model["coverage"]) == (pytest.approx(chair.chair_s), chair.recall)

    # The pairs the report counts are the rows of pairs.jsonl; colour and count questions stay held out.
    pairs = [json.loads(line) for line in (folder / "pairs" / "pairs.jsonl").read_text().splitlines()]
    kinds = {kind: sum(p["kind"] == kind for p in pairs) for kind in ("desc", "qa")}
    assert (results["pairs"]["desc"], results["pairs"]["qa"]) == (kinds["desc"], kinds["qa"]) and kinds["qa"] > 0
    assert all(p["prompt"].startswith("Is there") and p["chosen"] != p["rejected"] for p in pairs if p["kind"] == "qa")

    # Training ran its 3 steps and changed the weights the evaluation then read.
    assert results["training"]["hadpo"]["steps"] == 3
    trained = load_file(folder / "train" / "hadpo" / "model.safetensors")
    original = load_file(Path(results["base_model"]) / "model.safetensors")
    changed = [k for k in original if k in trained and not torch.equal(original[k], trained[k])]
    assert changed and set(original) == set(trained)

    # The report shows these numbers; the checks are computed from them.
    report = (folder / "report.md").read_text()
    adversarial = f"| POPE adversarial accuracy (%) | {100 * base['pope']['adversarial']['accuracy']:.1f} | "
    assert adversarial + f"{100 * hadpo['pope']['adversarial']['accuracy']:.1f} |" in report
    assert results["checks"] == signature_checks(base, hadpo)
    for plot in ("pope_metrics.png", "pope_yes_ratio.png", "hallucination.png", "coverage_heldout.png", "training.png"):
        assert (folder / plot).stat().st_size > 0, plot

    # The log, written to a file: every stage by name, progress as plain lines.
    for number, stage in enumerate(
        ["world (seed 3)", "evaluate the base", "HA-DPO pairs", "HA-DPO training", "evaluate the trained"], 1
    ):
        assert re.search(rf"^{number}/5 {re.escape(stage)}", log, re.MULTILINE), stage
    assert "base: vision stage: done, 20 in" in log and "\r" not in log


def results_images(runs: Path) -> Path:
    """The world's eval split (images.jsonl) under `runs`."""
    [images] = (runs / "world").glob("*/eval.jsonl")
    return images


@pytest.mark.slow
def test_the_ablations_each_change_one_thing(tmp_path):
    """`hadpo demo --ablate`: three more trainings, each without one part of HA-DPO, evaluated and checked."""
    results = run_demo(_small_config(tmp_path), seed=3, runs_dir=tmp_path / "runs", ablate=True)
    folder = tmp_path / "runs" / "demo" / "seed3"
    assert set(results["models"]) == {"base", "hadpo", "no_sft", "no_qa", "no_rewrites"}
    logs = json.loads((folder / "training_log.json").read_text())
    # no_sft: no SFT term logged (gamma 0); no_qa and no_rewrites train on other pairs than HA-DPO's.
    assert any("loss/sft" in e for e in logs["hadpo"]) and not any(e.get("loss/sft") for e in logs["no_sft"])
    no_rewrites = [json.loads(line) for line in (folder / "pairs_no_rewrites.jsonl").read_text().splitlines()]
    assert no_rewrites and all(p["rewrite_index"] == 0 for p in no_rewrites)
    assert ablation_checks(results["models"]).keys() <= results["checks"].keys()
    for name in ("no_sft", "no_qa", "no_rewrites"):
        assert (folder / "train" / name / "model.safetensors").exists(), name


def test_demo_config_sections_are_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: {}\nmodel: {}\n")
    with pytest.raises(ValueError, match="unknown section 'model'"):
        load_demo_config(bad)
    bad.write_text("eval: {pope_imgs: 3}\n")
    with pytest.raises(ValueError, match="pope_imgs"):
        load_demo_config(bad)
    # key=value overrides (`hadpo demo ... train.logps_reduction=sum`) go through the same checks
    demo = load_demo_config(None, 4, ["train.logps_reduction=sum", "eval.pope_images=20"])
    assert (demo.train, demo.eval.pope_images, demo.world.seed) == ({"logps_reduction": "sum"}, 20, 4)
    with pytest.raises(ValueError, match="did you mean 'pope_images'"):
        load_demo_config(None, None, ["eval.pope_imgs=3"])


def test_the_demo_recipes_are_the_yaml_files_in_configs(tmp_path, monkeypatch):
    from hadpo.config import load_config
    from hadpo.pairs.config import PairsConfig
    from hadpo.train.config import HADPOConfig

    monkeypatch.chdir(CONFIGS.parent)  # the recipe paths in configs/demo.yaml are relative to the repository
    demo = load_demo_config(CONFIGS / "demo.yaml")
    pairs = load_config(PairsConfig, demo.pairs_recipe, demo.pairs)
    assert (pairs.judge.kind, pairs.rewrite.kind, pairs.rewrite.k, pairs.qa.kinds) == (
        "annotations",
        "offline",
        3,
        ["existence"],
    )
    assert pairs.describe.max_new_tokens == 96 and pairs.qa.co_occurrence_per_image == 1
    assert (pairs.qa.short_answers.yes, pairs.qa.short_answers.no) == ("Yes.", "No.")
    paths = {"model_name_or_path": "m", "pairs": "p.jsonl", "sft_data": "s.jsonl", "output_dir": str(tmp_path)}
    train = load_config(HADPOConfig, demo.train_recipe, paths, demo.train)
    assert (train.finetuning, train.reference, train.beta, train.gamma, train.learning_rate) == (
        "full",
        "precomputed",
        0.1,
        0.5,
        2e-4,
    )
    assert train.data_mix == "1:3" and train.report_to == [] and train.use_cpu
