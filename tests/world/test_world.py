import json

import numpy as np
import pytest
from PIL import Image

from hadpo.config import load_config
from hadpo.records import ImageRecord, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.data import brief_caption, scene_claims
from hadpo.world.drawing import BACKGROUND, COLOURS
from hadpo.world.scenes import build_world

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
        assert len(record.objects) == 3 and len({o.position for o in record.objects}) == 3
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


def test_absent_partners_are_the_missing_members_of_present_families():
    world = WorldConfig()
    assert world.absent_partners({"star", "heart", "club"}) == ["moon", "sun", "cloud", "diamond", "spade"]
    assert world.absent_partners({"star", "moon", "sun", "cloud"}) == []
    assert world.absent_partners(set()) == []


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
    assert sentence_label(record, brief_caption(scene_claims(record))) == "correct"
    assert sentence_label(record, f"There is a {colour} {obj.name} and a {colour} {absent}.") == "hallucination"
    assert sentence_label(record, f"There is a {other} {obj.name}.") == "hallucination"
    twice = brief_caption([scene_claims(record)[0]] * (1 + sum(o.name == obj.name for o in record.objects)))
    assert sentence_label(record, twice) == "hallucination"  # one more of it than the image holds
    assert sentence_label(record, "A cat sleeps") is None
