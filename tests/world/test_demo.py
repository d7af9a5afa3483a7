"""The demo end to end on a very small world: every stage runs and the report has the issue's shape.
(What the numbers are on the full world is measured by `make demo`, not asserted here.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

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


def test_demo_runs_end_to_end_and_reports_the_issue_shape(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    results = run_demo(config, seed=3, runs_dir=tmp_path / "runs", ablate=True)
    folder = tmp_path / "runs" / "demo" / "seed3"
    saved = json.loads((folder / "results.json").read_text())
    assert saved["seed"] == 3 and saved == json.loads(json.dumps(results))
    assert set(saved["world"]) >= {"caption_noise", "qa_from_captions", "yes_bias"}
    assert {"desc", "qa"} <= set(saved["pairs"])
    assert set(saved["models"]) == {"base", "hadpo", "no_sft", "no_qa", "no_rewrites"}
    for model in saved["models"].values():
        assert set(model["pope"]) == {"random", "popular", "adversarial"}
        for metrics in model["pope"].values():
            assert set(metrics) == {"accuracy", "precision", "recall", "f1", "yes_ratio"}
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
        assert set(model["chair"]) == {"chair_s", "chair_i", "recall"}
        assert set(model["shr"]) == {"shr", "words_per_image", "sentences_per_image"}
        assert 0.0 <= model["coverage"] <= 1.0
        assert set(model["heldout"]) == {"color", "count"}
    # The trained model is saved where the evaluation read it (full fine-tuning: the run's folder).
    assert (folder / "train" / "hadpo" / "model.safetensors").exists()
    assert set(saved["pope_adversarial_negatives"]) == {"negatives", "family_members", "share"}
    assert set(saved["pairs"]["words"]) == {"chosen", "rejected"}
    assert {"ablation no_sft: descriptions collapse", "ablation no_qa: POPE adversarial accuracy stays <= 65 %"} <= set(
        saved["checks"]
    )
    report = (folder / "report.md").read_text()
    assert "| metric | base | hadpo |" in report and "## Checks" in report
    for plot in ("pope_metrics.png", "pope_yes_ratio.png", "hallucination.png", "coverage_heldout.png", "training.png"):
        assert (folder / plot).stat().st_size > 0, plot
    # Colour and count questions are held out: no QA pair asks one.
    pairs = [json.loads(line) for line in (folder / "pairs" / "pairs.jsonl").read_text().splitlines()]
    assert all(p["prompt"].startswith("Is there") for p in pairs if p["kind"] == "qa")


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
