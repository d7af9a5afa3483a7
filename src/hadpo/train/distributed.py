"""What sharding (FSDP2, DeepSpeed ZeRO) changes in an HA-DPO run, kept apart from the objective (issue 21).

- **The reference model** (`copy`, and the pass that fills the `precomputed` cache) is prepared by the same
  engine as the policy: under FSDP2 it is sharded with accelerate's own `fully_shard` wrapping, under DeepSpeed it
  becomes a ZeRO-3 inference engine (sharded whatever the policy's stage, as TRL PR #1730 proposed), so no
  process ever holds a whole copy. Single-process and DDP runs keep it whole on the device, as before.
- **Lockstep**: under parameter sharding every forward is a collective, so every process must run the same
  modules the same number of times in the same order. Pair batches always hold images; an auxiliary SFT batch
  whose rows are all text-only gets one padding row with a blank image (`VisionPaddedCollator`), whose log-probs
  are dropped before the loss (`without_vision_padding`), so the vision tower runs on every process in every
  step (the hang of DeepSpeed #7170 / ms-swift PR #9639 / FSDP2 in radixark/miles #2406). The precomputed
  reference pass gives every process the same number of batches (hadpo.train.reference).
- **Saving**: the final model is gathered whole (`gathered_state_dict`: FSDP2's full state dict, or ZeRO-3
  parameters gathered one at a time) and written by rank 0, LoRA as PEFT writes adapters; checkpoints stay
  sharded (the Trainer's own FSDP / DeepSpeed checkpoints) and resume.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
from pathlib import Path

import torch
from PIL import Image

from hadpo.records import SFTExample
from hadpo.train.engines import Engine
from hadpo.train.logps import LogpsFn, ResponseLogps
from hadpo.train.reference import model_fingerprint

log = logging.getLogger(__name__)

VISION_PADDING_KEY = "vision_padding_rows"  # how many rows at the end of a batch are padding (not model input)


# --- loading -----------------------------------------------------------------------------------------------------


def import_model_classes(name_or_path: str) -> None:
    """Import the modules of a model's classes (the VLM, its language model, its vision tower) now, before
    transformers loads it inside DeepSpeed's `zero.Init`. A class first defined inside that context gets its
    `__init__` restored, on exit, to the one DeepSpeed saw at class creation, dropping what decorators added after
    it: the `kernels` package's per-instance `_kernel_funcs`, so a second model loaded under ZeRO-3 (the `copy`
    reference) fails in its first forward ('LlamaAttention' object has no attribute '_kernel_funcs')."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(name_or_path)
    parts = [(config, AutoModelForImageTextToText)]
    parts += [(getattr(config, key), AutoModel) for key in ("text_config", "vision_config") if hasattr(config, key)]
    for part, auto in parts:
        if type(part) in auto._model_mapping:
            auto._model_mapping[type(part)]  # resolving the mapping imports the class's module


# --- the reference model ----------------------------------------------------------------------------------------


def prepare_reference(trainer, ref_model: torch.nn.Module, engine: Engine | None) -> torch.nn.Module:
    """The frozen reference, placed by the trainer's engine: sharded under FSDP2 / DeepSpeed, whole otherwise."""
    ref_model = ref_model.eval().requires_grad_(False)
    kind = engine.kind if engine is not None else "single"
    if kind == "fsdp":
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(trainer.accelerator, ref_model)
    if kind == "deepspeed":
        import deepspeed

        config = reference_deepspeed_config(trainer.accelerator.state.deepspeed_plugin.deepspeed_config, ref_model)
        reference, *_ = deepspeed.initialize(model=ref_model, config=config)
        reference.eval()  # DeepSpeedEngine.eval returns None
        return reference
    return ref_model.to(trainer.args.device)


def reference_deepspeed_config(policy_config: dict, model: torch.nn.Module) -> dict:
    """The policy's DeepSpeed config turned into a ZeRO-3 inference one: no optimizer or scheduler, its "auto"
    buckets sized from the model's hidden size (as the Trainer sizes the policy's)."""
    config = copy.deepcopy(policy_config)
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    zero = config.setdefault("zero_optimization", {})
    zero.pop("offload_optimizer", None)
    zero["stage"] = 3
    hidden = _hidden_size(model)
    sizes = {
        "reduce_bucket_size": hidden * hidden,
        "stage3_param_persistence_threshold": 10 * hidden,
        "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
    }
    for key, value in sizes.items():
        if zero.get(key, "auto") == "auto":
            zero[key] = value
    return _without_auto(config)


