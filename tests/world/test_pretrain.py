"""The base model's pretraining (hadpo.world.pretrain): encodings the processor agrees with, the vision stage,
instruction stages whose conversations are of one kind each, existence probes and accuracy per kind on
hand-built cases, the until_existence criterion, and the cache key."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn

from hadpo.config import load_config
from hadpo.records import ImageRecord, read_jsonl
from hadpo.world import pretrain
from hadpo.world.batches import IGNORE, collate, encode_conversation
from hadpo.world.config import WorldConfig
from hadpo.world.data import BRIEF_PROMPTS, DESCRIBE_PROMPTS, NO, YES, corpus
from hadpo.world.pretrain import (
    patch_targets,
    pixel_tensor,
    run_stage,
    stage_conversation,
    train_language,
    train_vision,
)
from hadpo.world.pretrain_config import InstructionStage, PretrainConfig
from hadpo.world.probes import existence_accuracy, existence_probes
from hadpo.world.scenes import SceneObject, annotate, build_world, sample_scene
from hadpo.world.tiny import IMAGE_TOKEN, build_tiny_llava, train_tokenizer

TINY = PretrainConfig(
    vision_hidden=32, vision_heads=2, text_hidden=64, text_layers=2, text_intermediate=128, vocab_size=400
)
ASKED = re.compile(r"Is there an? (\w+) in the image\?")
BRIEF = re.compile(r"^There is an? \w+ \w+(, an? \w+ \w+)* and an? \w+ \w+\.$")


def _setup(tmp_path, **pretrain_settings):
    world = load_config(WorldConfig, None, {"splits": {"pretrain": 64, "pairs": 4, "eval": 4}})
    files = build_world(world, tmp_path)
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    config = TINY.model_copy(update=pretrain_settings)
    tokenizer = train_tokenizer(corpus(images, world), vocab_size=config.vocab_size)
    torch.manual_seed(0)
    model, processor = build_tiny_llava(tokenizer, config.spec(world))
    return world, files, images, config, tokenizer, model, processor


def _record(number: int, *objects: tuple[str, int, int], world: WorldConfig) -> ImageRecord:
    """A hand-built scene: (name, row, col) objects, red and small (nothing is drawn)."""
    placed = [SceneObject(name, "red", "small", row, col) for name, row, col in objects]
    return annotate(str(number), f"{number}.png", "pretrain", placed, [[0, 0, 1, 1]] * len(placed), world)


def test_pixels_match_the_processor(tmp_path):
    world, files, images, _, _, _, processor = _setup(tmp_path)
    ours = pixel_tensor(images[:3], files.images("pretrain"))
    pictures = [Image.open(files.root / r.path).convert("RGB") for r in images[:3]]
    theirs = processor.image_processor(pictures, return_tensors="pt")["pixel_values"]
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_conversation_encoding_matches_the_chat_template(tmp_path):
    world, files, images, _, tokenizer, model, processor = _setup(tmp_path)
    turns = [("Is there a star in the image?", NO), ("Is the ring red?", YES)]
    ids, labels, weights = encode_conversation(turns, tokenizer, world.grid**2, answer_weight=2.0)
    messages = []
    for turn, (question, answer) in enumerate(turns):
        content = ([{"type": "image"}] if turn == 0 else []) + [{"type": "text", "text": question}]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    text = processor.apply_chat_template(messages)
    expected = tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * world.grid**2))  # <s> first, as Llama's
    assert ids == expected["input_ids"] and ids[0] == tokenizer.bos_token_id
    trained = [t for t in labels if t != IGNORE]
    assert tokenizer.decode(trained) == " No.</s> Yes.</s>"
    assert [w for w, t in zip(weights, labels) if t != IGNORE] == [2.0] * len(trained)
    assert all(w == 0.0 for w, t in zip(weights, labels) if t == IGNORE)


def test_tokenizer_gives_answers_and_the_worlds_words_one_token_each():
    world = WorldConfig()
    rng = random.Random(0)
    images = []
    for number in range(300):
        objects = sample_scene(world, rng)
        images.append(annotate(str(number), "x.png", "pretrain", objects, [[0, 0, 1, 1]] * 3, world))
    tokenizer = train_tokenizer(corpus(images, world), vocab_size=PretrainConfig().vocab_size)
    # existence_accuracy compares the first tokens of " Yes" and " No"; a POPE question's object should be
    # one token, as in a real tokenizer's vocabulary.
    for word in ["Yes", "No", *world.categories, *world.colours, *world.sizes]:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    assert len(tokenizer(" ASSISTANT:", add_special_tokens=False)["input_ids"]) <= 2


def test_vision_stage_learns_patches(tmp_path):
    world, files, images, config, _, model, _ = _setup(tmp_path, vision_steps=120, vision_batch=32)
    pixels = pixel_tensor(images, files.images("pretrain"))
    targets = patch_targets(images, world)
    report = train_vision(model, pixels, targets, world, config)
    # Empty cells are 2/3 of the patches: learning must beat predicting "empty" everywhere.
    all_empty = (targets[..., :3] == 0).all(-1).float().mean().item()
    assert report["patch_accuracy"] > all_empty + 0.05


def test_stage_conversations_are_of_one_kind_each():
    world = WorldConfig()
    stage = InstructionStage(
        name="mix",
        steps=1,
        describe_probability=0.5,
        brief_share=0.5,
        qa_turns=3,
        answer_weight=2.0,
        existence_share=0.5,
    )
    rng = random.Random(0)
    image = _record(0, ("star", 0, 0), ("moon", 1, 1), ("circle", 2, 2), world=world)
    kinds = set()
    for _ in range(300):
        turns, weight = stage_conversation(image, world, stage, rng)
        if turns[0][0] in BRIEF_PROMPTS:
            kind = "brief"
            assert len(turns) == 1 and weight == 1.0 and BRIEF.match(turns[0][1]), turns
        elif turns[0][0] in DESCRIBE_PROMPTS:
            kind = "description"
            assert len(turns) == 1 and weight == 1.0 and turns[0][1].count(".") >= 3, turns  # a sentence an object
        else:
            kind = "questions"
            assert len(turns) == 3 and weight == 2.0
            assert all(q.endswith("?") and a in (YES, NO) for q, a in turns)
        kinds.add(kind)
    assert kinds == {"brief", "description", "questions"}


def test_existence_probes_ask_what_their_kind_says():
    world = WorldConfig()
    images = [
        _record(0, ("star", 0, 0), ("moon", 0, 1), ("heart", 1, 1), world=world),
        _record(1, ("circle", 0, 0), ("ring", 1, 0), ("rectangle", 2, 2), world=world),
        _record(2, ("cross", 0, 2), ("arrow", 1, 2), ("bolt", 2, 2), world=world),
    ] * 10
    for kind in ("present", "random", "family", "mixed"):
        probes = existence_probes(images, world, kind, seed=1)
        assert [number for number, _, _ in probes] == list(range(len(images)))
        for number, name, present in probes:
            names = {o.name for o in images[number].objects}
            partners = set(world.absent_partners(names))
            expected = {
                "present": names,
                "random": set(world.categories) - names - partners,
                "family": partners,
                "mixed": names if number % 2 == 0 else set(world.categories) - names,
            }[kind]
            assert name in expected and present == (name in names), (kind, number, name)
    assert {name for _, name, _ in existence_probes(images, world, "family", 1)} > {"triangle", "flag"}


class ScriptedAnswers:
    """A stand-in VLM that reads the asked object from the prompt and the image index from pixel_values, and
    says "Yes" when `says_yes(index, name)`."""

    def __init__(self, tokenizer, says_yes):
        self.tokenizer, self.says_yes = tokenizer, says_yes
        self.yes, self.no = (tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))

    def __call__(self, input_ids, pixel_values, attention_mask, logits_to_keep):
        logits = torch.zeros(len(input_ids), 1, len(self.tokenizer))
        for row, (ids, index) in enumerate(zip(input_ids, pixel_values.tolist())):
            name = ASKED.search(self.tokenizer.decode(ids)).group(1)
            logits[row, 0, self.yes if self.says_yes(int(index), name) else self.no] = 1.0
        return SimpleNamespace(logits=logits)


def test_existence_accuracy_per_kind_on_a_hand_built_case():
    world = WorldConfig()
    images = [
        _record(0, ("star", 0, 0), ("moon", 0, 1), ("heart", 1, 1), world=world),
        _record(1, ("circle", 0, 0), ("ring", 1, 0), ("rectangle", 2, 2), world=world),
    ] * 8
    tokenizer = train_tokenizer(corpus(images, world), vocab_size=400)
    indices = torch.arange(len(images))  # the stand-in reads the image from its "pixels"
    present = [{o.name for o in image.objects} for image in images]

    def accuracy(kind, says_yes):
        return existence_accuracy(ScriptedAnswers(tokenizer, says_yes), tokenizer, images, indices, world, 0, kind)

    # A co-occurrence hallucinator: "yes" to what is there and to absent members of its families.
    def cooccurrence(index, name):
        return name in present[index] or name in world.absent_partners(present[index])

    assert [accuracy(kind, cooccurrence) for kind in ("present", "random", "family")] == [1.0, 1.0, 0.0]
    mixed = existence_probes(images, world, "mixed", 0)
    fooled = sum(not is_present and name in world.absent_partners(present[n]) for n, name, is_present in mixed)
    assert accuracy("mixed", cooccurrence) == pytest.approx(1 - fooled / len(mixed))
    assert [accuracy(kind, lambda index, name: True) for kind in ("present", "random", "family")] == [1.0, 0.0, 0.0]
    assert accuracy("present", lambda index, name: index % 2 == 0) == 0.5  # "yes" on the first scene's copies only
    # One family of four, all present: no absent family member to ask about.
    full = [_record(0, ("star", 0, 0), ("moon", 0, 1), ("sun", 1, 1), ("cloud", 2, 2), world=world)]
    assert (
        existence_accuracy(ScriptedAnswers(tokenizer, cooccurrence), tokenizer, full, indices[:1], world, 0, "family")
        is None
    )


class TinyLM(nn.Module):
    """Enough of a model for run_stage: a bigram table, counting its forward passes (= training steps)."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(8, 8)
        self.calls = 0

    def forward(self, input_ids, attention_mask, pixel_values):
        self.calls += 1
        return SimpleNamespace(logits=self.table(input_ids))


