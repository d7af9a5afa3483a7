"""Qwen2-VL and Qwen2.5-VL (`Qwen2VLForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`).

The vision encoder is `model.visual`, whose patch merger (`model.visual.merger`) is the projector; images
arrive as flattened patches (`pixel_values`, (sum of patches, C*T*P*P)) with one (t, h, w) grid per image
(`image_grid_thw`), the prompt holds `<|vision_start|><|image_pad|>...<|vision_end|>` per image, and M-RoPE
needs `mm_token_type_ids` (1 on image tokens), which the collator builds.

`Qwen2VLImageOnlyProcessor` is the stock processor without its video half: transformers' Qwen2-VL video
processor needs torchvision, which image-only training does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

from hadpo.models.base import VLMFamily


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


@dataclass(frozen=True)
class Qwen2VLFamily(VLMFamily):
    def load_processor(self, name_or_path: str):
        if is_torchvision_available():
            return AutoProcessor.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        template_file = Path(name_or_path) / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else tokenizer.chat_template
        return Qwen2VLImageOnlyProcessor(AutoImageProcessor.from_pretrained(name_or_path), tokenizer, template)


QWEN2_VL = Qwen2VLFamily(
    name="qwen2_vl",
    model_types=("qwen2_vl", "qwen2_5_vl"),
    language_model_prefix="model.language_model",
    vision_tower_prefixes=("model.visual",),
    projector_prefixes=("model.visual.merger",),
    image_keys=("pixel_values", "image_grid_thw"),
    mm_token_types=True,
)
