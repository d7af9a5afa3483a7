"""What a description claims, in the terms the offline judge checks: word tokens with their character spans,
one `Claim` per checkable statement about an object (existence, attribute, count, position, negation), the
verdicts of a sentence (`SentenceCheck`), and the colour, size, number and position words it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hadpo.records import ObjectAnnotation
from hadpo.text import singular

# The same token pattern as hadpo.text.words, with character spans so that fixes edit the original text.
WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")

COLOURS = {
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "white",
    "black",
    "gray",
    "brown",
    "pink",
    "silver",
    "gold",
    "beige",
    "tan",
    "violet",
    "cyan",
    "teal",
    "maroon",
    "navy",
}
SIZES = {"small", "large", "medium"}
ATTRIBUTE_SYNONYMS = {"grey": "gray", "big": "large", "huge": "large", "tiny": "small", "little": "small"}
NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "single": 1,
    "pair": 2,
    "couple": 2,
}
SEVERAL = {"several", "many", "multiple", "some", "few"}  # with a plural noun: at least two
NEGATIONS = {"no", "not", "without", "none", "neither", "nor", "never"}
ROWS = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
COLUMNS = {"left": "left", "right": "right"}
CENTRES = {"center", "centre", "middle", "central"}


# --- records --------------------------------------------------------------------------------------------------


@dataclass
class Token:
    text: str  # lower-cased word
    lemma: str  # singular noun form
    start: int  # character span in the sentence
    end: int


@dataclass
class Claim:
    """One checkable statement about one object. verdict: True (supported), False (contradicted by the
    annotations), None (cannot be decided from them)."""

    kind: str  # existence | attribute | count | position | negation
    name: str  # canonical object name
    claimed: str  # what the text says, e.g. "red", "2", "top left"
    actual: str  # what the annotations say ("" when unknown)
    verdict: bool | None
    span: tuple[int, int] = (0, 0)  # character span in the sentence of the claimed words (for fixes)

    @property
    def reason(self) -> str:
        if self.kind == "existence":
            return f"no {self.name} in the image"
        if self.kind == "negation":
            return f"there is a {self.name}"
        return f"{self.name} {self.kind}: {self.actual or '?'}, not {self.claimed}"


@dataclass
class SentenceCheck:
    sentence: str
    claims: list[Claim] = field(default_factory=list)

    @property
    def label(self) -> str:
        if any(c.verdict is False for c in self.claims):
            return "hallucination"
        if any(c.verdict for c in self.claims):
            return "correct"
        return "cannot_judge"


# --- pure helpers ---------------------------------------------------------------------------------------------


def tokenize(sentence: str) -> list[Token]:
    return [Token(m.group(), singular(m.group()), m.start(), m.end()) for m in WORD.finditer(sentence.lower())]


def normalise_attribute(word: str) -> str:
    word = word.lower().strip()
    return ATTRIBUTE_SYNONYMS.get(word, word)


def attribute_kind(word: str) -> str | None:
    """'colour' or 'size' for words whose kind makes a mismatch decisive; None for other attributes."""
    word = normalise_attribute(word)
    return "colour" if word in COLOURS else "size" if word in SIZES else None


def grid_position(obj: ObjectAnnotation, width: int, height: int) -> tuple[str, str]:
    """(row, column) of an object in a 3 x 3 grid: its annotated position phrase, else its box centre."""
    if obj.position:
        row, column = parse_position(WORD.findall(obj.position.lower()))
        if row or column:
            return row or "middle", column or "center"
    x, y, w, h = obj.box
    cx, cy = (x + w / 2) / width, (y + h / 2) / height
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    return row, column


def parse_position(position_words: list[str]) -> tuple[str | None, str | None]:
    """("top", "left") from ["top", "left"] / ["top-left"]; ("middle", "center") from ["center"]; a part the
    words leave open is None ("on the left" says nothing about the row)."""
    parts = [p for w in position_words for p in w.split("-")]
    row = next((ROWS[p] for p in parts if p in ROWS), None)
    column = next((COLUMNS[p] for p in parts if p in COLUMNS), None)
    if any(p in CENTRES for p in parts):
        if row and not column:
            column = "center"
        elif column and not row:
            row = "middle"
        elif not row and not column:
            row, column = "middle", "center"
    return row, column


def grid_cell_phrase(row: str, column: str) -> str:
    """The words for a cell of the 3 x 3 grid: 'top left', 'top center', 'middle right', 'center'."""
    if (row, column) == ("middle", "center"):
        return "center"
    if row == "middle":
        return f"middle {column}"
    return f"{row} {column}" if column != "center" else f"{row} center"


def position_tokens(clause: list[Token]) -> list[Token]:
    """The words of a clause that name a place in the image ('in the top left'), if any."""
    words = [t for t in clause if any(p in ROWS or p in COLUMNS or p in CENTRES for p in t.text.split("-"))]
    if not words:
        return []
    # "to the left of the moon" is a relation between objects, not a place in the image.
    last = clause.index(words[-1])
    if last + 1 < len(clause) and clause[last + 1].text == "of" and words[-1].text not in CENTRES:
        return []
    return words
