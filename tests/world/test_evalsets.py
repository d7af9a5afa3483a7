"""The world's evaluation data: held-out colour and count questions labelled from the annotations and worded as
the base model learned them; faithful SFT descriptions; the recipe's existence questions and their metrics,
worked out by hand."""

from __future__ import annotations

import json
import random
import re

import pytest

from hadpo.config import load_config
from hadpo.evaluate.pope import read_questions
from hadpo.records import ImageRecord, PopeQuestion, SFTExample, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.data import question_turns
from hadpo.world.evalsets import (
    existence_metrics,
    write_existence_questions,
    write_heldout_questions,
    write_sft_descriptions,
)
from hadpo.world.scenes import build_world
from hadpo.world.truth import sentence_label


def _world(tmp_path):
    world = load_config(WorldConfig, None, {"splits": {"pretrain": 40, "pairs": 4, "eval": 40}})
    return world, build_world(world, tmp_path)


def test_heldout_questions_are_labelled_from_the_annotations(tmp_path):
    world, files = _world(tmp_path)
    images = read_jsonl(files.images("eval"), ImageRecord)
    paths = write_heldout_questions(images, files.images("eval"), world, tmp_path / "q", seed=1)
    by_file = {image.path.split("/")[-1]: image for image in images}
    labels = set()
    for split, path in paths.items():
        for line in path.read_text().splitlines():
            question = json.loads(line)
            image = by_file[question["image"].split("/")[-1]]
            assert (tmp_path / "q" / question["image"]).exists()
            named = [o for o in image.objects if o.name == question["object"]]
            if split == "color":
                colour = question["text"].removesuffix("?").split()[-1]
                assert (question["label"] == "yes") == (named[0].attributes[0] == colour)
            else:
                words = question["text"].split()
                asked = 1 if "exactly" in words else ["zero", "one", "two", "three"].index(words[2])
                assert (question["label"] == "yes") == (len(named) == asked)
            labels.add(question["label"])
    assert labels == {"yes", "no"}


def test_sft_descriptions_are_faithful(tmp_path):
    world, files = _world(tmp_path)
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    out = write_sft_descriptions(images, files.images("pretrain"), tmp_path / "sft.jsonl")
    rows = read_jsonl(out, SFTExample)
    assert len(rows) == len(images)
    for image, row in zip(images, rows):
        labels = [sentence_label(image, s) for s in row.response.rstrip(".").split(". ")]
        assert set(labels) <= {"correct", "cannot_judge"} and labels.count("correct") == len(image.objects)


def _shape(text: str, world: WorldConfig) -> str:
    """A question with its object, colour and number replaced by placeholders: its wording."""
    text = re.sub(rf"\b({'|'.join(world.categories)})(es|s)?\b", "OBJECT", text)
    text = re.sub(rf"\b({'|'.join(world.colours)})\b", "COLOUR", text)
    return re.sub(r"\b(one|two|three)\b", "NUMBER", text)


def test_heldout_questions_are_worded_as_the_base_model_learned_them(tmp_path):
    world, files = _world(tmp_path)
    images = read_jsonl(files.images("eval"), ImageRecord)
    paths = write_heldout_questions(images, files.images("eval"), world, tmp_path / "q", seed=2)
    assert set(paths) == {"color", "count"}  # nothing else: existence is what the preference pairs train
    rng = random.Random(0)
    learned = {
        _shape(question, world)
        for image in read_jsonl(files.images("pretrain"), ImageRecord)
        for _ in range(10)
        for question, _ in question_turns(image, world, rng, 4, from_caption=False, yes_bias=0.5, existence_share=0.0)
    }
    asked = {split: [json.loads(line) for line in path.read_text().splitlines()] for split, path in paths.items()}
    assert len(asked["count"]) == len(images) and 0 < len(asked["color"]) <= len(images)
    shapes = {_shape(q["text"], world) for questions in asked.values() for q in questions}
    assert shapes == {
        "Is the OBJECT COLOUR?",
        "Is there exactly NUMBER OBJECT in the image?",
        "Are there NUMBER OBJECT in the image?",
    }
    assert shapes <= learned


def test_existence_questions_ask_every_present_object_a_random_and_a_family_negative(tmp_path):
    world, files = _world(tmp_path)
    images = read_jsonl(files.images("eval"), ImageRecord)
    out = write_existence_questions(images, files.images("eval"), world, tmp_path / "existence.jsonl")
    questions, _ = read_questions(out)
    by_image: dict[str, list] = {}
    for question in questions:
        by_image.setdefault(question.question_id.rsplit("-", 2)[0], []).append(question)
    assert len(by_image) == len(images)
    for image in images:
        present = {o.name for o in image.objects}
        asked = {q.split: [] for q in by_image[image.image_id]}
        for question in by_image[image.image_id]:
            asked[question.split].append(question.object)
        assert sorted(asked["positive"]) == sorted(present)
        partners = world.absent_partners(present)
        assert len(asked["adversarial"]) == 1 and asked["adversarial"][0] in partners
        assert len(asked["random"]) == 1 and asked["random"][0] not in present | set(partners)


def test_existence_metrics_worked_by_hand():
    def question(image, kind, name):
        return PopeQuestion(
            question_id=f"{image}-{kind}-{name}",
            image=image,
            text=f"Is there a {name}?",
            label="yes" if kind == "positive" else "no",
            object=name,
            split=kind,
        )

    questions = [
        question("a", "positive", "star"),
        question("a", "positive", "moon"),
        question("a", "random", "heart"),
        question("a", "adversarial", "sun"),
        question("b", "positive", "ring"),
        question("b", "random", "flag"),
        question("b", "adversarial", "circle"),
    ]
    said_yes = {
        "a-positive-star": True,
        "a-positive-moon": False,
        "a-random-heart": False,
        "a-adversarial-sun": True,
        "b-positive-ring": True,
        "b-random-flag": True,
        "b-adversarial-circle": True,
    }
    metrics = existence_metrics(questions, said_yes)
    # random: positives star yes (right), moon no (wrong), ring yes (right); negatives heart no (right),
    # flag yes (wrong): 3 of 5 right; balanced (2/3 + 1/2) / 2; 3 of 5 said yes.
    assert metrics["random"] == pytest.approx(
        {"accuracy": 0.6, "balanced_accuracy": 7 / 12, "yes_ratio": 0.6, "questions": 5}
    )
    # adversarial: the same positives; sun and circle both said yes (wrong): 2 of 5 right, 4 of 5 yes.
    assert metrics["adversarial"] == pytest.approx(
        {"accuracy": 0.4, "balanced_accuracy": 1 / 3, "yes_ratio": 0.8, "questions": 5}
    )
