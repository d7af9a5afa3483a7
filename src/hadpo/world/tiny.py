"""Tiny, real `transformers` VLMs built from config: a locally trained tokenizer, a LLaVA processor with a chat
template, and a `LlavaForConditionalGeneration` with a small CLIP vision tower and a small Llama.

No weights can be downloaded on our machines, so the world's base model and every test build their models here.
What comes out is an ordinary hub-style model: `save_pretrained` writes a folder that
`AutoModelForImageTextToText.from_pretrained` / `AutoProcessor.from_pretrained` load like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field, model_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip import CLIPImageProcessorPil

from hadpo.config import Config

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]

# A LLaVA-1.5 (vicuna_v1) style template: "USER: <image>\n{prompt} ASSISTANT: {answer}</s>".
# The generation prompt ends with "ASSISTANT:" so that the answer starts with a space-prefixed word.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' ' }}"
    "{% else %}{{ 'ASSISTANT:' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ ' ' + part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '</s>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, bos: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts`, with LLaVA's special tokens; with `bos` every encoded text
    starts with <s>, as with Llama's tokenizer (T5's and Qwen's add none: their tiny test builders pass False).

    Byte-level BPE can encode any text, so a judge's or a user's wording never hits an unknown token; on the
    world's small vocabulary nearly every word ends up a single token.
    """
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if bos:  # the processor's and the world's pretraining encodings then agree: <s> first
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",  # decoder-only generation pads on the left
    )
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return fast


class TinyLlavaSpec(Config):
    """Shape of a tiny LLaVA. Defaults: ~1M parameters, one image token per 16-pixel patch."""

    image_size: int = Field(48, gt=0, description="square images, pixels per side")
    patch_size: int = Field(16, gt=0, description="vision patch side; one image token per patch")
    vision_hidden: int = Field(64, gt=0, description="CLIP vision tower width")
    vision_layers: int = Field(2, gt=0, description="CLIP vision tower depth")
    vision_heads: int = Field(4, gt=0, description="CLIP attention heads")
    text_hidden: int = Field(128, gt=0, description="Llama width (also the projector's output)")
    text_layers: int = Field(3, gt=0, description="Llama depth")
    text_heads: int = Field(4, gt=0, description="Llama attention heads (as many key/value heads)")
    text_intermediate: int = Field(384, gt=0, description="Llama MLP width")
    max_positions: int = Field(512, gt=0, description="longest sequence, image tokens included")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @model_validator(mode="after")
    def _head_widths(self) -> TinyLlavaSpec:
        check_head_widths(self)
        return self


def check_head_widths(shape) -> None:
    """Attention splits a width into equal heads, and Llama's rotary embedding turns pairs of a head's dimensions:
    a shape that breaks either would fail inside transformers when the model is built (exit 1, after the world is
    drawn), so it is a config error."""
    for width, heads in (("vision_hidden", "vision_heads"), ("text_hidden", "text_heads")):
        if getattr(shape, width) % getattr(shape, heads):
            raise ValueError(
                f"{width} {getattr(shape, width)} is not a multiple of {heads} {getattr(shape, heads)} (each "
                "attention head gets an equal share of the width)"
            )
    if (shape.text_hidden // shape.text_heads) % 2:
        raise ValueError(
            f"text_hidden {shape.text_hidden} / text_heads {shape.text_heads} is odd (the rotary embedding turns "
            "pairs of a head's dimensions)"
        )


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        do_center_crop=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",  # drop CLS: one image token per patch
        num_additional_image_tokens=1,  # the CLS token the vision tower adds
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )


def build_tiny_llava(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec | None = None):
    """A randomly initialised `LlavaForConditionalGeneration` sized by `spec`, with its processor."""
    spec = spec or TinyLlavaSpec()
    if spec.image_size % spec.patch_size:
        raise ValueError(f"image_size {spec.image_size} is not a multiple of patch_size {spec.patch_size}")
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 4,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=spec.num_patches,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    config.pad_token_id = tokenizer.pad_token_id
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, build_processor(tokenizer, spec)
