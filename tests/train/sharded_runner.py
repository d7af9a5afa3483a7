"""Runs several `hadpo train` scenarios inside one `accelerate launch` (tests/train/test_sharded.py), so the
process start-up is paid once. Each scenario goes through `hadpo.train.run.run_training`, as the command line
does; rank 0 writes what the tests compare (losses, whether the policy and the reference were sharded, what was
saved) to the results file.

    accelerate launch --config_file configs/accelerate/fsdp2.yaml --cpu --num_processes 2 \
        tests/train/sharded_runner.py SPEC.json RESULTS.json        (with HADPO_CPU_SHARDING=1)

SPEC.json: {"scenarios": {name: {"config": {...}, "resume": bool, "drop": [folders to delete first]}}}.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from hadpo.config import load_config
from hadpo.train.config import HADPOConfig
from hadpo.train.run import run_training

LOGGED = (
    "loss",
    "loss/dpo",
    "loss/sft",
    "rewards/margins",
    "logps/chosen",
    "logps/ref_chosen",
    "loss/image_conditional",
    "loss/anchor",
)


def sharding(module) -> dict | None:
    """How a module's parameters are held: FSDP2 DTensors (local share of the elements) or ZeRO-3 partitions."""
    if module is None:
        return None
    from torch.distributed.tensor import DTensor

    params = list(module.parameters())
    total = sum(p.numel() if not hasattr(p, "ds_numel") else p.ds_numel for p in params)
    if any(isinstance(p, DTensor) for p in params):
        local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params)
        return {"kind": "fsdp2", "local_share": local / total}
    if any(hasattr(p, "ds_id") for p in params):
        local = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
        return {"kind": "zero3", "local_share": local / total}
    return {"kind": "whole", "local_share": 1.0}


def run(scenario: dict) -> dict:
    config = load_config(HADPOConfig, None, scenario["config"])
    config.device  # noqa: B018  (sets up the process group)
    if dist.get_rank() == 0:
        for folder in scenario.get("drop", []):
            shutil.rmtree(Path(config.output_dir) / folder)
    dist.barrier()
    trainer = run_training(config, resume=scenario.get("resume", False))
    logged = [{key: entry.get(key) for key in LOGGED} for entry in trainer.state.log_history if "loss" in entry]
    return {
        "losses": logged,
        "engine": trainer.engine.label,
        "wrapped": type(trainer.model_wrapped).__name__,
        "policy": sharding(trainer.model),
        "reference": sharding(trainer.ref_model),
        "saved": sorted(path.name for path in Path(config.output_dir).iterdir()),
    }


def main(spec_path: str, results_path: str) -> int:
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    results = {name: run(scenario) for name, scenario in spec["scenarios"].items()}
    if dist.get_rank() == 0:
        Path(results_path).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
