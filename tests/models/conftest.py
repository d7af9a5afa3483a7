"""Tiny random models of every supported family, saved like hub checkpoints, and a handful of pairs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tiny_families import build_tiny_instructblip, build_tiny_llava_next, build_tiny_qwen2_vl

from hadpo.records import PreferencePair, write_jsonl
from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer

CORPUS = [
    "Describe this image in detail. There is a red square. There is a blue circle and a dog.",
    "Is there a dog in the image? No, there is no dog. Yes, there is a dog.",
] * 20


def _llava15():
    return build_tiny_llava(
        train_tokenizer(CORPUS, vocab_size=300), TinyLlavaSpec(text_layers=2, text_hidden=64)
    )


BUILDERS = {
    "llava15": _llava15,
    "llava_next": build_tiny_llava_next,
    "qwen2_vl": build_tiny_qwen2_vl,
    "instructblip": build_tiny_instructblip,
}



@pytest.fixture(scope="session", params=list(BUILDERS))
def family_model(request, tmp_path_factory):
    """(family name, folder with a tiny random model + processor of that family)."""
    torch.manual_seed(0)
    builder = BUILDERS[request.param]
    model, processor = builder() if request.param == "llava15" else builder(CORPUS)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return request.param, folder


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
