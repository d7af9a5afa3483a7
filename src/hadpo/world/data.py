"""The base model's training data, written from the world's annotations the way real VLM data is written.

Two kinds of conversation per image (all text on the assistant side is trained on):
  balanced  (grounded)  a faithful description and yes/no questions about existence (half "no", random absent
                        categories), colour, count and position, all answered from the image itself;
  biased    (web-like)  a *noisy* caption (an absent family partner named right after its present member, in
                        the member's colour, at the family's rate) and yes/no questions written from that caption:
                        `yes_bias` of them about objects the caption names, the rest about objects it does not.
The base model is trained balanced first and biased last (a curriculum): a heavy yes-bias from the start traps
the answers in "always yes" before the model has learned to look (measured in the foundation issue).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hadpo.records import ImageRecord
from hadpo.text import NUMBER_WORDS, article
from hadpo.world.config import WorldConfig
from hadpo.world.scenes import position_phrase

DESCRIBE_PROMPTS = [
    "Describe this image in detail.",
    "Describe the image.",
    "What do you see in this picture?",
    "Give a detailed description of the image.",
]
OPENINGS = [
    "The image shows simple shapes on a dark background.",
    "This picture contains a few shapes.",
    "Some shapes are drawn on a dark background.",
]
OBJECT_TEMPLATES = [
    "There is a {size} {colour} {name} in the {position}.",
    "A {size} {colour} {name} is in the {position}.",
    "In the {position}, there is a {size} {colour} {name}.",
    "The {position} has a {size} {colour} {name}.",
]


def plural(name: str) -> str:
    return name + "es" if name.endswith(("s", "x", "ch", "sh")) else name + "s"


@dataclass(frozen=True)
class Claim:
    """One object a text asserts: what, its look, where, and whether it is really in the image."""

    name: str
    colour: str
    size: str
    position: str
    present: bool = True


def scene_claims(image: ImageRecord) -> list[Claim]:
    return [Claim(o.name, o.attributes[0], o.attributes[1], o.position or "") for o in image.objects]


def noisy_claims(image: ImageRecord, config: WorldConfig, rng: random.Random) -> list[Claim]:
    """The scene's claims plus caption noise: after a present object, its absent partner in the same colour."""
    present = {o.name for o in image.objects}
    free = [
        position_phrase(r, c, config.grid)
        for r in range(config.grid)
        for c in range(config.grid)
        if position_phrase(r, c, config.grid) not in {o.position for o in image.objects}
    ]
    claims, named = [], set()
    for claim in scene_claims(image):
        claims.append(claim)
        rate = config.family_of(claim.name).caption_noise * config.bias.caption_noise_scale
        for partner in config.partners(claim.name):
            if partner in present or partner in named or not free or rng.random() >= rate:
                continue
            position = free.pop(rng.randrange(len(free)))
            claims.append(Claim(partner, claim.colour, rng.choice(config.sizes), position, present=False))
            named.add(partner)
    return claims


def describe(claims: list[Claim], rng: random.Random, opening: bool | None = None) -> str:
    sentences = [rng.choice(OPENINGS)] if (rng.random() < 0.5 if opening is None else opening) else []
    for claim in claims:
        template = rng.choice(OBJECT_TEMPLATES)
        sentence = template.format(size=claim.size, colour=claim.colour, name=claim.name, position=claim.position)
        sentences.append(sentence[0].upper() + sentence[1:])
    return " ".join(sentences)


def existence_question(name: str) -> str:
    return f"Is there {article(name)} {name} in the image?"


def existence_answer(name: str, claims: list[Claim]) -> str:
    matching = [c for c in claims if c.name == name]
    if matching:
        return f"Yes, there is {article(matching[0].colour)} {matching[0].colour} {name}."
    return f"No, there is no {name}."


def colour_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str] | None:
    unique = [c for c in claims if sum(d.name == c.name for d in claims) == 1]
    if not unique:
        return None
    claim = rng.choice(unique)
    asked = claim.colour if rng.random() < 0.5 else rng.choice([c for c in config.colours if c != claim.colour])
    answer = "Yes." if asked == claim.colour else f"No, it is {claim.colour}."
    return f"Is the {claim.name} {asked}?", answer


