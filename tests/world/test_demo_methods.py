"""`hadpo demo --methods`: named training variants trained beside HA-DPO from the same base and pairs, each
evaluated, with issue 19's recipe targets in results.json and report.md, on a very small world."""

from __future__ import annotations

import json

import pytest
import yaml
from test_demo import SMALL

from hadpo.world.demo import run_demo


def test_methods_train_beside_hadpo_and_report_their_targets(tmp_path):
    config = tmp_path / "demo.yaml"
    methods = {
        "mdpo": {"image_conditional_weight": 1.0, "anchor_weight": 1.0},
        "opa": {"warmup_sft_steps": 2},
        "unused": {"beta": 0.2},
    }
    config.write_text(
        yaml.safe_dump({**SMALL, "methods": methods, "eval": {**SMALL["eval"], "pope_recall_per_image": 2}})
    )
    results = run_demo(config, seed=3, runs_dir=tmp_path / "runs", methods=["mdpo", "opa"])
    assert set(results["models"]) == {"base", "hadpo", "mdpo", "opa"}
    assert set(results["targets"]) == {"hadpo", "mdpo", "opa"}
    assert all(len(targets) == 5 for targets in results["targets"].values())
    recall = "recall (2 questions per image) within 5 points of the base"  # judged on pope_2, the suite's setting
    for name, targets in results["targets"].items():
        before, after = (results["models"][m]["pope_2"]["adversarial"]["recall"] for m in ("base", name))
        assert targets[recall] == (after >= before - 0.05)
    for model in results["models"].values():  # POPE at two question pairs per image too: every object asked
        assert set(model["pope_2"]) == {"random", "popular", "adversarial"}
    folder = tmp_path / "runs" / "demo" / "seed3"
    histories = json.loads((folder / "training_log.json").read_text())
    assert any("loss/image_conditional" in entry for entry in histories["mdpo"])
    assert not any("loss/image_conditional" in entry for entry in histories["hadpo"])
    assert yaml.safe_load((folder / "train" / "opa" / "hadpo_config.yaml").read_text())["warmup_sft_steps"] == 2
    assert all(results["training"][name]["seconds"] > 0 for name in ("hadpo", "mdpo", "opa"))
    report = (folder / "report.md").read_text()
    assert "## Recipe targets (issue 19)" in report and "| target | hadpo | mdpo | opa |" in report
    with pytest.raises(ValueError, match="--methods: unknown method 'dense' \\(the config names mdpo, opa, unused\\)"):
        run_demo(config, seed=3, runs_dir=tmp_path / "runs", methods=["dense"])
