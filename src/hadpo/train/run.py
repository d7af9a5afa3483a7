"""Set up and run one HA-DPO training run from a `HADPOConfig`, in dependency order: processor and family,
data (checked before any model is loaded), base model, reference, policy (LoRA / QLoRA / full, vision frozen),
trainer; then save the adapter (and optionally the merged model), the resolved config and a model card."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoConfig, set_seed

from hadpo.config import save_config
from hadpo.files import check_dir
from hadpo.inference.packing import packing_unsupported
from hadpo.models import VLMFamily, decoder_start_token_id, get_family
from hadpo.models.base import model_location_problem
from hadpo.progress import fit_trainer_progress
from hadpo.records import RecordError
from hadpo.train.checkpoints import last_complete_checkpoint
from hadpo.train.collate import PreferenceCollator, SFTCollator, drop_too_long
from hadpo.train.config import HADPOConfig
from hadpo.train.corruption import ImageCorruption
from hadpo.train.data import (
    AuxStream,
    PreferenceDataset,
    check_pair_options,
    check_prompts,
    group_rewrites,
    load_pairs,
    load_sft_examples,
)
from hadpo.train.distributed import (
    VisionPaddedCollator,
    blank_image,
    prepare_reference,
    reference_fingerprint,
    save_whole,
    without_vision_padding,
)
from hadpo.train.engines import Engine, adjust_config, check_engine, cpu_sharding, verify_engine
from hadpo.train.logps import response_logps
from hadpo.train.model import load_model, prepare_policy
from hadpo.train.reference import precompute_reference
from hadpo.train.trainer import HADPOTrainer
from hadpo.train.warmup import warm_start

log = logging.getLogger(__name__)


def build_trainer(config: HADPOConfig, callbacks=None, processor=None) -> HADPOTrainer:
    """Everything up to `trainer.train()`. `processor` overrides the one loaded from model_name_or_path."""
    set_seed(config.seed)
    check_dir(config.output_dir, "output_dir")  # a file in its place fails now, not at the first save
    for key in ("model_name_or_path", "ref_model_name_or_path"):
        if getattr(config, key) and (problem := model_location_problem(getattr(config, key))):
            raise ValueError(f"config key '{key}': {problem}")
    engine = check_engine(config)  # an engine this machine cannot run stops here, before data and models
    adjust_config(config, engine)
    model_config = AutoConfig.from_pretrained(config.model_name_or_path)
    family = get_family(config.family, model_config.model_type)
    processor = processor or family.load_processor(config.model_name_or_path)
    data = _load_data(config, family, processor, decoder_start_token_id(model_config), engine)
    if config.process_index == 0:
        save_config(config, Path(config.output_dir) / "hadpo_config.yaml", sort_keys=True)

    model = load_model(config.model_name_or_path, config, family)
    warmup = None
    if config.warmup_sft_steps:  # OPA-DPO: the warmed model is the policy's start and the reference
        sft_collator = SFTCollator(processor, family, None, decoder_start_token_id(model_config))
        model, warmup = warm_start(model, config, family, sft_collator, data.dataset.pairs())
    ref_model = _load_reference(config, family, model, engine)
    data.collator.shared_prefix = _shared_prefix(config, model, ref_model)
    if config.reference == "precomputed" and not engine.shards_parameters:
        _precompute(config, ref_model.to(config.device), data, _fingerprint(config, ref_model, warmup))
        ref_model = None
    policy = prepare_policy(model, config, family, engine)
    with cpu_sharding(engine):
        trainer = HADPOTrainer(
            model=policy,
            args=config,
            train_dataset=data.dataset,
            eval_dataset=data.eval_dataset,
            data_collator=data.collator,
            processing_class=processor,
            ref_model=ref_model if config.reference == "copy" else None,
            sft_stream=data.sft_stream,
            sft_collator=data.sft_collator,
            callbacks=callbacks,
            logps_fn=without_vision_padding(response_logps),
            engine=engine,
        )
    verify_engine(trainer, engine)
    fit_trainer_progress(trainer)  # plain lines instead of the Trainer's bar where output is a file or CI
    if config.reference == "precomputed" and engine.shards_parameters:
        # Scored by the engine's own sharded reference, every process in lockstep, then freed.
        fingerprint = _fingerprint(config, ref_model, warmup)  # of the weights, before they are sharded
        _precompute(config, prepare_reference(trainer, ref_model, engine), data, fingerprint)
    trainer.hadpo_info = {
        "family": family.name,
        "lora_target": config.lora_target or family.lora_target_regex,
        "pair_forward": "shared prefix" if data.collator.shared_prefix else "two sequences",
        "engine": engine.label,
        "data": {**data.dataset.stats(), "dropped_too_long": data.dropped},
        **({"warmup": warmup} if warmup else {}),
    }
    return trainer


@dataclass
class _RunData:
    collator: PreferenceCollator
    dataset: PreferenceDataset
    dropped: int
    eval_dataset: PreferenceDataset | None = None
    sft_stream: AuxStream | None = None
    sft_collator: SFTCollator | VisionPaddedCollator | None = None


def _load_data(config: HADPOConfig, family: VLMFamily, processor, decoder_start, engine: Engine) -> _RunData:
    """Pairs, held-out pairs and the auxiliary SFT stream, checked before any model is loaded."""
    collator = pair_collator(processor, family, config, decoder_start)
    dataset, dropped = _pairs_dataset(config.pairs, family, collator, config, config.data_mix, config.shuffle_pairs)
    data = _RunData(collator, dataset, dropped)
    if config.eval_pairs:
        data.eval_dataset, _ = _pairs_dataset(config.eval_pairs, family, collator, config, "1:1", False)
    if config.gamma > 0:
        examples = load_sft_examples(config.sft_data, config.sft_caption_prompt)
        data.sft_stream = AuxStream(examples, config.sft_batch_size or config.per_device_train_batch_size, config.seed)
        data.sft_collator = SFTCollator(processor, family, None, decoder_start)
        if engine.processes > 1:  # a text-only batch on one process must still run the vision tower (issue 21)
            data.sft_collator = VisionPaddedCollator(data.sft_collator, blank_image())
    return data


def pair_collator(processor, family, config: HADPOConfig, decoder_start: int | None) -> PreferenceCollator:
    """The pairs' collator with the run's token weights, pair weights and corrupted images (docs/methods.md)."""
    corruption = None
    if config.uses_corrupted_images:
        corruption = ImageCorruption(config.image_corruption, tuple(config.image_corruption_scale), config.seed)
    return PreferenceCollator(
        processor,
        family,
        config.max_length,
        decoder_start,
        token_weighting=config.token_weighting,
        token_weight=config.token_weight,
        pair_weighting=config.pair_weighting,
        corruption=corruption,
    )


def _load_reference(config: HADPOConfig, family: VLMFamily, model, engine: Engine):
    """The reference weights for `copy` / `precomputed`, or None (`adapters`). Under parameter sharding it is a
    model of its own, loaded like the policy (a deep copy of partitioned weights is not a model)."""
    if config.reference not in ("copy", "precomputed"):
        return None
    if config.ref_model_name_or_path or engine.shards_parameters:
        return load_model(config.ref_model_name_or_path or config.model_name_or_path, config, family)
    return copy.deepcopy(model) if config.reference == "copy" else model


def _fingerprint(config: HADPOConfig, ref_model, warmup: dict | None) -> str:
    name = config.ref_model_name_or_path or config.model_name_or_path
    return reference_fingerprint(ref_model, name + (" after the warm start" if warmup else ""))


def _precompute(config: HADPOConfig, ref_model, data: _RunData, fingerprint: str) -> None:
    """Fill each dataset's reference log-probs from the cache, scoring what it lacks with `ref_model` (placed on
    the device, or sharded by the engine): every process scores its share and rank 0 merges (a collective)."""
    for dataset in filter(None, (data.dataset, data.eval_dataset)):
        dataset.reference = precompute_reference(
            ref_model,
            dataset.pairs(),
            data.collator,
            config.reference_cache_dir or config.output_dir,
            fingerprint=fingerprint,
            batch_size=config.per_device_eval_batch_size,
            device=config.device,
            autocast_dtype=torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else None,
            rank=config.process_index,
            world_size=config.world_size,
            barrier=PartialState().wait_for_everyone,
        )


def _shared_prefix(config: HADPOConfig, model, ref_model) -> bool:
    """Whether pairs are packed with a shared prefix (issue 13); says which pair forward the run uses."""
    reason = None if config.shared_prefix else "shared_prefix is false"
    for name, candidate in (("model", model), ("reference model", ref_model)):
        if reason is None and candidate is not None:
            why = packing_unsupported(candidate)
            reason = f"the {name} cannot share the prefix: {why}" if why else None
    if reason is None:
        log.info("pair forward: shared prefix (image + prompt encoded once per pair, chosen and rejected packed)")
        return True
    log.warning("pair forward: two sequences per pair (%s)", reason)
    return False


def _pairs_dataset(path, family, collator, config: HADPOConfig, mix: str, shuffle: bool):
    pairs = load_pairs(path)
    check_prompts(pairs, family, collator.processor, path)
    try:
        check_pair_options(pairs, config.token_weighting, config.pair_weighting)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    try:
        groups, dropped = drop_too_long(group_rewrites(pairs), collator, config.too_long)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    if dropped:
        log.warning("%s: dropped %d pair(s) longer than max_length %d", path, dropped, config.max_length)
    if not groups:
        raise ValueError(f"{path}: no pairs left after dropping those over max_length {config.max_length}")
    return PreferenceDataset(groups, mix, config.seed, shuffle), dropped


def run_training(
    config: HADPOConfig, resume: bool | Path | None = False, callbacks=None, processor=None
) -> HADPOTrainer:
    """Train and save. `resume`: True continues from output_dir's newest complete checkpoint (none is an error),
    a checkpoint folder from that one, False or None starts afresh."""
    checkpoint = last_complete_checkpoint(config.output_dir) if resume is True else resume or None
    trainer = build_trainer(config, callbacks, processor)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_outputs(trainer)
    return trainer


def final_metrics(history: list[dict]) -> dict:
    """The last logged training metrics (TRL names) of a run's log history, its last logged step and runtime."""
    logged = [entry for entry in history if "loss" in entry or "loss/dpo" in entry]
    last = logged[-1] if logged else {}
    summary = next((entry for entry in reversed(history) if "train_runtime" in entry), {})
    keys = ("loss/dpo", "loss/sft", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")
    return {
        **{k: last[k] for k in keys if k in last},
        "steps": last.get("step"),
        "runtime_s": summary.get("train_runtime"),
    }


def save_outputs(trainer: HADPOTrainer) -> None:
    """Adapter (or full model) + processor, trainer state, resolved config, model card, merged model."""
    config: HADPOConfig = trainer.args
    out = Path(config.output_dir)
    engine = trainer.engine
    if engine is not None and engine.kind in ("fsdp", "deepspeed"):
        save_whole(trainer, engine, out, trainable_only=config.finetuning != "full")  # gathered, not shards
    else:
        trainer.save_model(str(out))
    trainer.save_state()
    if not trainer.is_world_process_zero():
        return
    save_config(config, out / "hadpo_config.yaml", sort_keys=True)
    (out / "README.md").write_text(model_card(trainer), encoding="utf-8")
    if config.merge_adapter and config.finetuning != "full":
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(out / "merged")
        trainer.processing_class.save_pretrained(out / "merged")


def model_card(trainer: HADPOTrainer) -> str:
    config: HADPOConfig = trainer.args
    info = getattr(trainer, "hadpo_info", {})
    last = next((entry for entry in reversed(trainer.state.log_history) if "loss" in entry), {})
    tuning = (
        f"LoRA r {config.lora_r} / alpha {config.lora_alpha} on `{info.get('lora_target', config.lora_target)}`"
        if config.finetuning != "full"
        else "full fine-tuning"
    )
    schedule = getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)
    eval_file = Path(config.output_dir) / "eval_results.json"
    evals = eval_file.read_text(encoding="utf-8") if eval_file.is_file() else "none yet (run `hadpo eval`)"
    lines = [
        "---",
        f"base_model: {config.model_name_or_path}",
        "library_name: peft" if config.finetuning != "full" else "library_name: transformers",
        "tags: [hadpo, dpo, vision-language, hallucination]",
        "---",
        f"# HA-DPO fine-tune of {config.model_name_or_path}",
        "",
        "Trained with hadpo's HA-DPO objective (arXiv 2311.16839): L = L_dpo + gamma * L_sft.",
        "",
        f"- family: {info.get('family', config.family)}; tuning: {tuning} ({config.finetuning}); "
        f"pair forward: {info.get('pair_forward', 'unknown')}",
        f"- data: `{config.pairs}`: {json.dumps(info.get('data', {}))}; mix desc:qa {config.data_mix}",
        f"- objective: loss {config.loss_type}, beta {config.beta}, log-probs {config.logps_reduction}, "
        f"reference {config.reference}, gamma {config.gamma} (sft data {config.sft_data})",
        f"- optimisation: lr {config.learning_rate}, {schedule} schedule, warm-up "
        f"{config.warmup_steps}, epochs {config.num_train_epochs}, max steps {config.max_steps}, "
        f"batch {config.per_device_train_batch_size} x {config.gradient_accumulation_steps} accumulation x "
        f"{config.world_size} processes, grad clip {config.max_grad_norm}, seed {config.seed}",
        f"- steps trained: {trainer.state.global_step}; last logged: {json.dumps(last)}",
        f"- evaluation: {evals}",
        "",
        "The full resolved config is `hadpo_config.yaml` beside this card.",
    ]
    return "\n".join(lines) + "\n"
