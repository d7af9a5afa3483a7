"""A chain on a tiny LLaVA and a small annotated image set: recipes written as YAML files (as a user writes them),
POPE questions built from the images, and a rounds config over them. Module-scoped, so that a test module can
run one uninterrupted chain and compare others with it."""

from __future__ import annotations

import random

import pytest
import torch
import yaml
from PIL import Image

from hadpo.evaluate.pope import build_pope_files
from hadpo.rounds.config import load_rounds_config
from scenes import COLOURS, write_scenes

OBJECT_WORDS = ["square", "circle", "knife", "dog", "cup", "fork", "cat"]
SCENES = [
    [("square", "red", (2, 2, 20, 20)), ("circle", "blue", (26, 26, 44, 44)), ("knife", "green", (26, 2, 44, 20))],
    [("dog", "red", (4, 4, 30, 30))],
    [("cup", "blue", (2, 2, 14, 14)), ("fork", "red", (20, 20, 30, 30)), ("knife", "red", (32, 32, 46, 46))],
    [("cat", "green", (10, 10, 40, 40)), ("cup", "red", (2, 30, 12, 44))],
]


def write_yaml(path, data: dict):
    path.write_text(yaml.safe_dump(data))
    return path


def write_images(folder) -> object:
    """Four 48x48 scenes of coloured boxes, completely annotated; returns images.jsonl."""
    return write_scenes(folder, SCENES, descriptions=False)


@pytest.fixture(scope="session")
def describer_dir(tiny_model_dir, tmp_path_factory):
    """The session's tiny LLaVA taught, in a few dozen steps, to answer with sentences about objects ("There is a
    red dog."), drawn without looking at the image: descriptions a judge can label, many with a hallucination,
    so that the rounds have description pairs to build."""
    from hadpo.inference import chat_prompt, load_model

    torch.manual_seed(0)
    model, processor = load_model(tiny_model_dir)
    model.train()
    rng = random.Random(0)
    prompt = chat_prompt(processor, "Describe this image in detail.")
    texts = [
        f"{prompt} "
        + " ".join(f"There is a {rng.choice(list(COLOURS))} {rng.choice(OBJECT_WORDS)}." for _ in range(2))
        + processor.tokenizer.eos_token
        for _ in range(32)
    ]
    batches = [
        processor(images=[Image.new("RGB", (48, 48))] * 8, text=texts[i : i + 8], return_tensors="pt", padding=True)
        for i in range(0, len(texts), 8)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        batch = batches[step % len(batches)]
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        labels = labels.masked_fill(labels == model.config.image_token_index, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("describer")
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def chain_files(tmp_path_factory, describer_dir):
    """(rounds.yaml, its folder): a 2-round chain whose every stage takes a second or two."""
    folder = tmp_path_factory.mktemp("chain")
    images = write_images(folder)
    pairs = write_yaml(
        folder / "pairs.yaml",
        {
            "source": {"kind": "folder", "images": str(images)},
            "describe": {"per_image": 2, "max_new_tokens": 12, "batch_size": 4},
            "judge": {"extra_names": OBJECT_WORDS},
            "rewrite": {"k": 1},
            # questions that need no description, so that every round has pairs of both kinds
            "qa": {"co_occurrence_per_image": 1, "short_answers": {"yes": "Yes.", "no": "No."}},
        },
    )
    train = write_yaml(
        folder / "train.yaml",
        {
            "model_name_or_path": str(describer_dir),
            "finetuning": "lora",
            "lora_r": 4,
            "lora_alpha": 8,
            "learning_rate": 5e-3,
            "per_device_train_batch_size": 2,
            "num_train_epochs": 1,
            "save_strategy": "steps",
            "save_steps": 1,
            "use_cpu": True,
            "report_to": [],
            "disable_tqdm": True,
            "seed": 0,
        },
    )
    pope = build_pope_files(images, folder / "pope", num_images=4, per_image=1, seed=0, protocol="hadpo")
    # yes/no questions of a type the pairs never ask stand for the held-out types (here: more existence ones)
    heldout = build_pope_files(images, folder / "heldout", 4, 1, seed=1, splits=["random"], prefix="heldout")
    config = write_yaml(
        folder / "rounds.yaml",
        {
            "rounds": 2,
            "out_dir": str(folder / "chain"),
            "pairs_recipe": str(pairs),
            "train_recipe": str(train),
            "eval": {
                "pope": [str(p) for p in pope.values()],
                "heldout": [str(heldout["random"])],
                "images": str(images),
                "max_new_tokens": 12,
            },
        },
    )
    return config, folder


@pytest.fixture(scope="module")
def load_chain(chain_files):
    """The chain's RoundsConfig with key=value overrides (e.g. out_dir=...)."""
    return lambda *overrides: load_rounds_config(chain_files[0], overrides)
