"""Every YAML in configs/pairs loads; unknown keys are errors; describe samples from the tiny model and resumes.
(The `hadpo pairs` verbs themselves: tests/cli/test_cli_pairs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

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