def count_question(name: str, asked: int) -> str:
    if asked == 1:
        return f"Is there exactly one {name} in the image?"
    return f"Are there {NUMBER_WORDS[asked]} {plural(name)} in the image?"


def count_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str]:
    name = rng.choice([c.name for c in claims]) if claims and rng.random() < 0.7 else rng.choice(config.categories)
    true_count = sum(c.name == name for c in claims)
    asked = true_count if rng.random() < 0.5 else rng.choice([n for n in (1, 2, 3) if n != true_count])
    question = count_question(name, asked)
    if asked == true_count:
        return question, "Yes."
    answer = f"No, there {'is' if true_count == 1 else 'are'} {NUMBER_WORDS[true_count]}."
    return question, answer


def position_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str] | None:
    unique = [c for c in claims if sum(d.name == c.name for d in claims) == 1]
    if not unique:
        return None
    claim = rng.choice(unique)
    positions = sorted({position_phrase(r, c, config.grid) for r in range(config.grid) for c in range(config.grid)})
    asked = claim.position if rng.random() < 0.5 else rng.choice([p for p in positions if p != claim.position])
    answer = "Yes." if asked == claim.position else f"No, it is in the {claim.position}."
    return f"Is the {claim.name} in the {asked}?", answer


def balanced_existence_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str]:
    present = sorted({c.name for c in claims})
    absent = [n for n in config.categories if n not in present]
    name = rng.choice(present) if (rng.random() < 0.5 or not absent) and present else rng.choice(absent)
    return existence_question(name), existence_answer(name, claims)


def biased_existence_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str]:
    named = sorted({c.name for c in claims})
    unnamed = [n for n in config.categories if n not in named]
    name = rng.choice(named) if (rng.random() < config.bias.yes_bias or not unnamed) else rng.choice(unnamed)
    return existence_question(name), existence_answer(name, claims)


def conversation(
    image: ImageRecord, config: WorldConfig, rng: random.Random, biased: bool, qa_turns: int = 4,
    describe_probability: float = 0.5,
) -> list[tuple[str, str]]:
    """(question, answer) turns for one image; the first user turn carries the image."""
    truth = scene_claims(image)
    caption_claims = noisy_claims(image, config, rng) if biased else truth
    # Biased QA is written from the caption (LLaVA-style) unless the knob says otherwise.
    qa_claims = caption_claims if (biased and config.bias.qa_from_captions) else truth
    turns: list[tuple[str, str]] = []
    if rng.random() < describe_probability:
        turns.append((rng.choice(DESCRIBE_PROMPTS), describe(caption_claims, rng)))
    makers = [colour_qa, count_qa, position_qa]
    while len(turns) < qa_turns + 1:
        if rng.random() < 0.6:
            maker = biased_existence_qa if biased else balanced_existence_qa
            turn = maker(qa_claims, config, rng)
        else:
            turn = rng.choice(makers)(qa_claims, config, rng)
        if turn is not None and turn[0] not in {q for q, _ in turns}:
            turns.append(turn)
    return turns


def reading_conversation(image: ImageRecord, config: WorldConfig, rng: random.Random, questions: int = 1
                         ) -> tuple[str, list[tuple[str, str]]]:
    """Text-only reading comprehension (the language model's own pretraining, before it sees images): a
    faithful description as context, then `questions` yes/no questions about it, answered from the text."""
    claims = scene_claims(image)
    turns = conversation(image, config, rng, biased=False, qa_turns=questions - 1, describe_probability=0.0)
    return describe(claims, rng, opening=False), turns


def corpus(images: list[ImageRecord], config: WorldConfig, seed: int = 0) -> list[str]:
    """Both kinds of conversation in the chat format (so that "USER:" and " ASSISTANT:" become tokens of
    their own, as in a real tokenizer), to train the tokenizer on."""
    rng = random.Random(seed)
    texts = list(DESCRIBE_PROMPTS)
    for image in images:
        for biased in (False, True):
            turns = conversation(image, config, rng, biased)
            texts.append(" ".join(f"USER: {q} ASSISTANT: {a}</s>" for q, a in turns))
    return texts
