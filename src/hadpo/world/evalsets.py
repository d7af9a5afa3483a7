"""Extra data the demo draws from the world: the auxiliary SFT descriptions and held-out yes/no questions.

- SFT descriptions: faithful detailed descriptions of pretrain-split scenes in the base model's own
  instruction format, the role MiniGPT-4's stage-2 captions (CC-SBU-Align) play in HA-DPO's auxiliary loss.
- Held-out questions: colour and count yes/no questions about present objects, in the POPE file format so the
  POPE scorer reads them. The demo keeps these question types out of the preference pairs, so they measure
  whether HA-DPO leaves the model's other skills intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from hadpo.evaluate.pope import PopeQuestion, write_questions
from hadpo.records import ImageRecord, resolve_image_path, write_jsonl
from hadpo.train.data import SFTExample
from hadpo.world.config import WorldConfig
from hadpo.world.data import DESCRIBE_PROMPTS, count_question, describe, scene_claims


def write_sft_descriptions(images: list[ImageRecord], records_file: Path, out: Path, seed: int = 0) -> Path:
    """One faithful description per image as {images, prompt, response} rows (hadpo's SFT format)."""
    rng = random.Random(seed)
    rows = [
        SFTExample(images=[str(resolve_image_path(image, records_file).resolve())],
                   prompt=rng.choice(DESCRIBE_PROMPTS), response=describe(scene_claims(image), rng))
        for image in images
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    return out


def colour_item(image: ImageRecord, world: WorldConfig, rng: random.Random) -> tuple[str, str, str] | None:
    """(object, question, label) about an object that appears once, asked with its true colour or another."""
    names = [o.name for o in image.objects]
    unique = [o for o in image.objects if names.count(o.name) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    colour = obj.attributes[0]
    asked = colour if rng.random() < 0.5 else rng.choice([c for c in world.colours if c != colour])
    return obj.name, f"Is the {obj.name} {asked}?", "yes" if asked == colour else "no"


def count_item(image: ImageRecord, rng: random.Random) -> tuple[str, str, str]:
    """(object, question, label) about a present object's count, asked with the true count or another."""
    names = [o.name for o in image.objects]
    name = rng.choice(sorted(set(names)))
    count = names.count(name)
    asked = count if rng.random() < 0.5 else rng.choice([n for n in (1, 2, 3) if n != count])
    return name, count_question(name, asked), "yes" if asked == count else "no"


def write_heldout_questions(images: list[ImageRecord], records_file: Path, world: WorldConfig, out_dir: Path,
                            seed: int = 0) -> dict[str, Path]:
    """`out_dir/heldout_color.jsonl` and `heldout_count.jsonl`: one question per image each, POPE format,
    image paths relative to `out_dir`."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    questions: dict[str, list[PopeQuestion]] = {"color": [], "count": []}
    for image in images:
        if not image.objects:
            continue
        path = os.path.relpath(resolve_image_path(image, records_file), out_dir)
        asked = {"color": colour_item(image, world, rng), "count": count_item(image, rng)}
        for split, item in asked.items():
            if item is not None:
                name, text, label = item
                number = len(questions[split])
                questions[split].append(PopeQuestion(f"{split}-{number}", path, text, label, name, split))
    paths = {split: out_dir / f"heldout_{split}.jsonl" for split in questions}
    for split, path in paths.items():
        write_questions(path, questions[split])
    return paths
