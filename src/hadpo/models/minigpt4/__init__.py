"""MiniGPT-4 in hadpo: a transformers-style model (`modeling`), its processor and prompt formats (`processing`),
the converter from the release's files (`convert`, with their key layout in `release_layout`), and the family
adapter.

Importing this package registers `minigpt4` with `AutoConfig`, `AutoModelForImageTextToText` and
`AutoProcessor`, so a converted folder loads like any hub checkpoint once hadpo is imported (`hadpo.models` does
it), and `save_pretrained`, PEFT and the Trainer work on it as on LLaVA.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from hadpo.models.base import VLMFamily
from hadpo.models.minigpt4.modeling import MiniGPT4Config, MiniGPT4ForConditionalGeneration
from hadpo.models.minigpt4.processing import MiniGPT4Processor, minigpt4_processor

AutoConfig.register(MiniGPT4Config.model_type, MiniGPT4Config, exist_ok=True)
AutoModelForImageTextToText.register(MiniGPT4Config, MiniGPT4ForConditionalGeneration, exist_ok=True)
AutoProcessor.register(MiniGPT4Config, MiniGPT4Processor, exist_ok=True)

# Frozen by default as in the release: the EVA ViT and its layer norm, and the Q-Former, its queries and the
# linear projection (HA-DPO trained LoRA on the language model's q, k, v only, r 64 / alpha 16).
MINIGPT4 = VLMFamily(
    name="minigpt4",
    model_types=(MiniGPT4Config.model_type,),
    language_model_prefix="language_model",
    vision_tower_prefixes=("vision_model",),
    projector_prefixes=("qformer", "query_tokens", "language_projection"),
    image_keys=("pixel_values",),
    lora_names=("q_proj", "k_proj", "v_proj"),
    separate_answer_tokens=True,
)

__all__ = ["MINIGPT4", "MiniGPT4Config", "MiniGPT4ForConditionalGeneration", "MiniGPT4Processor", "minigpt4_processor"]
