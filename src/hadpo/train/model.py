"""The model side of a training run: loading the base VLM (with 4-bit weights for QLoRA) and making it a policy
(LoRA adapters on the language model, or full fine-tuning, the vision tower and projector frozen per flags)."""

from __future__ import annotations

import importlib.util

import torch
from transformers import AutoModelForImageTextToText, set_seed

from hadpo.models import VLMFamily, disable_dropout
from hadpo.train.config import HADPOConfig
from hadpo.train.distributed import import_model_classes
from hadpo.train.engines import Engine


def load_model(name_or_path: str, config: HADPOConfig, family: VLMFamily | None = None) -> torch.nn.Module:
    kwargs: dict = {"dtype": getattr(torch, config.model_dtype)}
    if config.finetuning == "qlora":
        if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
            raise ValueError("finetuning=qlora needs bitsandbytes and a CUDA GPU; use lora or full here")
        from transformers import BitsAndBytesConfig

        skip = list((family.vision_tower_prefixes + family.projector_prefixes) if family else ()) + ["lm_head"]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=skip,
        )
    import_model_classes(name_or_path)  # outside any DeepSpeed zero.Init (see there)
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
    if config.disable_dropout:
        disable_dropout(model)
    return model


def prepare_policy(
    model: torch.nn.Module, config: HADPOConfig, family: VLMFamily, engine: Engine | None = None
) -> torch.nn.Module:
    """Full fine-tuning: freeze vision tower / projector per flags. LoRA: adapters on the language model's
    linear layers only; an unfrozen projector or tower is trained in full as a PEFT `modules_to_save`. Under
    ZeRO-3 the adapters keep the base weights' dtype: PEFT's fp32 adapters beside bf16 weights break ZeRO-3's
    all-gather (TRL #6089, DeepSpeed #8072)."""

    def frozen(name: str) -> bool:
        return (config.freeze_vision_tower and family.is_vision_tower(name)) or (
            config.freeze_projector and family.is_projector(name)
        )

    if config.finetuning == "full":
        for name, param in model.named_parameters():
            param.requires_grad_(not frozen(name))
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.finetuning == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.checkpointing_on)
    unfrozen = [] if config.freeze_projector else list(family.projector_prefixes)
    if not config.freeze_vision_tower:
        unfrozen = list(family.vision_tower_prefixes)  # the tower prefix holds the projector in Qwen2-VL
        unfrozen += [] if config.freeze_projector else [p for p in family.projector_prefixes if p not in unfrozen]
    modules = [name for name in unfrozen if _is_module(model, name)]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target or family.lora_target_regex,
        modules_to_save=modules or None,
        bias="none",
    )
    if config.checkpointing_on:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed LoRA layers still need grads
    zero3 = engine is not None and engine.kind == "deepspeed" and engine.shards_parameters
    set_seed(config.seed)  # the adapters' initial weights: the same whatever was loaded or drawn before
    peft_model = get_peft_model(model, lora, autocast_adapter_dtype=not zero3)
    adapted = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    outside = [name for name in adapted if family.is_vision_tower(name) or family.is_projector(name)]
    if outside:
        raise ValueError(f"config key 'lora_target' matches vision modules (e.g. {outside[0]}); LoRA is for the LM")
    return peft_model


def _is_module(model: torch.nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False
