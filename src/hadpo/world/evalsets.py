"""Extra data drawn from the world: the auxiliary SFT descriptions, held-out yes/no questions, and the base
model's existence questions.

- SFT descriptions: faithful detailed descriptions of pretrain-split scenes in the base model's own
  instruction format, the role MiniGPT-4's stage-2 captions (CC-SBU-Align) play in HA-DPO's auxiliary loss.
- Held-out questions: colour and count yes/no questions about present objects of eval-split scenes, in the POPE
  file format so the POPE scorer reads them. The base model learned these question types, worded exactly so
  (`hadpo.world.data`) and answered "Yes." / "No.", in its grounded instruction stages; the demo keeps them out
  of the preference pairs (existence QA only), so they measure whether HA-DPO costs the model other skills.
- Existence questions and description measures (the base-model recipe's figures, benchmarks/world/world_recipe.py):
  per image, every present category ("yes"), one absent category outside the present objects' families
  (random) and one absent member of a present object's family (adversarial); accuracy, balanced accuracy and
  *predicted* yes-ratio per negative kind; the share of annotated objects descriptions name (recall) and of
  descriptions naming an absent one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from hadpo.evaluate.pope import write_questions
from hadpo.records import ImageRecord, PopeQuestion, SFTExample, resolve_image_path, write_jsonl
from hadpo.text import ObjectVocabulary
from hadpo.world.config import WorldConfig
from hadpo.world.data import (
    DESCRIBE_PROMPTS,
    colour_question,
    count_question,
    describe,
    existence_question,
    scene_claims,
)


def write_sft_descriptions(images: list[ImageRecord], records_file: Path, out: Path, seed: int = 0) -> Path:
    """One faithful description per image as {images, prompt, response} rows (hadpo's SFT format)."""
    rng = random.Random(seed)
    rows = [
        SFTExample(
            images=[str(resolve_image_path(image, records_file).resolve())],
            prompt=rng.choice(DESCRIBE_PROMPTS),
            response=describe(scene_claims(image), rng),
        )
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
    return obj.name, colour_question(obj.name, asked), "yes" if asked == colour else "no"


def count_item(image: ImageRecord, rng: random.Random) -> tuple[str, str, str]:
    """(object, question, label) about a present object's count, asked with the true count or another."""
    names = [o.name for o in image.objects]
    name = rng.choice(sorted(set(names)))
    count = names.count(name)
    asked = count if rng.random() < 0.5 else rng.choice([n for n in (1, 2, 3) if n != count])
    return name, count_question(name, asked), "yes" if asked == count else "no"


def write_heldout_questions(
    images: list[ImageRecord], records_file: Path, world: WorldConfig, out_dir: Path, seed: int = 0
) -> dict[str, Path]:
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
                questions[split].append(
                    PopeQuestion(
                        question_id=f"{split}-{number}", image=path, text=text, label=label, object=name, split=split
                    )
                )
    paths = {split: out_dir / f"heldout_{split}.jsonl" for split in questions}
    for split, path in paths.items():
        write_questions(path, questions[split])
    return paths


def write_existence_questions(
    images: list[ImageRecord], records_file: Path, world: WorldConfig, out: Path, seed: int = 0
) -> Path:
    """`out`: for each image its present categories (split "positive"), one absent category outside the present
    objects' families ("random") and one absent member of a present object's family ("adversarial"), POPE
    format, image paths relative to `out`."""
    rng = random.Random(seed)
    questions: list[PopeQuestion] = []
    for image in images:
        path = os.path.relpath(resolve_image_path(image, records_file), out.parent)
        present = sorted({o.name for o in image.objects})
        partners = sorted(world.absent_partners(set(present)))
        unrelated = [c for c in world.categories if c not in present and c not in partners]
        asked = [("positive", name) for name in present]
        if unrelated:
            asked.append(("random", rng.choice(unrelated)))
        if partners:
            asked.append(("adversarial", rng.choice(partners)))
        questions += [
            PopeQuestion(
                question_id=f"{image.image_id}-{kind}-{name}",
                image=path,
                text=existence_question(name),
                label="yes" if kind == "positive" else "no",
                object=name,
                split=kind,
            )
            for kind, name in asked
        ]
    write_questions(out, questions)
    return out


def existence_metrics(questions: list[PopeQuestion], said_yes: dict[str, bool]) -> dict[str, dict[str, float]]:
    """Accuracy and predicted yes-ratio for each negative kind, scored with all positives of the same images
    (a scene holds three objects by default, so positives outnumber negatives), and the balanced accuracy, the
    mean of the positive and negative accuracies: what a POPE-style set with as many negatives as positives
    measures."""
    result = {}
    for kind in ("random", "adversarial"):
        images = {q.image for q in questions if q.split == kind}
        chosen = [
            (said_yes[q.question_id], q.label == "yes")
            for q in questions
            if q.image in images and q.split in ("positive", kind)
        ]
        positive = [yes for yes, present in chosen if present]
        negative = [not yes for yes, present in chosen if not present]
        result[kind] = {
            "accuracy": sum(yes == present for yes, present in chosen) / len(chosen),
            "balanced_accuracy": (sum(positive) / max(1, len(positive)) + sum(negative) / max(1, len(negative))) / 2,
            "yes_ratio": sum(yes for yes, _ in chosen) / len(chosen),
            "questions": len(chosen),
        }
    return result


def description_metrics(images: list[ImageRecord], descriptions: dict[str, str], world: WorldConfig) -> dict:
    """recall: share of annotated objects (distinct per image) the descriptions name; hallucinating: share of
    descriptions naming at least one absent category."""
    vocabulary = ObjectVocabulary.from_names(world.categories)
    named_total = found = hallucinating = 0
    for image in images:
        truth = {o.name for o in image.objects}
        mentioned = {m.name for m in vocabulary.find(descriptions[image.image_id])}
        named_total += len(truth)
        found += len(truth & mentioned)
        hallucinating += bool(mentioned - truth)
    return {"recall": found / max(1, named_total), "hallucinating": hallucinating / max(1, len(images))}
