"""InstructBLIP (`InstructBlipForConditionalGeneration`): ViT (`vision_model`) -> Q-Former (`qformer`, with
`query_tokens`) -> `language_projection` -> a language model (`language_model`): a causal LM (Vicuna in the
paper's 13B run, Llama) or an encoder-decoder (FlanT5).

There is no chat template: as in LAVIS, which the HA-DPO release trained with, the language model reads the plain
instruction and the answer follows it, ended by the end-of-sequence token; prompt and answer are tokenised apart
(LAVIS tokenises the answer on its own). With FlanT5 the instruction goes to the encoder and the answer to the
decoder (hadpo's collators and `hadpo.inference` handle both, from `decoder_start_token_id`). The processor
itself puts `num_query_tokens` image tokens before the text and also feeds the instruction to the Q-Former
(`qformer_input_ids`), so a prompt must not carry an image placeholder, and one image per pair is the model's
only form.

LoRA goes on the language model's q, k, v projections (`q_proj`... in Llama, `q`... in T5), as the release did
(r 64, alpha 16); the Q-Former, its queries and the projection count as the projector (frozen by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import AddedToken
from transformers import AutoProcessor

from hadpo.models.base import LM_QKV_NAMES, VLMFamily


@dataclass(frozen=True)
class InstructBlipFamily(VLMFamily):
    def image_token(self, processor) -> str:
        token = processor.image_token
        return getattr(token, "content", token)

    def load_processor(self, name_or_path: str):
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
            raise ValueError(f"InstructBLIP prompts must not contain '{token}': the processor adds the image tokens")
        return prompt

    def response_text(self, processor, response: str) -> str:
        return response + processor.tokenizer.eos_token


INSTRUCTBLIP = InstructBlipFamily(
    name="instructblip",
    model_types=("instructblip",),
    language_model_prefix="language_model",
    vision_tower_prefixes=("vision_model",),
    projector_prefixes=("qformer", "query_tokens", "language_projection"),
    image_keys=("pixel_values", "qformer_input_ids", "qformer_attention_mask"),
    lora_names=LM_QKV_NAMES,
    separate_answer_tokens=True,
)
