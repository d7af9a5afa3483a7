"""A tiny random MiniGPT-4 of either variant, and the same weights written as the release's files (the EVA ViT
file, the BLIP-2 checkpoint, the MiniGPT-4 checkpoint and the language-model folder) under the key names LAVIS and
MiniGPT-4 use, written here by hand from those codebases' module names, independently of the converter's table.

The files also hold what the real ones hold and the release never loads: the EVA file one block more than the
model has (eva_vit_g.pth: 40, the release 39) and EVA-CLIP's final norm and head; the MiniGPT-4 checkpoint the
buffers the release's runner saves beside the trained projection (it drops frozen parameters only): the Llama
rotary frequencies of the release's own modeling_llama.py and, for Vicuna, the Q-Former's position ids."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from hadpo.models.minigpt4 import MiniGPT4Config, MiniGPT4ForConditionalGeneration, minigpt4_processor
from hadpo.world.tiny import train_tokenizer

VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
    attention_dropout=0.1,
)
QFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# What the converter needs to build this tiny architecture instead of the release's (EVA ViT-g, 32 queries).
CONVERTER_OVERRIDES = {
    "vicuna": {"vision_config": VISION, "qformer_config": QFORMER, "num_query_tokens": 4},
    "llama2": {"vision_config": VISION, "qformer_config": None},
}


def build_tiny_minigpt4(texts: Iterable[str], variant: str):
    """(model, processor): 32x32 images in 8-pixel patches; Vicuna: a 2-layer Q-Former with 4 queries; Llama-2:
    16 patches -> 4 tokens of 4 concatenated patches; a 2-layer Llama."""
    tokenizer = train_tokenizer(list(texts), vocab_size=300)
    overrides = CONVERTER_OVERRIDES[variant]
    num_tokens = 4  # 4 queries, or 16 patches / 4
    processor = minigpt4_processor(tokenizer, variant, num_tokens, image_size=VISION["image_size"])
    text = dict(
        model_type="llama",
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        attention_dropout=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = MiniGPT4Config(text_config=text, image_token_index=processor.image_token_id, **overrides)
    model = MiniGPT4ForConditionalGeneration(config)
    with torch.no_grad():  # EVA's attention biases: query and value learned, no key bias
        for layer in model.vision_model.encoder.layers:
            width = layer.self_attn.embed_dim
            layer.self_attn.qkv.bias.copy_(torch.cat([torch.randn(width), torch.zeros(width), torch.randn(width)]))
    return model, processor


def write_release_files(model: MiniGPT4ForConditionalGeneration, processor, folder: Path) -> dict[str, Path]:
    """The model's weights as the release's files; returns {"checkpoint", "vision", "qformer"?, "language_model"}."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eva = {
        "cls_token": state["vision_model.embeddings.class_embedding"],
        "pos_embed": state["vision_model.embeddings.position_embedding"],
        "patch_embed.proj.weight": state["vision_model.embeddings.patch_embedding.weight"],
        "patch_embed.proj.bias": state["vision_model.embeddings.patch_embedding.bias"],
    }
    for i in range(model.config.vision_config.num_hidden_layers):
        ours = f"vision_model.encoder.layers.{i}."
        for theirs, name in [
            ("norm1", "layer_norm1"),
            ("norm2", "layer_norm2"),
            ("attn.proj", "self_attn.projection"),
            ("mlp.fc1", "mlp.fc1"),
            ("mlp.fc2", "mlp.fc2"),
        ]:
            for kind in ("weight", "bias"):
                eva[f"blocks.{i}.{theirs}.{kind}"] = state[f"{ours}{name}.{kind}"]
        eva[f"blocks.{i}.attn.qkv.weight"] = state[f"{ours}self_attn.qkv.weight"]
        eva[f"blocks.{i}.attn.q_bias"], key_bias, eva[f"blocks.{i}.attn.v_bias"] = state[
            f"{ours}self_attn.qkv.bias"
        ].chunk(3)
        assert not key_bias.any()
    eva |= _unloaded_eva_keys(eva, model.config.vision_config.num_hidden_layers)
    files = {"vision": folder / "eva_vit_g.pth", "checkpoint": folder / "pretrained_minigpt4.pth"}
    torch.save(eva, files["vision"])
    torch.save({"model": _stage2_state(model, state), "epoch": 4}, files["checkpoint"])
    if model.qformer is not None:
        files["qformer"] = folder / "blip2_pretrained_flant5xxl.pth"
        torch.save({"model": _blip2_state(model, state)}, files["qformer"])
    files["language_model"] = folder / "llm"
    lm = LlamaForCausalLM(model.config.text_config)
    lm.load_state_dict(
        {k.removeprefix("language_model."): v for k, v in state.items() if k.startswith("language_model.")}
    )
    lm.save_pretrained(files["language_model"])
    tokenizer = processor.tokenizer
    tokenizer.save_pretrained(files["language_model"])
    return files


