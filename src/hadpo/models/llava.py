"""LLaVA-1.5 (`LlavaForConditionalGeneration`) and LLaVA-NeXT (`LlavaNextForConditionalGeneration`).

Both keep the language model at `model.language_model`, the CLIP tower at `model.vision_tower` and the MLP
projector at `model.multi_modal_projector` (transformers >= 4.52 layout). LLaVA-NeXT adds `image_sizes`
(any-res tiling) and a learned `image_newline` vector, counted with the projector.
"""

from __future__ import annotations

from hadpo.models.base import VLMFamily

LLAVA15 = VLMFamily(
    name="llava15",
    model_types=("llava",),
    language_model_prefix="model.language_model",
    vision_tower_prefixes=("model.vision_tower",),
    projector_prefixes=("model.multi_modal_projector",),
    image_keys=("pixel_values",),
)

LLAVA_NEXT = VLMFamily(
    name="llava_next",
    model_types=("llava_next",),
    language_model_prefix="model.language_model",
    vision_tower_prefixes=("model.vision_tower",),
    projector_prefixes=("model.multi_modal_projector", "model.image_newline"),
    image_keys=("pixel_values", "image_sizes"),
)
