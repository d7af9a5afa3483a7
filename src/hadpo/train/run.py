"""Set up and run one HA-DPO training run from a `HADPOConfig`, in dependency order: processor and family,
data (checked before any model is loaded), base model, reference, policy (LoRA / QLoRA / full, vision frozen),
trainer; then save the adapter (and optionally the merged model), the resolved config and a model card."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoConfig, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hadpo.config import save_config
from hadpo.inference.packing import packing_unsupported
from hadpo.models import decoder_start_token_id, get_family
from hadpo.models.base import model_location_problem
from hadpo.records import RecordError, check_dir
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
from hadpo.train.model import load_model, prepare_policy
from hadpo.train.reference import model_fingerprint, precompute_reference
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
    model_config = AutoConfig.from_pretrained(config.model_name_or_path)
    family = get_family(config.family, model_config.model_type)
    processor = processor or family.load_processor(config.model_name_or_path)
    decoder_start = decoder_start_token_id(model_config)  # None unless the LM is an encoder-decoder
    # Data first: bad input fails here, before a model is loaded.
    collator = pair_collator(processor, family, config, decoder_start)
    dataset, dropped = _pairs_dataset(config.pairs, family, collator, config, config.data_mix, config.shuffle_pairs)
    eval_dataset = None
    if config.eval_pairs:
        eval_dataset, _ = _pairs_dataset(config.eval_pairs, family, collator, config, "1:1", False)
    sft_collator = SFTCollator(processor, family, None, decoder_start)
    sft_stream = None
    if config.gamma > 0:
        examples = load_sft_examples(config.sft_data, config.sft_caption_prompt)
        sft_stream = AuxStream(examples, config.sft_batch_size or config.per_device_train_batch_size, config.seed)
    if config.process_index == 0:
        save_config(config, Path(config.output_dir) / "hadpo_config.yaml", sort_keys=True)

    model = load_model(config.model_name_or_path, config, family)
    warmup = None
    if config.warmup_sft_steps:
        model, warmup = warm_start(model, config, family, sft_collator, dataset.pairs())
    ref_model = reference_model(config, model, family)
    collator.shared_prefix = _shared_prefix(config, model, ref_model)
    if config.reference == "precomputed":
        _precompute(config, ref_model, collator, dataset, eval_dataset, warmed=warmup is not None)
        ref_model = None
    trainer = HADPOTrainer(
        model=prepare_policy(model, config, family),
        args=config,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        ref_model=ref_model,
        sft_stream=sft_stream,
        sft_collator=sft_collator if sft_stream else None,
        callbacks=callbacks,
    )
    trainer.hadpo_info = {
        "family": family.name,
        "lora_target": config.lora_target or family.lora_target_regex,
        "pair_forward": "shared prefix" if collator.shared_prefix else "two sequences",
        "data": {**dataset.stats(), "dropped_too_long": dropped},
        **({"warmup": warmup} if warmup else {}),
    }
    return trainer


def pair_collator(processor, family, config: HADPOConfig, decoder_start: int | None) -> PreferenceCollator:
    """The pairs' collator with the run's token weights, pair weights and corrupted images."""
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


def reference_model(config: HADPOConfig, model, family) -> torch.nn.Module | None:
    """The reference of `copy` and `precomputed`: the weights of ref_model_name_or_path, else the model itself
    (a frozen copy for `copy`). None for `adapters` (the policy with its adapters disabled)."""
    if config.reference == "adapters":
        return None
    if config.ref_model_name_or_path:
        return load_model(config.ref_model_name_or_path, config, family)
    return copy.deepcopy(model) if config.reference == "copy" else model


def _precompute(config: HADPOConfig, ref_model, collator, dataset, eval_dataset, warmed: bool) -> None:
    """Reference log-probs of every pair, computed once; every process scores its share of what the cache lacks and
    rank 0 merges (a collective)."""
    ref_name = config.ref_model_name_or_path or config.model_name_or_path
    fingerprint = model_fingerprint(ref_model, ref_name + (" after the warm start" if warmed else ""))
    for data in filter(None, (dataset, eval_dataset)):
        data.reference = precompute_reference(
            ref_model.to(config.device),
            data.pairs(),
            collator,
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


def run_training(config: HADPOConfig, resume: bool = False, callbacks=None, processor=None) -> HADPOTrainer:
    checkpoint = last_complete_checkpoint(config.output_dir) if resume else None
    trainer = build_trainer(config, callbacks, processor)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_outputs(trainer)
    return trainer


def last_complete_checkpoint(output_dir: str | Path) -> Path:
    """The newest checkpoint-N of `output_dir` whose save finished. The Trainer writes trainer_state.json last,
    so a run killed inside a save leaves a folder without it (or with it cut short): that folder is passed over
    (logged) and left for the next save of step N to overwrite."""
    folders = sorted(
        (
            p
            for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
            if p.is_dir() and p.name.rpartition("-")[2].isdigit()
        ),
        key=lambda p: int(p.name.rpartition("-")[2]),
        reverse=True,
    )
    for folder in folders:
        try:
            state = json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
            complete = state.get("global_step") == int(folder.name.rpartition("-")[2])
        except (OSError, ValueError):
            complete = False
        if complete:
            return folder
        log.warning("%s: incomplete checkpoint (the save was interrupted); resuming from an earlier one", folder)
    raise RecordError(
        f"--resume: no complete checkpoint in output_dir {output_dir}"
        f"{f' ({len(folders)} incomplete)' if folders else ''}; run without --resume to start over"
    )


def save_outputs(trainer: HADPOTrainer) -> None:
    """Adapter (or full model) + processor, trainer state, resolved config, model card, merged model."""
    config: HADPOConfig = trainer.args
    out = Path(config.output_dir)
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
