"""Tiny random models of every supported family and language model (one case each), saved like hub
checkpoints, and a handful of pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_families import build_tiny_instructblip, build_tiny_llava_next, build_tiny_qwen2_vl
from tiny_minigpt4 import build_tiny_minigpt4

from hadpo.models import FAMILIES, VLMFamily
from hadpo.records import PreferencePair, write_jsonl
from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer

CORPUS = [
    "Describe this image in detail. There is a red square. There is a blue circle and a dog.",
    "Is there a dog in the image? No, there is no dog. Yes, there is a dog.",
    "Is there a cup in the image? Is there a knife in the image? Yes No yes no",
] * 20


def _llava15(texts):
    return build_tiny_llava(train_tokenizer(texts, vocab_size=300), TinyLlavaSpec(text_layers=2, text_hidden=64))


# case -> (family name, builder of (model, processor) from a text corpus)
CASES = {
    "llava15": ("llava15", _llava15),
    "llava_next": ("llava_next", build_tiny_llava_next),
    "qwen2_vl": ("qwen2_vl", build_tiny_qwen2_vl),
    "qwen2_5_vl": ("qwen2_vl", lambda texts: build_tiny_qwen2_vl(texts, version="2.5")),
    "instructblip_llama": ("instructblip", build_tiny_instructblip),
    "instructblip_t5": ("instructblip", lambda texts: build_tiny_instructblip(texts, language_model="t5")),
    "minigpt4_vicuna": ("minigpt4", lambda texts: build_tiny_minigpt4(texts, "vicuna")),
    "minigpt4_llama2": ("minigpt4", lambda texts: build_tiny_minigpt4(texts, "llama2")),
}


@dataclass(frozen=True)
class TinyModel:
    case: str  # e.g. instructblip_t5
    family: VLMFamily
    folder: Path  # the saved model + processor


@pytest.fixture(scope="session", params=list(CASES))
def family_model(request, tmp_path_factory) -> TinyModel:
    torch.manual_seed(0)
    family_name, builder = CASES[request.param]
    model, processor = builder(CORPUS)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return TinyModel(request.param, FAMILIES[family_name], folder)


@pytest.fixture(scope="session")
def family_pairs(tmp_path_factory):
    """Six pairs on three images of different sizes (any-res tiling differs per image for LLaVA-NeXT)."""
    folder = tmp_path_factory.mktemp("family_pairs")
    colours = [
        ("red", (220, 30, 30), (48, 48)),
        ("blue", (30, 60, 220), (64, 40)),
        ("green", (30, 200, 60), (40, 56)),
    ]
    pairs = []
    for i, (name, rgb, size) in enumerate(colours):
        Image.new("RGB", size, rgb).save(folder / f"{i}.png")
        common = dict(images=[f"{i}.png"], image_id=str(i))
        pairs.append(
            PreferencePair(
                prompt="Describe this image in detail.",
                chosen=f"There is a {name} square.",
                rejected="There is a dog and a blue circle.",
                kind="desc",
                pair_id=f"d{i}",
                **common,
            )
        )
        pairs.append(
            PreferencePair(
                prompt="Is there a dog in the image?",
                chosen="No, there is no dog.",
                rejected="Yes, there is a dog.",
                kind="qa",
                pair_id=f"q{i}",
                **common,
            )
        )
    write_jsonl(folder / "pairs.jsonl", pairs)
    return folder / "pairs.jsonl"
