"""hadpo train sharded on two CPU processes (gloo): FSDP2 and DeepSpeed ZeRO-3 applied by accelerate's own code
(HADPO_CPU_SHARDING=1, hadpo.train.engines.cpu_sharding) to the shipped configs/accelerate/*.yaml set to CPU.

Each engine runs its scenarios in one `accelerate launch` (tests/train/sharded_runner.py) and every scenario is
compared with one process training the same global batch: losses of 3 steps within 1e-5, the policy and the
`copy` reference held in shards, the final model saved whole, a sharded checkpoint resumed to the same losses, and
an auxiliary SFT batch that is text-only on one process (the other's holds an image) finishing instead of hanging
(without the padding row gloo aborts on the mismatched collectives; NCCL would hang)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from sharded_runner import LOGGED

from hadpo.config import load_config
from hadpo.records import SFTExample, write_jsonl
from hadpo.train.config import HADPOConfig
from hadpo.train.run import build_trainer
from launch import free_port

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("sharded_runner.py")


def _sft_file(folder: Path, pairs_file: Path) -> Path:
    """One example with an image and one text-only: with one example per process and step, every step one
    process holds a text-only batch."""
    image = str(pairs_file.parent / "images" / "0.png")
    rows = [
        SFTExample(images=[image], prompt="Describe this image.", response="There is a red square."),
        SFTExample(images=[], prompt="Is the sky green?", response="No, the sky is not green."),
    ]
    write_jsonl(folder / "sft.jsonl", rows)
    return folder / "sft.jsonl"


def scenarios(model_dir: Path, pairs_file: Path, folder: Path) -> dict[str, dict]:
    """Per scenario the two-process config (2 pairs per process); one process runs it with 4 pairs."""
    common = dict(
        model_name_or_path=str(model_dir),
        pairs=str(pairs_file),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        learning_rate=2e-2,
        lora_r=8,
        lora_alpha=16,
        max_steps=3,
        seed=0,
        disable_tqdm=True,
    )
    sft = dict(gamma=0.5, sft_data=str(_sft_file(folder, pairs_file)), sft_batch_size=1)
    checkpointed = dict(output_dir=str(folder / "lora_adapters_sft"), save_strategy="steps", save_steps=2)
    return {
        "lora_adapters_sft": {"config": {**common, **sft, **checkpointed}},
        "lora_copy_checkpointing": {
            "config": {**common, "output_dir": str(folder / "lc"), "reference": "copy", "gradient_checkpointing": True}
        },
        "full_precomputed": {
            "config": {
                **common,
                "output_dir": str(folder / "fp"),
                "finetuning": "full",
                "reference": "precomputed",
                "learning_rate": 1e-3,
            }
        },
        "lora_methods": {  # issue 19's options: mDPO's extra image forward runs on every rank each step
            "config": {
                **common,
                "output_dir": str(folder / "lm"),
                "token_weighting": "diff",
                "image_conditional_weight": 1.0,
                "image_corruption": "noise",
                "anchor_weight": 1.0,
                "loss_type": ["sigmoid", "bco_pair", "sft"],
                "loss_weights": [0.8, 0.2, 1.0],
            }
        },
        "resumed": {"config": {**common, **sft, **checkpointed}, "resume": True, "drop": ["checkpoint-3"]},
    }


def launch(accelerate_config: str, spec: dict, folder: Path) -> dict:
    """Run the scenarios under the shipped accelerate config set to two CPU processes; a hang fails by timeout."""
    values = yaml.safe_load((ROOT / "configs" / "accelerate" / accelerate_config).read_text())
    values.update(use_cpu=True, num_processes=2, mixed_precision="no")
    config_path, spec_path, results_path = folder / "accelerate.yaml", folder / "spec.json", folder / "results.json"
    config_path.write_text(yaml.safe_dump(values))
    spec_path.write_text(json.dumps({"scenarios": spec}))
    bin_dir = os.path.dirname(sys.executable)
    command = [os.path.join(bin_dir, "accelerate"), "launch", "--config_file", str(config_path)]
    command += ["--main_process_port", str(free_port()), str(RUNNER), str(spec_path), str(results_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HADPO_CPU_SHARDING": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(results_path.read_text())


def one_process(config: dict, output_dir: Path):
    """The same run on one process with the same global batch (twice the pairs and SFT rows per step)."""
    values = {**config, "output_dir": str(output_dir), "per_device_train_batch_size": 4, "save_strategy": "no"}
    if "sft_batch_size" in values:
        values["sft_batch_size"] = 2
    trainer = build_trainer(load_config(HADPOConfig, None, values))
    trainer.train()
    trainer.save_model(str(output_dir))
    return trainer


def assert_same_losses(sharded: list[dict], single: list[dict]) -> None:
    assert len(sharded) == len(single) == 3
    for step, (a, b) in enumerate(zip(sharded, single), start=1):
        for key in LOGGED:  # everything the runner logs
            if b.get(key) is not None:
                # 1e-5, or 2e-7 relative for the log-prob sums (-146 with token weights: one float32 ulp is 1.5e-5)
                assert a[key] == pytest.approx(b[key], abs=1e-5, rel=2e-7), (step, key)
    assert single[-1]["loss"] < single[0]["loss"]


def assert_same_weights(saved: Path, single: Path, name: str, tolerance: float = 1e-5) -> None:
    if name == "model.safetensors":  # a full model: compared as from_pretrained loads it (key names may differ)
        from transformers import AutoModelForImageTextToText

        sharded_weights, single_weights = (
            AutoModelForImageTextToText.from_pretrained(folder).state_dict() for folder in (saved, single)
        )
    else:
        sharded_weights, single_weights = load_file(saved / name), load_file(single / name)
    assert sorted(sharded_weights) == sorted(single_weights)
    for key, value in single_weights.items():
        assert sharded_weights[key].shape == value.shape, key  # whole, not a shard
        assert (sharded_weights[key].float() - value.float()).abs().max() < tolerance, key


@pytest.fixture(scope="module")
def fsdp2(tiny_model_dir, pairs_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fsdp2")
    spec = scenarios(tiny_model_dir, pairs_file, folder)
    return spec, launch("fsdp2.yaml", spec, folder), folder


@pytest.mark.parametrize("name", ["lora_adapters_sft", "lora_copy_checkpointing", "full_precomputed", "lora_methods"])
def test_fsdp2_trains_sharded_like_one_process(fsdp2, name, tmp_path):
    spec, results, _ = fsdp2
    result = results[name]
    assert result["engine"] == "FSDP2"
    assert result["policy"]["kind"] == "fsdp2" and result["policy"]["local_share"] < 0.6
    if spec[name]["config"].get("reference") == "copy":
        assert result["reference"]["kind"] == "fsdp2" and result["reference"]["local_share"] < 0.6
    single = one_process(spec[name]["config"], tmp_path / "one")
    assert_same_losses(result["losses"], [e for e in single.state.log_history if "loss" in e])
    full = spec[name]["config"].get("finetuning") == "full"
    weights = "model.safetensors" if full else "adapter_model.safetensors"
    assert_same_weights(Path(spec[name]["config"]["output_dir"]), tmp_path / "one", weights)


def test_fsdp2_text_only_sft_batch_on_one_process_does_not_hang(fsdp2):
    """Every step one process's SFT batch is text-only: it ran (launch has a timeout) with the SFT loss logged,
    and test_fsdp2_trains_sharded_like_one_process[lora_adapters_sft] matched it to one process."""
    _, results, _ = fsdp2
    assert all(entry["loss/sft"] is not None for entry in results["lora_adapters_sft"]["losses"])


def test_fsdp2_sharded_checkpoint_resumes_to_the_same_losses(fsdp2):
    spec, results, folder = fsdp2
    checkpoint = folder / "lora_adapters_sft" / "checkpoint-2"
    assert any(path.name.startswith("pytorch_model_fsdp") for path in checkpoint.iterdir())  # shards, not a model
    original, resumed = results["lora_adapters_sft"]["losses"], results["resumed"]["losses"]
    assert resumed[-1]["loss"] == pytest.approx(original[-1]["loss"], abs=1e-5)
    assert resumed[-1]["loss/sft"] == pytest.approx(original[-1]["loss/sft"], abs=1e-5)


@pytest.mark.slow  # ~60 s: DeepSpeed's start-up and ZeRO-3 engines on two CPU processes
@pytest.mark.parametrize("accelerate_config", ["zero3.yaml", "zero2.yaml"])
def test_deepspeed_trains_sharded_like_one_process(accelerate_config, tiny_model_dir, pairs_file, tmp_path):
    pytest.importorskip("deepspeed")
    spec = scenarios(tiny_model_dir, pairs_file, tmp_path)
    spec = {name: spec[name] for name in ("lora_adapters_sft", "lora_copy_checkpointing", "full_precomputed")}
    results = launch(accelerate_config, spec, tmp_path)
    stage = accelerate_config[len("zero")]
    for name, scenario in spec.items():
        result = results[name]
        assert result["engine"] == f"DeepSpeed ZeRO-{stage}"
        if stage == "3":
            assert result["policy"]["kind"] == "zero3" and result["policy"]["local_share"] < 0.6
        if scenario["config"].get("reference") == "copy":  # a ZeRO-3 inference engine under any stage
            assert result["reference"]["kind"] == "zero3" and result["reference"]["local_share"] < 0.6
        single = one_process(scenario["config"], tmp_path / f"one-{name}")
        assert_same_losses(result["losses"], [e for e in single.state.log_history if "loss" in e])
        full = scenario["config"].get("finetuning") == "full"
        weights = "model.safetensors" if full else "adapter_model.safetensors"
        # DeepSpeed's partitioned fp32 optimizer sees LoRA A's gradient, exactly 0 in the first step (B = 0), as
        # ~1e-12 noise, which Adam scales up to an lr-sized step: weights agree to 1e-4 (6e-5 measured) of the
        # ~6e-2 they moved, while the losses agree to 1e-5.
        assert_same_weights(Path(scenario["config"]["output_dir"]), tmp_path / f"one-{name}", weights, 1e-4)
        if scenario["config"].get("reference") == "precomputed":  # ZeRO-3 partitions fingerprinted as whole weights
            caches = [
                sorted(p.name for p in Path(d).glob("reference_logps-*.json"))
                for d in (scenario["config"]["output_dir"], tmp_path / f"one-{name}")
            ]
            assert caches[0] == caches[1] and caches[0]
