"""One small adapter per VLM family (prompt format, image inputs, LoRA targets), looked up by name or by a
model's `config.model_type`."""

from __future__ import annotations

from hadpo.models.base import VLMFamily
from hadpo.models.instructblip import INSTRUCTBLIP
from hadpo.models.llava import LLAVA15, LLAVA_NEXT
from hadpo.models.qwen2_vl import QWEN2_VL

FAMILIES: dict[str, VLMFamily] = {
    family.name: family for family in (LLAVA15, LLAVA_NEXT, QWEN2_VL, INSTRUCTBLIP)
}


def get_family(name: str = "auto", model_type: str | None = None) -> VLMFamily:
    """The adapter named `name`, or with name "auto" the one serving `model_type`."""
    if name != "auto":
        if name not in FAMILIES:
            raise ValueError(f"unknown model family '{name}'; supported: {', '.join(FAMILIES)}")
        return FAMILIES[name]
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ValueError(
        f"no hadpo adapter for model_type '{model_type}'; supported families: {', '.join(FAMILIES)} "
        "(MiniGPT-4 is not supported yet)"
    )


__all__ = ["FAMILIES", "VLMFamily", "get_family"]