def _hidden_size(model: torch.nn.Module) -> int:
    config = getattr(model, "config", None)
    sizes = [getattr(c, "hidden_size", None) for c in (config, getattr(config, "text_config", None)) if c]
    return max([size for size in sizes if size] or [1024])


def _without_auto(value):
    """Drop the "auto" entries the Trainer would fill for a model it trains (the reference trains nothing)."""
    if isinstance(value, dict):
        return {key: _without_auto(item) for key, item in value.items() if item != "auto"}
    return value


def reference_fingerprint(model: torch.nn.Module, name: str) -> str:
    """`model_fingerprint` of a model whose parameters may be ZeRO-3 partitions: each parameter is gathered in
    turn, so the cache a one-GPU run wrote is found again."""
    if not any(hasattr(param, "ds_id") for param in model.parameters()):
        return model_fingerprint(model, name)
    import deepspeed

    return model_fingerprint(model, name, gathered=lambda param: deepspeed.zero.GatheredParameters([param]))


# --- the vision tower on every process in every step -------------------------------------------------------------


def blank_image(folder: str | Path | None = None) -> str:
    """A small black PNG for padding rows (one per process, in a temporary folder)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="hadpo-blank-"))
    path = folder / "blank.png"
    Image.new("RGB", (32, 32)).save(path)
    return str(path)


class VisionPaddedCollator:
    """The SFT collator, plus one padding row with a blank image when no row of the batch has an image, so that
    the model's forward runs its vision tower on this process too. The padding row is counted in
    `vision_padding_rows` and never reaches the loss (`without_vision_padding`)."""

    def __init__(self, collator, image_path: str):
        self.collator = collator
        self.image_path = image_path

    def __call__(self, examples: list[SFTExample]) -> dict:
        if any(example.images for example in examples):
            return self.collator(examples)
        padding = SFTExample(images=[self.image_path], prompt=examples[0].prompt, response=examples[0].response)
        return {**self.collator([*examples, padding]), VISION_PADDING_KEY: 1}

    def __getattr__(self, name: str):
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


def without_vision_padding(logps_fn: LogpsFn) -> LogpsFn:
    """`logps_fn` for batches that may end in padding rows: they go through the model and are cut from the
    result (sequence layout: one entry per row)."""

    def padded_logps(model: torch.nn.Module, batch: dict) -> ResponseLogps:
        padding = int(batch.get(VISION_PADDING_KEY, 0))
        if not padding:
            return logps_fn(model, batch)
        out = logps_fn(model, {key: value for key, value in batch.items() if key != VISION_PADDING_KEY})
        parts = (getattr(out, field.name) for field in dataclasses.fields(out))  # astuple would deep-copy them
        return ResponseLogps(*(None if part is None else part[:-padding] for part in parts))

    return padded_logps


# --- saving -------------------------------------------------------------------------------------------------------


def gathered_state_dict(trainer, engine: Engine, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The whole state dict of the trained model on rank 0, on the CPU (other ranks: {}); every process must call
    this. `trainable_only` (LoRA) gathers the adapters and modules_to_save alone, not the frozen base."""
    model = trainer.model
    if engine.kind == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
        return get_model_state_dict(model, options=options)
    import deepspeed

    rank0 = trainer.args.process_index == 0
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        # state_dict's own keys (persistent buffers, tied weights) with each ZeRO-3 partition gathered in turn
        for name, value in model.state_dict(keep_vars=True).items():
            if trainable_only and not value.requires_grad:
                continue
            with deepspeed.zero.GatheredParameters([value] if hasattr(value, "ds_id") else []):
                if rank0:
                    state[name] = value.detach().cpu().clone()
    return state


def save_whole(trainer, engine: Engine, output_dir: str | Path, trainable_only: bool) -> None:
    """Write the trained model whole to `output_dir` (rank 0), as `trainer.save_model` does unsharded: the full
    model's safetensors, or the LoRA adapter as PEFT writes it, with the processor."""
    state = gathered_state_dict(trainer, engine, trainable_only)
    if trainer.args.process_index == 0:
        trainer._save(str(output_dir), state_dict=state)
    trainer.accelerator.wait_for_everyone()
