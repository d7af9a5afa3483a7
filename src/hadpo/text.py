"""Text utilities shared by the judges (pairs) and the metrics (evaluate): sentence splitting and joining as the
SHR protocol does it, word tokenising, singularising, articles and number words, and finding object mentions
with a synonym table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lemminflect import getLemma

_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")  # index = number


def split_sentences(text: str) -> list[str]:
    """Split a description into sentences the way the SHR protocol does: on '.', stripped; empty sentences,
    repeated sentences and sentences contained in an earlier one are dropped."""
    kept: list[str] = []
    for raw in re.split(r"[.!?]+", text):
        sentence = " ".join(raw.split())
        if not sentence:
            continue
        lowered = sentence.lower()
        if any(lowered in earlier.lower() for earlier in kept):
            continue
        kept.append(sentence)
    return kept


def sentence_spans(text: str, sentences: Sequence[str], marked: Sequence[bool]) -> list[tuple[int, int]]:
    """Character spans of the marked `sentences` in `text`, found in order (a sentence not found is skipped)."""
    spans, cursor = [], 0
    for sentence, is_marked in zip(sentences, marked):
        start = text.find(sentence, cursor)
        if start < 0:
            continue
        cursor = start + len(sentence)
        if is_marked:
            spans.append((start, cursor))
    return spans


def join_sentences(sentences: Iterable[str]) -> str:
    """Sentences (as `split_sentences` gives them) back into one text: capitalised, each ending with '.'."""
    kept = [s[0].upper() + s[1:] for s in sentences if s]
    return ". ".join(kept) + "." if kept else ""


def article(word: str) -> str:
    """'an' before a vowel, else 'a'."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def number_word(number: int) -> str:
    """'one' to 'nine' for 1-9, else the digits."""
    return NUMBER_WORDS[number] if 1 <= number < len(NUMBER_WORDS) else str(number)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, inner hyphens and apostrophes)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """The singular (noun lemma) of a lower-case word: 'knives' -> 'knife', 'glasses' -> 'glass'."""
    lemmas = getLemma(word, upos="NOUN")
    return lemmas[0] if lemmas else word


@dataclass
class Mention:
    """An object mention found in text: the matched words, the canonical object, and where."""

    words: str
    name: str
    start: int  # index of the first matched token
    end: int  # one past the last matched token


@dataclass
class ObjectVocabulary:
    """Canonical object names and their synonyms (single or multi-word). Matching is on singularised tokens,
    longest phrase first, so "hot dog" is one mention of "hot dog" and not a "dog"."""

    synonyms: dict[str, str] = field(default_factory=dict)  # singularised phrase -> canonical name

    @classmethod
    def from_names(cls, names: Iterable[str], extra: dict[str, Iterable[str]] | None = None) -> ObjectVocabulary:
        vocabulary = cls()
        for name in names:
            vocabulary.add(name, [name])
        for name, alternatives in (extra or {}).items():
            vocabulary.add(name, alternatives)
        return vocabulary

    def add(self, name: str, phrases: Iterable[str]) -> None:
        for phrase in [name, *phrases]:
            key = " ".join(singular(w) for w in words(phrase))
            if key:
                self.synonyms[key] = name

    @property
    def max_phrase_words(self) -> int:
        return max((len(k.split()) for k in self.synonyms), default=1)

    def find(self, text: str) -> list[Mention]:
        return self.find_tokens([singular(w) for w in words(text)])

    def find_tokens(self, tokens: list[str]) -> list[Mention]:
        """Mentions in a list of singularised tokens (a phrase matches consecutive tokens only)."""
        mentions: list[Mention] = []
        i = 0
        longest = self.max_phrase_words
        while i < len(tokens):
            for size in range(min(longest, len(tokens) - i), 0, -1):
                phrase = " ".join(tokens[i : i + size])
                if phrase in self.synonyms:
                    mentions.append(Mention(phrase, self.synonyms[phrase], i, i + size))
                    i += size
                    break
            else:
                i += 1
        return mentions
