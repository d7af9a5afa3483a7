"""InstructBLIP (`InstructBlipForConditionalGeneration`): ViT (`vision_model`) -> Q-Former (`qformer`, with
`query_tokens`) -> `language_projection` -> a causal LM (`language_model`, Vicuna in the paper's 13B run).

There is no chat template: as in LAVIS, which the HA-DPO release trained with, the LM reads the plain
instruction and the answer follows it, ended by the end-of-sequence token. The processor itself puts
`num_query_tokens` image tokens before the text and also feeds the instruction to the Q-Former
(`qformer_input_ids`), so a prompt must not carry an image placeholder, and one image per pair is the model's
only form.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadpo.models.base import VLMFamily


@dataclass(frozen=True)
class InstructBlipFamily(VLMFamily):
    def image_token(self, processor) -> str:
        token = processor.image_token
        return getattr(token, "content", token)

    def load_processor(self, name_or_path: str):
        from tokenizers import AddedToken
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(name_or_path)
        # transformers' processor needs an AddedToken here but takes a tokenizer's string image_token as is.
        if isinstance(processor.image_token, str):
            processor.image_token = AddedToken(processor.image_token, normalized=False, special=True)
        return processor

    def prompt_text(self, processor, prompt: str, n_images: int) -> str:
        if n_images != 1:
            raise ValueError(f"InstructBLIP takes exactly one image per prompt, got {n_images}")
        token = self.image_token(processor)
        if token in prompt:
            raise ValueError(
                f"InstructBLIP prompts must not contain '{token}': the processor adds the image tokens"
            )
        return prompt

    def response_text(self, processor, response: str) -> str:
        return response + processor.tokenizer.eos_token


INSTRUCTBLIP = InstructBlipFamily(
    name="instructblip",
    model_types=("instructblip",),
    language_model_prefix="language_model.model",
    vision_tower_prefixes=("vision_model",),
    projector_prefixes=("qformer", "query_tokens", "language_projection"),
    image_keys=("pixel_values", "qformer_input_ids", "qformer_attention_mask"),
)
