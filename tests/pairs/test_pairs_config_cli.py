"""Every YAML in configs/pairs loads; unknown keys are errors; the CLI verbs parse and run a tiny build;
describe samples from the tiny model and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hadpo.cli import main
from hadpo.config import load_config
from hadpo.judge.llm_client import LLMConfig
from hadpo.pairs.config import PairsConfig
from hadpo.pairs.describe import DescribeConfig, sample_descriptions
from hadpo.pairs.store import BuildFiles, Ledger
from hadpo.records import Description, ImageRecord, read_jsonl

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "pairs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_config_loads(path):
    config = load_config(PairsConfig, path, section="pairs")
    assert isinstance(config, PairsConfig) and config.out_dir
    if config.judge.kind == "llm":
        assert isinstance(config.judge.llm, LLMConfig)
        assert "api_key:" not in path.read_text()  # keys come from the environment only


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("judge:\n  llm:\n    modle: gpt-4o\n")
    with pytest.raises(ValueError, match=r"judge.llm: unknown key 'modle'"):
        load_config(PairsConfig, path, section="pairs")


def test_describe_samples_and_resumes(image_records, tiny_model_dir, tmp_path):
    images = read_jsonl(image_records, ImageRecord)
    for image in images:
        image.path = str(tmp_path / image.path)
    files = BuildFiles(tmp_path / "build")
    config = DescribeConfig(model=str(tiny_model_dir), per_image=2, batch_size=4, max_new_tokens=6, seed=3)
    stats = sample_descriptions(images, files, config, Ledger(files.events))
    descriptions = read_jsonl(files.descriptions, Description)
    assert stats["sampled_now"] == 8 and len({d.description_id for d in descriptions}) == 8
    assert descriptions[0].generation["do_sample"] and descriptions[0].generation["temperature"] == 1.0
    assert descriptions[0].prompt in config.prompts
    again = sample_descriptions(images, files, config, Ledger(files.events))
    assert again["sampled_now"] == 0 and len(read_jsonl(files.descriptions, Description)) == 8


def test_cli_build_and_dry_run(image_records, tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "out"),
                "source": {"kind": "folder", "images": str(image_records)},
                "describe": {"model": str(tiny_model_dir), "per_image": 1, "max_new_tokens": 8},
            }
        )
    )
    assert main(["pairs", "build", str(config), "--dry-run"]) == 0
    estimate = json.loads(capsys.readouterr().out)["dry_run"]
    assert estimate["describe"]["descriptions_to_sample"] == 4
    assert estimate["llm_for_new_descriptions"]["judge_calls"] == 0  # the offline judge calls nothing
    assert not (tmp_path / "out" / "descriptions.jsonl").exists()
    # The random model's descriptions name no object, so nothing is hallucinated and no pair can be made: the
    # build fails (exit 1) saying so, and keeps what its stages wrote.
    assert main(["pairs", "build", str(config)]) == 1
    assert "hadpo: error: no pairs: 4 descriptions judged usable" in capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["descriptions_judged"] + sum(stats["skipped"].values()) == 4
    assert not (tmp_path / "out" / "pairs.jsonl").exists() and (tmp_path / "out" / "config.yaml").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("sauce: {}\n")
    assert main(["pairs", "judge", str(bad)]) == 2


def test_cli_import(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "vg").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "vg" / "7.jpg")
    desc = tmp_path / "desc_data.json"
    desc.write_text(json.dumps([{"image_id": 7, "chosen": ["good"], "rejected": ["bad"]}]))
    output = tmp_path / "out" / "pairs.jsonl"
    assert (
        main(
            ["pairs", "import", "--desc-data", str(desc), "--image-dir", str(tmp_path / "vg"), "--output", str(output)]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["pairs"] == {"desc": 1, "qa": 0, "total": 1}
    assert main(["pairs", "import", "--image-dir", str(tmp_path / "vg")]) == 2  # nothing to import: one line
