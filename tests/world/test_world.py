import json
import random
import re

import numpy as np
import pytest
from PIL import Image

from hadpo.config import load_config
from hadpo.records import ImageRecord, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.data import Claim, conversation, describe, noisy_claims
from hadpo.world.drawing import BACKGROUND, COLOURS
from hadpo.world.scenes import build_world

EXISTENCE = re.compile(r"^Is there an? (\w+) in the image\?$")
SMALL = {"splits": {"pretrain": 40, "pairs": 10, "eval": 10}}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    config = load_config(WorldConfig, None, SMALL)
    return config, build_world(config, tmp_path_factory.mktemp("runs"))


def test_same_seed_same_bytes(tmp_path, small_world):
    config, files = small_world
    again = build_world(load_config(WorldConfig, None, SMALL), tmp_path)
    for split in ("pretrain", "pairs", "eval"):
        assert again.images(split).read_bytes() == files.images(split).read_bytes()
        for record in read_jsonl(files.images(split), ImageRecord):
            assert (again.root / record.path).read_bytes() == (files.root / record.path).read_bytes()
    other = build_world(load_config(WorldConfig, None, SMALL, {"seed": 1}), tmp_path)
    assert other.images("eval").read_bytes() != files.images("eval").read_bytes()


def test_splits_are_disjoint(small_world):
    _, files = small_world
    layouts = {}
    for split in ("pretrain", "pairs", "eval"):
        for record in read_jsonl(files.images(split), ImageRecord):
            key = tuple((o.name, tuple(o.attributes), o.position) for o in record.objects)
            assert layouts.setdefault(key, split) == split
            assert record.split == split and record.complete


def test_every_object_annotated_and_every_annotation_rendered(small_world):
    _, files = small_world
    for record in read_jsonl(files.images("pretrain"), ImageRecord):
        pixels = np.asarray(Image.open(files.root / record.path).convert("RGB"))
        drawn = np.any(pixels != np.array(BACKGROUND), axis=-1)
        covered = np.zeros_like(drawn)
        for obj in record.objects:
            x, y, w, h = (int(v) for v in obj.box)
            covered[y : y + h, x : x + w] = True
            patch = pixels[y : y + h, x : x + w].reshape(-1, 3)
            colour = np.array(COLOURS[obj.attributes[0]])
            # The annotated object is there, in its annotated colour.
            assert (patch == colour).all(-1).sum() >= 4, (record.image_id, obj.name)
        # Nothing is drawn outside annotated boxes.
        assert not (drawn & ~covered).any(), record.image_id


def test_coco_export_loads(small_world):
    config, files = small_world
    coco = json.loads(files.coco("eval").read_text())
    records = read_jsonl(files.images("eval"), ImageRecord)
    assert len(coco["images"]) == len(records)
    assert len(coco["annotations"]) == sum(len(r.objects) for r in records)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names.values()) == sorted(config.categories)
    first = records[0]
    first_annotations = [a for a in coco["annotations"] if a["image_id"] == coco["images"][0]["id"]]
    assert [names[a["category_id"]] for a in first_annotations] == [o.name for o in first.objects]
    assert (files.root / coco["images"][0]["file_name"]).exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"families": []}, "no categories"),
        ({"image_size": 50}, "not a multiple of patch_size"),
        ({"max_objects": 10}, "exceeds the 3x3 grid"),
        ({"colours": ["red", "mauve"]}, "unknown colour 'mauve'"),
        ({"families": [{"members": ["star", "unicorn"], "caption_noise": 0.5}]}, "unknown category 'unicorn'"),
        ({"colour": ["red"]}, r"unknown config key 'colour' \(did you mean 'colours'\?\)"),
    ],
)
def test_bad_world_config_fails_with_one_line(overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        load_config(WorldConfig, None, overrides)
    assert "\n" not in str(error.value)


def test_caption_noise_names_absent_partner_right_after_member_in_its_colour(small_world):
    config, files = small_world
    config = config.model_copy(update={"bias": config.bias.model_copy(update={"caption_noise_scale": 10.0})})
    rng = random.Random(0)
    seen_noise = 0
    for record in read_jsonl(files.images("pretrain"), ImageRecord):
        claims = noisy_claims(record, config, rng)
        present = {o.name for o in record.objects}
        for before, claim in zip(claims, claims[1:]):
            if not claim.present:
                seen_noise += 1
                assert claim.name not in present
                assert claim.name in config.partners(before.name) and claim.colour == before.colour
    assert seen_noise > 0


def test_biased_questions_come_from_the_caption(small_world):
    config, files = small_world
    config = config.model_copy(update={"bias": config.bias.model_copy(update={"caption_noise_scale": 10.0})})
    rng = random.Random(1)
    yes_to_absent = 0
    for record in read_jsonl(files.images("pretrain"), ImageRecord):
        present = {o.name for o in record.objects}
        for question, answer in conversation(record, config, rng, biased=True, qa_turns=6):
            asked = EXISTENCE.match(question)
            if asked and answer.startswith("Yes"):
                yes_to_absent += asked.group(1) not in present
    # Noisy captions yield "yes" to absent partners; balanced data never does.
    assert yes_to_absent > 0
    for record in read_jsonl(files.images("pretrain"), ImageRecord):
        present = {o.name for o in record.objects}
        for question, answer in conversation(record, config, rng, biased=False, qa_turns=6):
            asked = EXISTENCE.match(question)
            if asked and answer.startswith("Yes"):
                assert asked.group(1) in present


def test_description_states_each_claim():
    claims = [Claim("star", "red", "small", "top left"), Claim("ring", "blue", "large", "center")]
    text = describe(claims, random.Random(0), opening=False)
    assert text.count(".") == 2 and "red star" in text and "top left" in text and "blue ring" in text


def test_sentence_truth_reads_the_world_grammar(small_world):
    from hadpo.world.truth import sentence_label

    _, files = small_world
    record = read_jsonl(files.images("eval"), ImageRecord)[0]
    obj = record.objects[0]
    colour, size = obj.attributes
    assert sentence_label(record, f"There is a {size} {colour} {obj.name} in the {obj.position}.") == "correct"
    assert sentence_label(record, f"The {obj.position} has a {size} {colour} {obj.name}.") == "correct"
    other = "pink" if colour != "pink" else "white"
    assert sentence_label(record, f"A {size} {other} {obj.name} is in the {obj.position}.") == "hallucination"
    absent = next(n for n in ("star", "moon", "ring") if n not in {o.name for o in record.objects})
    assert sentence_label(record, f"In the {obj.position}, there is a {size} {colour} {absent}.") == "hallucination"
    assert sentence_label(record, "This picture contains a few shapes.") == "cannot_judge"
    assert sentence_label(record, "A cat sleeps") is None
