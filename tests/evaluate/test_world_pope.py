"""Issue 3's must-show on the world: POPE built from the world's eval scenes and run with the tiny base model in
both modes; where the generated answer starts with yes/no, the logits mode agrees on >= 99 %.

Slow (it pretrains or reuses the base model under $HADPO_RUNS, default runs/): run with `pytest -m slow`."""

from __future__ import annotations

import json
import os

import pytest

from hadpo.cli import main

pytestmark = pytest.mark.slow


def test_pope_on_the_world_with_the_base_model(tmp_path, capsys):
    from hadpo.world.demo import load_demo_config
    from hadpo.world.pretrain import pretrain_base
    from hadpo.world.scenes import build_world

    runs = os.environ.get("HADPO_RUNS", "runs")
    demo = load_demo_config(None)
    world, pretrain = demo.world, demo.pretrain
    files = build_world(world, runs)
    # HADPO_BASE_MODEL reuses a base model trained elsewhere (e.g. with a shorter pretraining config).
    model_dir = os.environ.get("HADPO_BASE_MODEL") or pretrain_base(world, files, pretrain, runs)
    out = tmp_path / "pope"
    assert main(["eval", "pope", "build", "--annotations", str(files.images("eval")), "--out", str(out),
                 "--num-images", "100"]) == 0
    questions = [str(out / f"pope_{split}.jsonl") for split in ("random", "popular", "adversarial")]
    common = ["--model", str(model_dir), "--out", str(out), "--batch-size", "32", "--no-progress"]
    assert main(["eval", "pope", "run", "--questions", *questions, *common, "--max-new-tokens", "4"]) == 0
    generated = json.loads((out / "results.json").read_text())["pope"]
    assert main(["eval", "pope", "run", "--questions", *questions, *common, "--mode", "logits"]) == 0
    capsys.readouterr()
    for split in ("random", "popular", "adversarial"):
        assert main(["eval", "pope", "agreement", "--generated", str(out / f"answers_{split}_generate.jsonl"),
                     "--logits", str(out / f"answers_{split}_logits.jsonl")]) == 0
        agreement = json.loads(capsys.readouterr().out)
        with capsys.disabled():
            print(split, agreement, {k: round(v, 4) for k, v in generated["splits"][split].items()
                                     if isinstance(v, float)})
        assert agreement["compared"] > 0 and agreement["rate"] >= 0.99
