"""The offline rewriter: k style-consistent rewrites of a (positive, negative) description pair without an LLM.

HA-DPO (arXiv 2311.16839, section 3.2) rewrites both texts of a pair in one style with GPT-4, so that a pair
differs in hallucination and not in style; `ParaphraseRewriter` does the same offline by applying one set of
equivalent phrasings and one sentence order to both texts (seeded per pair and rewrite index). The LLM rewriter
is `hadpo.judge.llm.LLMRewriter`; `hadpo.judge.config.make_rewriter` builds either from the config.
"""

from __future__ import annotations

import random
import re

from hadpo.text import join_sentences, split_sentences

# Phrasings with the same meaning; a style picks one member of each class for every sentence of both texts.
# Classes are disjoint, and the determiner guards keep "there is" from meeting a plural.
PHRASINGS = [
    (["there is", "we can see", "one can see", "you can see"], r"(?=\s+(?:a|an|one)\b)"),
    (
        ["there are", "we can see", "one can see", "you can see"],
        r"(?=\s+(?:two|three|four|five|several|some)\b)",
    ),
    (["sits at", "is at", "is located at", "is placed at"], ""),
    (["sits in", "is in", "is located in", "appears in"], ""),
    (["in the image", "in the picture", "in the scene"], ""),
    (["the image shows", "the picture shows", "this image shows"], ""),
]


def rephrase(sentence: str, choices: list[int]) -> str:
    """`sentence` with every phrasing of class c replaced by member choices[c]."""
    for (members, guard), choice in zip(PHRASINGS, choices):
        pattern = r"\b(" + "|".join(re.escape(m) for m in sorted(members, key=len, reverse=True)) + r")\b" + guard
        sentence = re.sub(pattern, members[choice % len(members)], sentence, flags=re.IGNORECASE)
    return sentence


class ParaphraseRewriter:
    """Meaning-preserving offline rewrites: equivalent phrasings and sentence order, one style per rewrite index
    applied to both texts of a pair."""

    name = "offline_paraphrase"
    max_concurrency = 1

    def rewrite_pair(self, positive: str, negative: str, k: int, key: str = "") -> list[tuple[str, str]]:
        rewrites = []
        for index in range(1, k + 1):
            rng = random.Random(f"{key}:{index}")
            choices = [rng.randrange(len(members)) for members, _ in PHRASINGS]
            order = rng.choice(["reverse", "rotate", "shuffle"]) if index > 1 else "keep"
            order_seed = rng.random()
            rewrites.append(tuple(self._restyle(text, choices, order, order_seed) for text in (positive, negative)))
        return rewrites

    @staticmethod
    def _restyle(text: str, choices: list[int], order: str, order_seed: float) -> str:
        sentences = [rephrase(s, choices) for s in split_sentences(text)]
        if order == "reverse":
            sentences.reverse()
        elif order == "rotate" and sentences:
            sentences = sentences[1:] + sentences[:1]
        elif order == "shuffle":
            random.Random(order_seed).shuffle(sentences)
        return join_sentences(sentences)
