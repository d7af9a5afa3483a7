"""The demo's extra world data: held-out questions are labelled from the annotations; SFT descriptions are
faithful; reading conversations put the description in the first user turn."""

from __future__ import annotations

import json

from hadpo.config import load_config
from hadpo.records import ImageRecord, SFTExample, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.data import corpus, reading_conversation
from hadpo.world.evalsets import write_heldout_questions, write_sft_descriptions
from hadpo.world.pretrain import encode_conversation
from hadpo.world.scenes import build_world
from hadpo.world.tiny import train_tokenizer
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


def test_reading_conversation_puts_the_description_before_the_questions(tmp_path):
    import random

    world, files = _world(tmp_path)
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    tokenizer = train_tokenizer(corpus(images, world), vocab_size=400)
    context, turns = reading_conversation(images[0], world, random.Random(0), questions=3)
    assert all(o.name in context for o in images[0].objects)
    ids, labels = encode_conversation(turns, tokenizer, 0, context)
    text = tokenizer.decode(ids)
    assert text.startswith("USER: " + context + "\n" + turns[0][0] + " ASSISTANT:")
    trained = tokenizer.decode([t for t in labels if t != -100])
    assert context not in trained and turns[0][1] in trained
    # The chat scaffolding is in the tokenizer's corpus: " ASSISTANT" is one token, not ten.
    assert len(tokenizer(" ASSISTANT:", add_special_tokens=False)["input_ids"]) <= 2
