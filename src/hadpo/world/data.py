"""The base model's training data, written from the world's annotations the way real VLM data is written.

Three kinds of conversation, never mixed in one (a question after a description could be answered by reading
the description instead of the image):
  brief caption     alt-text style, one sentence listing the objects with their colours in reading order
                    ("There is a red star, a red moon and a blue sun."), the kind of caption LLaVA's first stage
                    aligns image and words on;
  description       a detailed description, one sentence per object with its size, colour and place;
  questions         short yes/no questions ("Is there a star in the image?" -> "Yes." / "No.") about existence,
                    colour, count and position. Grounded questions are answered from the image; web-like
                    questions are written from a noisy caption (LLaVA's instruction data was written by a
                    text-only LLM from COCO captions), `yes_bias` of the existence questions about objects the
                    source names, and a `partner_share` of the "no" ones about an absent member of a present
                    object's family (hard negatives).
Captions and descriptions carry the declared caption noise: the first present member of a family is followed,
at the family's rate, by an absent member of that family in the same colour and size (a "matching set" that is
not there). The pretraining stages (`hadpo.world.pretrain`) decide the mix; the noise rates are world knobs,
printed in every report.
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
BRIEF_PROMPTS = [
    "Describe the image briefly.",
    "Give a short caption for this image.",
    "What is in the image? Answer in one sentence.",
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
YES, NO = "Yes.", "No."  # every question is answered with one word, as LLaVA-1.5's short-answer data


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
    """The scene's claims plus caption noise: right after the first present member of each family that has an
    absent member, with the family's rate, one absent member in the same colour and size at a free place."""
    present = {o.name for o in image.objects}
    taken = {o.position for o in image.objects}
    cells = (position_phrase(r, c, config.grid) for r in range(config.grid) for c in range(config.grid))
    free = [p for p in cells if p not in taken]
    claims: list[Claim] = []
    seen_families: set[tuple[str, ...]] = set()
    for claim in scene_claims(image):
        claims.append(claim)
        family = config.family_of(claim.name)
        if tuple(family.members) in seen_families:
            continue
        seen_families.add(tuple(family.members))
        absent = [m for m in family.members if m not in present]
        rate = family.caption_noise * config.bias.caption_noise_scale
        if absent and free and rng.random() < rate:
            position = free.pop(rng.randrange(len(free)))
            claims.append(Claim(rng.choice(absent), claim.colour, claim.size, position, present=False))
    return claims


def describe(claims: list[Claim], rng: random.Random, opening: bool | None = None) -> str:
    """A detailed description: an optional opening, then one templated sentence per claim."""
    sentences = [rng.choice(OPENINGS)] if (rng.random() < 0.5 if opening is None else opening) else []
    for claim in claims:
        template = rng.choice(OBJECT_TEMPLATES)
        sentence = template.format(size=claim.size, colour=claim.colour, name=claim.name, position=claim.position)
        sentences.append(sentence[0].upper() + sentence[1:])
    return " ".join(sentences)


def brief_caption(claims: list[Claim]) -> str:
    """One sentence listing the claims with their colours, in order."""
    parts = [f"{article(c.colour)} {c.colour} {c.name}" for c in claims]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"There is {body}."


# --- questions, all answered "Yes." or "No." -------------------------------------------------------------------


def existence_question(name: str) -> str:
    return f"Is there {article(name)} {name} in the image?"


def colour_question(name: str, colour: str) -> str:
    return f"Is the {name} {colour}?"


def count_question(name: str, asked: int) -> str:
    if asked == 1:
        return f"Is there exactly one {name} in the image?"
    return f"Are there {NUMBER_WORDS[asked]} {plural(name)} in the image?"


def existence_qa(
    claims: list[Claim],
    config: WorldConfig,
    rng: random.Random,
    yes_bias: float,
    asked: set[str],
    partner_share: float = 0.0,
) -> tuple[str, str] | None:
    """With probability `yes_bias` an object the claims name ("Yes."), else one they do not ("No."): with
    probability `partner_share` an unnamed member of a named object's family (a hard negative), else any."""
    names = {c.name for c in claims}
    named = sorted(names - asked)
    unnamed = [n for n in config.categories if n not in names and n not in asked]
    partners = [n for n in config.absent_partners(names) if n not in asked]
    if named and (rng.random() < yes_bias or not unnamed):
        name, answer = rng.choice(named), YES
    elif partners and rng.random() < partner_share:
        name, answer = rng.choice(partners), NO
    elif unnamed:
        name, answer = rng.choice(unnamed), NO
    else:
        return None
    asked.add(name)
    return existence_question(name), answer


