"""One small adapter per VLM family (prompt format, image inputs, LoRA targets), looked up by name or by a
model's `config.model_type`. Importing this package also registers MiniGPT-4 with transformers' Auto classes."""

from __future__ import annotations

from hadpo.models.base import VLMFamily, decoder_start_token_id, disable_dropout
from hadpo.models.instructblip import INSTRUCTBLIP
from hadpo.models.llava import LLAVA15, LLAVA_NEXT
from hadpo.models.minigpt4 import MINIGPT4
from hadpo.models.qwen2_vl import QWEN2_VL

FAMILIES: dict[str, VLMFamily] = {
    family.name: family for family in (LLAVA15, LLAVA_NEXT, QWEN2_VL, INSTRUCTBLIP, MINIGPT4)
}


def find_family(model_type: str | None) -> VLMFamily | None:
    """The adapter serving `model_type`, or None."""
    return next((family for family in FAMILIES.values() if model_type in family.model_types), None)


def get_family(name: str = "auto", model_type: str | None = None) -> VLMFamily:
    """The adapter named `name`, or with name "auto" the one serving `model_type`."""
    if name != "auto":
        if name not in FAMILIES:
            raise ValueError(f"unknown model family '{name}'; supported: {', '.join(FAMILIES)}")
        return FAMILIES[name]
    family = find_family(model_type)
    if family is None:
        raise ValueError(f"no hadpo adapter for model_type '{model_type}'; supported families: {', '.join(FAMILIES)}")
    return family


__all__ = ["FAMILIES", "VLMFamily", "decoder_start_token_id", "disable_dropout", "find_family", "get_family"]