def _run(stage: InstructionStage, accuracy_of) -> tuple[dict, TinyLM]:
    model = TinyLM()
    batch = collate([([1, 2, 3, 4], [IGNORE, 2, 3, 4], [0.0, 1.0, 1.0, 1.0])], pad_id=0)
    report = run_stage(
        model,
        list(model.parameters()),
        lambda: (batch, None),
        stage,
        PretrainConfig(warmup_steps=2),
        lambda kind: accuracy_of(kind, model.calls),
    )
    return report, model


def test_until_existence_stops_when_reached_or_at_max_steps():
    def learns_at_150(kind, steps):
        return 0.95 if steps >= 150 else 0.5

    waiting = InstructionStage(name="grounded", steps=100, until_existence=0.9, max_steps=500)
    report, model = _run(waiting, learns_at_150)
    assert report["steps"] == model.calls == 200 and len(report["losses"]) == 200
    assert report["existence_checks"] == [(100, 0.5), (200, 0.95)]
    assert report["existence_after"] == {"present": 0.95, "random": 0.95, "family": 0.95}
    assert report["losses"][-1] < report["losses"][0]

    report, _ = _run(waiting.model_copy(update={"max_steps": 300}), lambda kind, steps: 0.5)
    assert report["steps"] == 300 and [step for step, _ in report["existence_checks"]] == [100, 200]
    report, _ = _run(waiting.model_copy(update={"until_existence": None}), learns_at_150)
    assert report["steps"] == 100 and report["existence_checks"] == []


