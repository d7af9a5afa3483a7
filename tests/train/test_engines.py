"""hadpo.train.engines: every engine config in configs/accelerate/ read through accelerate's own launcher, and an
engine this machine cannot run refused with one line, before any model loads (issue 21)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from accelerate.utils import DistributedType

from hadpo.train.engines import Engine, adjust_config, engine_problem, requested_engine
from launch import free_port

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
EXPECTED = {
    "ddp.yaml": Engine("ddp", 8),
    "ddp_cpu.yaml": Engine("ddp", 2),
    "fsdp2.yaml": Engine("fsdp", 8, fsdp_version=2),
    "zero2.yaml": Engine("deepspeed", 8, zero_stage=2),
    "zero3.yaml": Engine("deepspeed", 8, zero_stage=3),
    "zero3_offload.yaml": Engine("deepspeed", 8, zero_stage=3),
}
NO_KEYS = SimpleNamespace(deepspeed=None, fsdp=[], fsdp_config={})


def launcher_environment(path: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file path` gives each process (accelerate's own functions)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", str(path), "x"]))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, environment = prepare_deepspeed_cmd_env(args)
    else:
        environment = prepare_multi_gpu_env(args)
    return {**environment, "WORLD_SIZE": str(args.num_processes)}  # torchrun sets it per process


def test_every_engine_config_is_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_engine_config_asks_for_its_engine(name):
    assert requested_engine(NO_KEYS, launcher_environment(CONFIGS / name)) == EXPECTED[name]


def _state(kind: DistributedType, processes: int, device: str = "cpu"):
    return SimpleNamespace(distributed_type=kind, num_processes=processes, device=torch.device(device))


@pytest.mark.parametrize("name", ["fsdp2.yaml", "zero2.yaml", "zero3.yaml", "zero3_offload.yaml"])
def test_a_sharded_engine_on_cpus_is_refused(name):
    engine = requested_engine(NO_KEYS, launcher_environment(CONFIGS / name))
    # use_cpu: true -> accelerate sets up gloo DDP; use_cpu: false -> each process alone.
    unsharded = engine_problem(engine, _state(DistributedType.MULTI_CPU, engine.processes), {})
    assert f"{engine.label} was asked for, but accelerate would train with MULTI_CPU (unsharded)" in unsharded
    assert "ddp_cpu.yaml" in unsharded and "\n" not in unsharded
    alone = engine_problem(engine, _state(DistributedType.NO, 1), {})
    assert f"{engine.processes} processes were launched for {engine.label}" in alone
    # The test path: gloo processes with HADPO_CPU_SHARDING=1 are let through (accelerate is then made to shard).
    assert (
        engine_problem(engine, _state(DistributedType.MULTI_CPU, engine.processes), {"HADPO_CPU_SHARDING": "1"}) is None
    )


def test_engines_that_can_run_pass():
    assert engine_problem(Engine("ddp", 2), _state(DistributedType.MULTI_CPU, 2), {}) is None
    assert engine_problem(Engine("single"), _state(DistributedType.NO, 1), {}) is None
    gpus = _state(DistributedType.FSDP, 8, "cuda")
    assert engine_problem(Engine("fsdp", 8, fsdp_version=2), gpus, {}) is None
    assert "set fsdp_version: 2" in engine_problem(Engine("fsdp", 8, fsdp_version=1), gpus, {})


def test_training_argument_keys_ask_for_engines_too(tmp_path):
    config = tmp_path / "ds.json"
    config.write_text('{"zero_optimization": {"stage": 3}}')
    keys = SimpleNamespace(deepspeed=str(config), fsdp=[], fsdp_config={})
    assert requested_engine(keys, {"WORLD_SIZE": "4"}) == Engine("deepspeed", 4, zero_stage=3)
    keys = SimpleNamespace(deepspeed=None, fsdp=["full_shard"], fsdp_config={"version": 2})
    assert requested_engine(keys, {}) == Engine("fsdp", 1, fsdp_version=2)


def test_lora_under_zero3_with_checkpointing_gets_the_reentrant_variant(make_config):
    config = make_config(gradient_checkpointing=True)
    adjust_config(config, Engine("deepspeed", 2, zero_stage=3))
    assert config.gradient_checkpointing_kwargs["use_reentrant"] is True
    with pytest.raises(ValueError, match="use_reentrant false fails with LoRA under ZeRO-3"):
        adjust_config(
            make_config(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}),
            Engine("deepspeed", 2, zero_stage=3),
        )
    with pytest.raises(ValueError, match="'merge_adapter': not under FSDP2"):
        adjust_config(make_config(merge_adapter=True), Engine("fsdp", 2, fsdp_version=2))


@pytest.mark.slow  # ~25 s: two processes start and import transformers
@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None, reason="no accelerate")
def test_fsdp2_config_on_a_cpu_machine_stops_with_one_line_as_a_user_would_launch_it(make_config, tmp_path):
    """The issue's command: `accelerate launch --config_file fsdp2.yaml --num_processes 2 hadpo train c.yaml` on a
    machine without GPUs used to exit 0 after two unrelated single-process trainings."""
    config = make_config()
    recipe = tmp_path / "c.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": config.model_name_or_path, "pairs": config.pairs}))
    bin_dir = os.path.dirname(sys.executable)
    command = [os.path.join(bin_dir, "accelerate"), "launch", "--config_file", str(CONFIGS / "fsdp2.yaml")]
    command += ["--num_processes", "2", "--main_process_port", str(free_port()), os.path.join(bin_dir, "hadpo")]
    command += ["train", str(recipe), f"output_dir={tmp_path / 'out'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("HADPO_CPU_SHARDING", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("hadpo: error:")]
    assert lines and all(line == lines[0] for line in lines), done.stderr[-2000:]
    assert "training engine: 2 processes were launched for FSDP2" in lines[0]
    assert not (tmp_path / "out" / "trainer_state.json").exists()  # nothing trained
