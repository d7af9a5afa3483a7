"""What the trainer needs to know about a VLM family, behind one small dataclass.

A family adapter says how a plain user prompt plus images becomes model text (through the processor's own chat
template), which image tensors the processor returns, which modules are the language model (LoRA targets), the
vision tower and the projector (frozen by default). Everything else goes through the ordinary `transformers`
API (`AutoModelForImageTextToText`, `AutoProcessor`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

LM_LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The attention projections the HA-DPO release adapted on MiniGPT-4 and InstructBLIP (Llama names; T5 names
# its own q, k, v).
LM_QKV_NAMES = ("q_proj", "k_proj", "v_proj", "q", "k", "v")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "name" or "org/name"


def model_location_problem(name_or_path: str) -> str:
    """Why `name_or_path` can be neither a model folder here nor a hub id ("" when it can be one): a folder that
    does not exist fails here with its name, not deep in transformers with "Repo id must be in the form"."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return "" if path.is_dir() else f"{name_or_path} is a file, not a model folder"
    if not HUB_ID.fullmatch(name_or_path):
        return f"{name_or_path}: no such model folder (nor a hub id 'org/name')"
    return ""


def lm_linear_regex(language_model_prefix: str, names: tuple[str, ...] = LM_LINEAR_NAMES) -> str:
    """A PEFT `target_modules` regex (matched in full against module names) for the language model's linear
    layers only: never the vision tower, the projector or the output head."""
    return rf"{re.escape(language_model_prefix)}\..*\.({'|'.join(names)})"


@dataclass(frozen=True)
class VLMFamily:
    name: str
    model_types: tuple[str, ...]  # values of `config.model_type` this adapter serves
    language_model_prefix: str  # module path of the language model, e.g. "model.language_model"
    vision_tower_prefixes: tuple[str, ...]  # parameter-name prefixes of the vision encoder
    projector_prefixes: tuple[str, ...]  # parameter-name prefixes of the vision-to-language projector
    image_keys: tuple[str, ...]  # processor outputs that carry the images (besides input_ids/attention_mask)
    # Qwen2-VL's M-RoPE needs `mm_token_type_ids` (1 on image tokens), a per-token tensor built by the
    # collator.
    mm_token_types: bool = False
    lora_names: tuple[str, ...] = LM_LINEAR_NAMES  # default LoRA targets: these layers of the language model
    # The model's own format tokenises prompt and answer apart (LAVIS, MiniGPT-4), as the collators do for every
    # family: answer words are looked up that way too (hadpo.inference's yes/no), not inside a templated turn.
    separate_answer_tokens: bool = False

    @property
    def lora_target_regex(self) -> str:
        return lm_linear_regex(self.language_model_prefix, self.lora_names)

    def is_vision_tower(self, parameter_name: str) -> bool:
        return _has_prefix(parameter_name, self.vision_tower_prefixes) and not self.is_projector(parameter_name)

    def is_projector(self, parameter_name: str) -> bool:
        return _has_prefix(parameter_name, self.projector_prefixes)

    def image_token(self, processor) -> str:
        return processor.image_token

    def image_token_id(self, processor) -> int:
        return processor.tokenizer.convert_tokens_to_ids(self.image_token(processor))

    def load_processor(self, name_or_path: str):
        # Deferred: the Auto classes load transformers' processing code; train/collate.py imports this module for
        # the VLMFamily type alone.
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(name_or_path)

    def messages(self, prompt: str, n_images: int, response: str | None = None) -> list[dict]:
        """A one-turn conversation: the images first, then the prompt (LLaVA's and Qwen's training order)."""
        content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
        turns = [{"role": "user", "content": content}]
        if response is not None:
            turns.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
        return turns

    def prompt_text(self, processor, prompt: str, n_images: int) -> str:
        """The templated prompt, up to where the answer starts. A prompt that already holds the image
        placeholder(s) itself is templated as text only, so the placeholder is not doubled."""
        if getattr(processor, "chat_template", None) is None:
            raise ValueError(f"the {self.name} processor has no chat template; hadpo formats prompts through it")
        token = self.image_token(processor)
        own = prompt.count(token)
        messages = self.messages(prompt, 0 if own else n_images)
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        found = text.count(token)
        if found != n_images:
            raise ValueError(f"prompt has {found} image placeholder(s) '{token}' for {n_images} image(s)")
        return text

    def response_text(self, processor, response: str) -> str:
        """The answer as the chat template writes it after the generation prompt (leading space, end-of-turn
        token, ...), derived from the template itself so that every family is served by the same code."""
        probe = "hadpo probe"
        prompt = processor.apply_chat_template(self.messages(probe, 0), add_generation_prompt=True)
        full = processor.apply_chat_template(self.messages(probe, 0, response=response))
        if not full.startswith(prompt):
            raise ValueError(f"the {self.name} chat template does not continue its generation prompt")
        return full[len(prompt) :]


def decoder_start_token_id(config) -> int | None:
    """The decoder's start token when the language model is an encoder-decoder (InstructBLIP-FlanT5: the prompt
    goes to the encoder, the answer to the decoder); None for a decoder-only language model."""
    text_config = config.get_text_config(decoder=True)
    if not getattr(text_config, "is_encoder_decoder", False):
        return None
    start = text_config.decoder_start_token_id
    return start if start is not None else text_config.pad_token_id


def disable_dropout(model: torch.nn.Module) -> None:
    """Every dropout off, for training as the paper does: `nn.Dropout` modules, and the probabilities that
    attention layers keep as plain floats and pass to the attention function (InstructBLIP's and BLIP-2's
    Q-Former and vision attention, Llama's `attention_dropout`), which no `nn.Dropout` carries."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)


def _has_prefix(name: str, prefixes: tuple[str, ...]) -> bool:
    # PEFT wraps names as "base_model.model.<name>"; match the family's prefixes anywhere on a dot boundary.
    return any(name == p or name.startswith(p + ".") or f".{p}." in name or name.endswith("." + p) for p in prefixes)