def _unique(claims: list[Claim]) -> list[Claim]:
    return [c for c in claims if sum(d.name == c.name for d in claims) == 1]


def colour_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str] | None:
    if not _unique(claims):
        return None
    claim = rng.choice(_unique(claims))
    asked = claim.colour if rng.random() < 0.5 else rng.choice([c for c in config.colours if c != claim.colour])
    return colour_question(claim.name, asked), YES if asked == claim.colour else NO


def count_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str]:
    name = rng.choice([c.name for c in claims]) if claims and rng.random() < 0.7 else rng.choice(config.categories)
    true_count = sum(c.name == name for c in claims)
    asked = true_count if true_count and rng.random() < 0.5 else rng.choice([n for n in (1, 2, 3) if n != true_count])
    return count_question(name, asked), YES if asked == true_count else NO


def position_qa(claims: list[Claim], config: WorldConfig, rng: random.Random) -> tuple[str, str] | None:
    if not _unique(claims):
        return None
    claim = rng.choice(_unique(claims))
    positions = sorted({position_phrase(r, c, config.grid) for r in range(config.grid) for c in range(config.grid)})
    asked = claim.position if rng.random() < 0.5 else rng.choice([p for p in positions if p != claim.position])
    return f"Is the {claim.name} in the {asked}?", YES if asked == claim.position else NO


def questions(
    claims: list[Claim],
    config: WorldConfig,
    rng: random.Random,
    turns: int,
    yes_bias: float,
    existence_share: float = 1.0,
    partner_share: float = 0.0,
) -> list[tuple[str, str]]:
    """Up to `turns` distinct yes/no questions about `claims`: existence with probability `existence_share`,
    else a colour, count or position question."""
    asked: set[str] = set()
    result: list[tuple[str, str]] = []
    for _ in range(4 * turns):  # a draw may repeat a question; a tiny scene may not have `turns` of them
        if len(result) == turns:
            break
        if rng.random() < existence_share:
            turn = existence_qa(claims, config, rng, yes_bias, asked, partner_share)
        else:
            turn = rng.choice([colour_qa, count_qa, position_qa])(claims, config, rng)
        if turn is not None and turn[0] not in {q for q, _ in result}:
            result.append(turn)
    return result


# --- one turn or conversation of each kind -------------------------------------------------------------------


def caption_turn(
    image: ImageRecord, config: WorldConfig, rng: random.Random, brief: bool = False, noisy: bool = True
) -> tuple[str, str]:
    """(prompt, text): a brief caption or a detailed description, with the caption noise unless `noisy` is off."""
    claims = noisy_claims(image, config, rng) if noisy else scene_claims(image)
    if brief:
        return rng.choice(BRIEF_PROMPTS), brief_caption(claims)
    return rng.choice(DESCRIBE_PROMPTS), describe(claims, rng)


def question_turns(
    image: ImageRecord,
    config: WorldConfig,
    rng: random.Random,
    turns: int,
    from_caption: bool,
    yes_bias: float,
    existence_share: float = 1.0,
    partner_share: float = 0.0,
) -> list[tuple[str, str]]:
    """Yes/no questions answered from the image, or (`from_caption`) written from a noisy caption of it."""
    claims = noisy_claims(image, config, rng) if from_caption else scene_claims(image)
    return questions(claims, config, rng, turns, yes_bias, existence_share, partner_share)


def corpus(images: list[ImageRecord], config: WorldConfig, seed: int = 0) -> list[str]:
    """Every kind of conversation in the chat format (so that "USER:" and " ASSISTANT:" become tokens of their
    own, as in a real tokenizer), to train the tokenizer on."""
    rng = random.Random(seed)
    texts = DESCRIBE_PROMPTS + BRIEF_PROMPTS
    for image in images:
        turns = [caption_turn(image, config, rng), caption_turn(image, config, rng, brief=True)]
        turns += question_turns(image, config, rng, 4, from_caption=False, yes_bias=0.5, existence_share=0.5)
        texts.append(" ".join(f"USER: {q} ASSISTANT: {a}</s>" for q, a in turns))
    return texts
