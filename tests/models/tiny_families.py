"""Tiny random LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL and InstructBLIP (Llama or FlanT5 language model) models with
working processors, built from config (like `tiny.py` does for LLaVA-1.5), so that every supported family is
exercised by tests without downloads (MiniGPT-4's builder is in tiny_minigpt4.py).

LLaVA-NeXT reuses tiny.py's tokenizer and vicuna-style template; Qwen2-VL gets its ChatML template and its
vision special tokens added to a locally trained tokenizer. InstructBLIP's dropouts are left on (0.1) so that
tests can see training turn every one of them off.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken
from transformers import (
    CLIPVisionConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    T5Config,
)
from transformers.models.blip import BlipImageProcessorPil
from transformers.models.llava_next import LlavaNextImageProcessorPil
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from hadpo.models.qwen2_vl import Qwen2VLImageOnlyProcessor
from hadpo.world.tiny import CHAT_TEMPLATE, IMAGE_TOKEN, train_tokenizer

QWEN_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GRID_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def _text_sizes(vocab_size: int, pad_token_id: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )


def build_tiny_llava_next(texts: Iterable[str]):
    """A tiny `LlavaNextForConditionalGeneration` (32-pixel tiles, 16-pixel patches, any-res up to 64x64)."""
    tokenizer = train_tokenizer(texts, vocab_size=300)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=GRID_PINPOINTS,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=16,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=16,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=LlamaConfig(num_key_value_heads=4, **_text_sizes(len(tokenizer), tokenizer.pad_token_id)),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=GRID_PINPOINTS,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=4,
    )
    config.pad_token_id = tokenizer.pad_token_id
    return LlavaNextForConditionalGeneration(config), processor


def build_tiny_qwen2_vl(texts: Iterable[str], version: str = "2"):
    """A tiny `Qwen2VLForConditionalGeneration`, or with version "2.5" `Qwen2_5_VLForConditionalGeneration`
    (8-pixel patches merged 2x2: a 48x48 image gives 9 tokens)."""
    tokenizer = train_tokenizer(texts, vocab_size=300, bos=False)  # Qwen's tokenizer adds no <s>
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, *QWEN_TOKENS]})
    tokenizer.image_token = "<|image_pad|>"
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=32 * 32,
        max_pixels=48 * 48,
        patch_size=8,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = Qwen2VLImageOnlyProcessor(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 4], "rope_theta": 10000.0},
        **_text_sizes(len(tokenizer), tokenizer.pad_token_id),
    )
    vision = dict(depth=1, num_heads=2, patch_size=8, spatial_merge_size=2, temporal_patch_size=2)
    if version == "2.5":  # windowed attention except in the full-attention blocks; the merger outputs the LM width
        vision.update(
            hidden_size=32, intermediate_size=64, out_hidden_size=64, window_size=16, fullatt_block_indexes=[0]
        )
    else:
        vision.update(embed_dim=32, hidden_size=64)
    config_class, model_class = {
        "2": (Qwen2VLConfig, Qwen2VLForConditionalGeneration),
        "2.5": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration),
    }[version]
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    return model_class(config), processor


def build_tiny_instructblip(texts: Iterable[str], language_model: str = "llama"):
    """A tiny `InstructBlipForConditionalGeneration`: 48x48 images, a 1-layer Q-Former, 4 query tokens, and a
    Llama (decoder-only, as Vicuna) or T5 (encoder-decoder, as FlanT5) language model."""
    texts = list(texts)
    tokenizer = train_tokenizer(texts, vocab_size=300, bos=language_model != "t5")  # T5's adds no <s>
    qformer_tokenizer = train_tokenizer(texts, vocab_size=260)
    image_processor = BlipImageProcessorPil(size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=4,
    )
    processor.image_token = AddedToken(IMAGE_TOKEN, normalized=False, special=True)
    config = InstructBlipConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=48,
            patch_size=16,
            attention_dropout=0.1,
        ),
        qformer_config=dict(
            vocab_size=len(qformer_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            encoder_hidden_size=32,
            pad_token_id=qformer_tokenizer.pad_token_id,
        ),
        text_config=_instructblip_text(language_model, tokenizer),
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    return InstructBlipForConditionalGeneration(config), processor


def _instructblip_text(language_model: str, tokenizer) -> dict:
    if language_model == "t5":
        return T5Config(
            vocab_size=len(tokenizer),
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.1,
            tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        ).to_dict()
    return LlamaConfig(
        num_key_value_heads=4, attention_dropout=0.1, **_text_sizes(len(tokenizer), tokenizer.pad_token_id)
    ).to_dict()