def _unloaded_eva_keys(eva: dict, depth: int) -> dict:
    """A block past the model's depth (random, the shapes of block 0) and EVA-CLIP's final norm and head."""
    extra = {
        key.replace("blocks.0.", f"blocks.{depth}.", 1): torch.randn(tensor.shape)
        for key, tensor in eva.items()
        if key.startswith("blocks.0.")
    }
    width = eva["cls_token"].shape[-1]
    return extra | {
        "norm.weight": torch.ones(width),
        "norm.bias": torch.zeros(width),
        "head.weight": torch.randn(16, width),
        "head.bias": torch.zeros(16),
    }


def _stage2_state(model: MiniGPT4ForConditionalGeneration, state: dict) -> dict:
    """The release runner's checkpoint: the trained projection and every buffer of the model."""
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    frequencies = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    stage2 = {
        "llama_proj.weight": state["language_projection.weight"],
        "llama_proj.bias": state["language_projection.bias"],
    }
    for i in range(text.num_hidden_layers):
        stage2[f"llama_model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = frequencies
    if model.qformer is not None:
        stage2["Qformer.bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    return stage2


def _blip2_state(model: MiniGPT4ForConditionalGeneration, state: dict) -> dict:
    """BLIP-2's stage-2 checkpoint: ln_vision, the queries, the Q-Former (LAVIS's BERT names) and the parts
    MiniGPT-4 does not use (a text feed-forward, the text position buffer, the projection into FlanT5)."""
    width = model.config.qformer_config.hidden_size
    blip2 = {
        "ln_vision.weight": state["vision_model.post_layernorm.weight"],
        "ln_vision.bias": state["vision_model.post_layernorm.bias"],
        "query_tokens": state["query_tokens"],
        "Qformer.bert.embeddings.LayerNorm.weight": state["qformer.layernorm.weight"],
        "Qformer.bert.embeddings.LayerNorm.bias": state["qformer.layernorm.bias"],
        "Qformer.bert.embeddings.position_ids": torch.arange(512).unsqueeze(0),
        "t5_proj.weight": torch.randn(8, width),
        "t5_proj.bias": torch.zeros(8),
    }
    for i in range(model.config.qformer_config.num_hidden_layers):
        ours, theirs = f"qformer.encoder.layer.{i}.", f"Qformer.bert.encoder.layer.{i}."
        blocks = ["attention"] + (
            ["crossattention"] if i % model.config.qformer_config.cross_attention_frequency == 0 else []
        )
        for block in blocks:
            for part in ("query", "key", "value"):
                for kind in ("weight", "bias"):
                    blip2[f"{theirs}{block}.self.{part}.{kind}"] = state[f"{ours}{block}.attention.{part}.{kind}"]
            for part in ("dense", "LayerNorm"):
                for kind in ("weight", "bias"):
                    blip2[f"{theirs}{block}.output.{part}.{kind}"] = state[f"{ours}{block}.output.{part}.{kind}"]
        for kind in ("weight", "bias"):
            blip2[f"{theirs}intermediate_query.dense.{kind}"] = state[f"{ours}intermediate_query.dense.{kind}"]
            blip2[f"{theirs}output_query.dense.{kind}"] = state[f"{ours}output_query.dense.{kind}"]
            blip2[f"{theirs}output_query.LayerNorm.{kind}"] = state[f"{ours}output_query.LayerNorm.{kind}"]
        blip2[f"{theirs}intermediate.dense.weight"] = torch.randn(64, width)  # the text branch: unused
    return blip2