def test_until_kind_chooses_the_accuracy_the_criterion_reads():
    levels = {"mixed": 0.95, "present": 1.0, "random": 0.97, "family": 0.4}
    stage = InstructionStage(name="hard", steps=100, until_existence=0.9, max_steps=300)
    steps = {
        kind: _run(stage.model_copy(update={"until_kind": kind}), lambda k, _: levels[k])[0]["steps"]
        for kind in ("mixed", "family", "min")
    }
    assert steps == {"mixed": 100, "family": 300, "min": 300}
    levels["family"] = 0.92
    report, _ = _run(stage.model_copy(update={"until_kind": "min"}), lambda k, _: levels[k])
    assert report["steps"] == 100 and report["existence_checks"] == [(100, 0.92)]


def test_a_few_language_steps_lower_the_loss_and_report_each_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "HELD_OUT", 16)
    stages = [
        InstructionStage(name="captions", steps=10, brief_share=1.0, qa_turns=1),
        InstructionStage(name="questions", steps=30, describe_probability=0.0, qa_turns=2),
    ]
    world, files, images, config, tokenizer, model, _ = _setup(
        tmp_path, stages=stages, lm_batch=8, warmup_steps=5, lm_lr=3e-3
    )
    pixels = pixel_tensor(images, files.images("pretrain"))
    report = train_language(model, tokenizer, images, pixels, world, config)["stages"]
    assert list(report) == ["captions", "questions"]
    assert [report[name]["steps"] for name in report] == [10, 30]
    losses = report["questions"]["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    for name in report:
        assert set(report[name]["existence_after"]) == {"present", "random", "family"}
        assert all(0.0 <= a <= 1.0 for a in report[name]["existence_after"].values())
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())


def test_the_cache_key_follows_every_stage_setting_but_not_the_device():
    world = WorldConfig()
    default = PretrainConfig()
    key = default.digest(world)
    assert PretrainConfig(device="cuda", threads=2).digest(world) == key
    for change in ({"partner_share": 0.25}, {"until_kind": "min"}, {"steps": 601}, {"answer_weight": 1.5}):
        stages = [s.model_copy(update=change) if s.name == "grounded" else s for s in default.stages]
        assert PretrainConfig(stages=stages).digest(world) != key, change
    assert PretrainConfig(stages=default.stages[:-1]).digest(world) != key


def test_a_stage_with_an_unknown_key_fails_with_one_line():
    with pytest.raises(
        ValueError, match=r"stages\.0: unknown key 'until_kinds' \(did you mean 'until_kind'\?\)"
    ) as error:
        load_config(PretrainConfig, None, {"stages": [{"name": "x", "steps": 1, "until_kinds": "min"}]})
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="until_kind"):
        load_config(PretrainConfig, None, {"stages": [{"name": "x", "steps": 1, "until_kind": "random"}]})
