"""Qwen2-VL and Qwen2.5-VL (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`).

The vision encoder is `model.visual`, whose patch merger (`model.visual.merger`) is the projector; images arrive
as flattened patches (`pixel_values`, (sum of patches, C*T*P*P)) with one (t, h, w) grid per image
(`image_grid_thw`), and the prompt holds `<|vision_start|><|image_pad|>...<|vision_end|>` per image.
"""

from __future__ import annotations

from hadpo.models.base import VLMFamily

QWEN2_VL = VLMFamily(
    name="qwen2_vl",
    model_types=("qwen2_vl", "qwen2_5_vl"),
    language_model_prefix="model.language_model",
    vision_tower_prefixes=("model.visual",),
    projector_prefixes=("model.visual.merger",),
    image_keys=("pixel_values", "image_grid_thw"),
)
