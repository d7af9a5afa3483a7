"""Shared fixtures: a tiny random LLaVA saved like a hub checkpoint, a small annotated image set, and a small
pairs file (`train_helpers.make_pairs`: desc + QA, with rewrites, over solid-colour images).

Neither depends on the scene world's data, so every wing's tests run on generic data; the random LLaVA is
built by the world's tiny-model builder (`hadpo.world.tiny`), the one place hadpo builds models from scratch."""

from __future__ import annotations

import pytest
import torch

from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer
from scenes import write_scenes
from train_helpers import make_pairs

CORPUS = [
    "USER: Describe this image in detail. ASSISTANT: There is a red square on the left.",
    "Is there a dog in the image? Yes, there is a dog. No, there is no cat.",
    "A blue circle is at the top right. A green triangle sits in the center of the picture.",
    "Yes. No. yes no There are two cups and one knife and a fork on the table.",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads on a shared 2-core machine spin-wait
    (measured ~100x slower for a tiny linear layer under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder holding a tiny random LLaVA + processor (load with AutoModelForImageTextToText/AutoProcessor)."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(CORPUS * 20, vocab_size=300)
    model, processor = build_tiny_llava(tokenizer, TinyLlavaSpec(text_layers=2, text_hidden=64, text_intermediate=128))
    folder = tmp_path_factory.mktemp("tiny_llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    make_pairs(folder)
    return folder / "pairs.jsonl"


@pytest.fixture
def image_records(tmp_path):
    """Four 48x48 PNGs with coloured boxes, annotated completely; returns the path of images.jsonl."""
    return write_scenes(
        tmp_path,
        [
            [
                ("square", "red", (2, 2, 20, 20)),
                ("circle", "blue", (26, 26, 44, 44)),
                ("knife", "green", (26, 2, 44, 20)),
            ],
            [("dog", "red", (4, 4, 30, 30))],
            [("cup", "blue", (2, 2, 14, 14)), ("fork", "red", (20, 20, 30, 30)), ("knife", "red", (32, 32, 46, 46))],
            [],
        ],
    )
