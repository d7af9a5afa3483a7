"""The base model's training data (hadpo.world.data): brief captions, caption noise where and as often as the
world declares it, one-word answers that are true of their source, hard negatives, and a tokenizer corpus that
holds every prompt. Scenes are sampled and annotated without rendering (the text never reads pixels)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from hadpo.config import load_config
from hadpo.records import ImageRecord
from hadpo.world.config import WorldConfig
from hadpo.world.data import (
    BRIEF_PROMPTS,
    DESCRIBE_PROMPTS,
    NO,
    YES,
    Claim,
    brief_caption,
    corpus,
    describe,
    noisy_claims,
    question_turns,
    scene_claims,
)
from hadpo.world.scenes import annotate, sample_scene

EXISTENCE = re.compile(r"^Is there an? (\w+) in the image\?$")
COLOUR = re.compile(r"^Is the (\w+) (\w+)\?$")
POSITION = re.compile(r"^Is the (\w+) in the ([a-z ]+)\?$")
COUNT = re.compile(r"^(?:Is there exactly (one) (\w+)|Are there (\w+) (\w+)) in the image\?$")


def scenes(world: WorldConfig, count: int, seed: int = 0) -> list[ImageRecord]:
    """`count` annotated scenes of `world` (boxes are placeholders: nothing here draws)."""
    rng = random.Random(seed)
    records = []
    for number in range(count):
        objects = sample_scene(world, rng)
        records.append(
            annotate(str(number), f"{number}.png", "pretrain", objects, [[0, 0, 1, 1]] * len(objects), world)
        )
    return records


def world_with_noise(rate: float) -> WorldConfig:
    default = WorldConfig()
    families = [{"members": f.members, "caption_noise": rate} for f in default.families]
    return load_config(WorldConfig, None, {"families": families})


def test_brief_caption_lists_each_object_with_its_colour_in_order():
    star = Claim("star", "red", "small", "top left")
    moon = Claim("moon", "red", "large", "center")
    ring = Claim("ring", "orange", "small", "bottom right")
    assert brief_caption([star]) == "There is a red star."
    assert brief_caption([star, ring]) == "There is a red star and an orange ring."
    assert brief_caption([star, moon, ring]) == "There is a red star, a red moon and an orange ring."


def test_description_states_each_claim_in_one_sentence():
    claims = [Claim("star", "red", "small", "top left"), Claim("ring", "blue", "large", "center")]
    text = describe(claims, random.Random(0), opening=False)
    assert text.count(".") == 2 and "small red star" in text and "top left" in text and "large blue ring" in text


def test_caption_noise_rate_zero_never_adds_an_object():
    world = world_with_noise(0.0)
    rng = random.Random(0)
    for image in scenes(world, 300):
        assert noisy_claims(image, world, rng) == scene_claims(image)


def test_caption_noise_rate_one_follows_the_first_member_of_every_family_with_an_absent_member():
    world = world_with_noise(1.0)
    rng = random.Random(0)
    for image in scenes(world, 300):
        truth = scene_claims(image)
        present = {c.name for c in truth}
        claims = noisy_claims(image, world, rng)
        assert [c for c in claims if c.present] == truth
        families_with_absent = {tuple(world.family_of(n).members) for n in present} - {
            tuple(f.members) for f in world.families if set(f.members) <= present
        }
        noise = [(before, claim) for before, claim in zip(claims, claims[1:]) if not claim.present]
        assert len(noise) == sum(not c.present for c in claims) == len(families_with_absent)
        for before, claim in noise:
            family = world.family_of(before.name).members
            first_member = next(c for c in truth if c.name in family)
            assert before == first_member, (image.image_id, claims)
            assert claim.name in family and claim.name not in present
            assert (claim.colour, claim.size) == (before.colour, before.size)
        positions = [c.position for c in claims]
        assert len(set(positions)) == len(positions)  # noise stands at a free place


def test_caption_noise_happens_at_each_familys_rate():
    world = WorldConfig()
    rng = random.Random(1)
    chances, noise = Counter(), Counter()
    for image in scenes(world, 4000, seed=1):
        present = {o.name for o in image.objects}
        claims = noisy_claims(image, world, rng)
        for family in world.families:
            if present & set(family.members) and not set(family.members) <= present:
                chances[family.caption_noise] += 1
                noise[family.caption_noise] += any(not c.present and c.name in family.members for c in claims)
    assert len(chances) == 4
    for rate, count in chances.items():
        assert count > 300
        assert abs(noise[rate] / count - rate) < 0.05, (rate, noise[rate] / count)


def test_every_answer_is_one_word_and_grounded_answers_are_true_of_the_image():
    world = WorldConfig()
    rng = random.Random(2)
    asked = Counter()
    for image in scenes(world, 300, seed=2):
        objects = {o.name: o for o in image.objects}
        counts = Counter(o.name for o in image.objects)
        for question, answer in question_turns(
            image, world, rng, 4, from_caption=False, yes_bias=0.5, existence_share=0.5
        ):
            assert answer in (YES, NO), answer
            said_yes = answer == YES
            if match := EXISTENCE.match(question):
                kind, true = "existence", match.group(1) in objects
            elif match := COUNT.match(question):
                number, name = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
                name = next(n for n in world.categories if name in (n, n + "s", n + "es"))
                kind, true = "count", counts[name] == ["zero", "one", "two", "three"].index(number)
            elif match := POSITION.match(question):
                kind, true = "position", objects[match.group(1)].position == match.group(2)
            elif match := COLOUR.match(question):
                kind, true = "colour", objects[match.group(1)].attributes[0] == match.group(2)
            else:
                pytest.fail(f"a question outside the grammar: {question}")
            asked[kind, said_yes] += 1
            assert said_yes == true, (image.objects, question, answer)
    assert all(
        asked[kind, said_yes] > 10
        for kind in ("existence", "count", "position", "colour")
        for said_yes in (True, False)
    ), asked


def test_partner_share_one_asks_every_no_about_an_absent_family_member_while_one_is_left():
    world = WorldConfig()
    rng = random.Random(3)
    hard = 0
    for image in scenes(world, 300, seed=3):
        present = {o.name for o in image.objects}
        partners = set(world.absent_partners(present))
        turns = question_turns(image, world, rng, 6, from_caption=False, yes_bias=0.3, partner_share=1.0)
        denied = [EXISTENCE.match(q).group(1) for q, a in turns if a == NO]
        for number, name in enumerate(denied):
            assert name not in present
            if name not in partners:  # a random absent object only once every partner has been asked
                assert partners <= set(denied[:number]), (present, denied)
        hard += sum(name in partners for name in denied)
    assert hard > 300


def test_partner_share_zero_draws_no_answers_from_all_absent_objects():
    world = WorldConfig()
    rng = random.Random(4)
    denied = Counter()
    for image in scenes(world, 400, seed=4):
        present = {o.name for o in image.objects}
        for question, answer in question_turns(image, world, rng, 1, from_caption=False, yes_bias=0.0):
            name = EXISTENCE.match(question).group(1)
            assert answer == NO and name not in present
            denied[name in world.absent_partners(present)] += 1
    # 1-3 of the 13 absent categories are family members: most random negatives are not.
    assert 0 < denied[True] < denied[False] / 2


def test_web_questions_come_from_the_noisy_caption():
    world = world_with_noise(1.0)
    rng = random.Random(5)
    yes_to_absent = 0
    for image in scenes(world, 200, seed=5):
        present = {o.name for o in image.objects}
        for question, answer in question_turns(image, world, rng, 4, from_caption=True, yes_bias=1.0):
            yes_to_absent += answer == YES and EXISTENCE.match(question).group(1) not in present
        for question, answer in question_turns(image, world, rng, 4, from_caption=False, yes_bias=1.0):
            assert answer == NO or EXISTENCE.match(question).group(1) in present
    assert yes_to_absent > 100


def test_the_tokenizer_corpus_holds_every_prompt_and_every_kind_of_turn():
    world = WorldConfig()
    texts = corpus(scenes(world, 60, seed=6), world)
    joined = "\n".join(texts)
    for prompt in DESCRIBE_PROMPTS + BRIEF_PROMPTS:
        assert prompt in texts  # on its own, so that every prompt is seen even when no image drew it
    for name in world.categories + world.colours + world.sizes:
        assert f" {name}" in joined, name
    for pattern in (
        r"USER: Is there an? \w+ in the image\? ASSISTANT: (Yes|No)\.</s>",
        r"USER: Is the \w+ \w+\? ASSISTANT: (Yes|No)\.</s>",
        r"ASSISTANT: There is an? \w+ \w+(, an? \w+ \w+)* and an? \w+ \w+\.</s>",
    ):
        assert re.search(pattern, joined), pattern
