"""Held-out existence questions that check the base model while it pretrains: one "Is there a/an X in the
image?" per image, of one probe kind (a present object, a random absent one, an absent member of a present
object's family), and the first answer token's accuracy ("Yes" vs "No") on them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

import torch

from hadpo.records import ImageRecord
from hadpo.world.batches import collate, encode_conversation
from hadpo.world.config import WorldConfig
from hadpo.world.data import existence_question

ProbeKind = Literal["mixed", "present", "random", "family"]
PROBE_KINDS = ("present", "random", "family")  # what every stage's report records


def existence_probes(
    images: list[ImageRecord], world: WorldConfig, kind: ProbeKind, seed: int = 0
) -> list[tuple[int, str, bool]]:
    """(image index, asked category, is it present) for one existence question per image: "present" asks a
    present object; "random" an absent one outside the present objects' families; "family" an absent member of a
    present object's family (what a co-occurrence-biased model says "yes" to); "mixed" alternately a present
    object and any absent one. An image without a category of the kind is skipped."""
    rng = random.Random(seed)
    probes = []
    for number, image in enumerate(images):
        present = sorted({o.name for o in image.objects})
        absent = [n for n in world.categories if n not in present]
        family = world.absent_partners(set(present))
        asks_present = kind == "present" or (kind == "mixed" and number % 2 == 0)
        absent_pools = {"random": [n for n in absent if n not in family], "family": family, "mixed": absent}
        pool = present if asks_present else absent_pools[kind]
        if pool:
            probes.append((number, rng.choice(pool), asks_present))
    return probes


@torch.no_grad()
def existence_accuracy(
    model, tokenizer, images: list[ImageRecord], pixels, world: WorldConfig, seed: int = 0, kind: ProbeKind = "mixed"
) -> float | None:
    """First-answer-token accuracy ("Yes" vs "No") on the `kind` probes of `images` (existence_probes); None
    when no image has a question of that kind."""
    probes = existence_probes(images, world, kind, seed)
    if not probes:
        return None
    yes, no = (tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in ("Yes", "No"))
    answer_length = len(tokenizer(" " + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
    encoded = []
    for _, name, _ in probes:
        ids, labels, weights = encode_conversation([(existence_question(name), "")], tokenizer, world.grid**2)
        encoded.append((ids[:-answer_length], labels[:-answer_length], weights[:-answer_length]))
    batch = collate(encoded, tokenizer.pad_token_id, left=True)
    rows = torch.tensor([number for number, _, _ in probes], device=pixels.device)
    logits = model(
        input_ids=batch["input_ids"].to(pixels.device),
        pixel_values=pixels[rows],
        attention_mask=batch["attention_mask"].to(pixels.device),
        logits_to_keep=1,
    ).logits[:, -1]
    said_yes = (logits[:, yes] > logits[:, no]).cpu()
    return (said_yes == torch.tensor([present for _, _, present in probes])).float().mean().item()


def until_measure(accuracy: Callable[[str], float | None], until_kind: str) -> float | None:
    """The accuracy a stage's until_existence compares: of one kind, or ("min") the lowest of the three."""
    if until_kind != "min":
        return accuracy(until_kind)
    measured = [a for a in (accuracy(kind) for kind in PROBE_KINDS) if a is not None]
    return min(measured) if measured else None
