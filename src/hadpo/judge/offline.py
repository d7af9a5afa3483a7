"""The offline `annotations` judge: checks a description's claims against an image's annotations, sentence by
sentence, and writes a corrected description. No model calls, so it scales to thousands of descriptions a minute.

HA-DPO (arXiv 2311.16839, section 3) has GPT-4 read the Visual Genome annotations beside the description and flag
hallucinations; this judge does the checkable part of that with rules. Per object mention it checks:
  existence  "a dog"                 the object is annotated in the image;
  attribute  "a small red star"      some annotated instance carries the colour / size words claimed;
  count      "two stars", "stars"    the number of matching instances (explicit numbers exactly, plural >= 2);
  position   "in the top left"       the instance lies in the claimed cell of a 3 x 3 grid;
  negation   "there is no dog"       the object is indeed absent.

When is a claim called false? Only when the annotations prove it, which is the rule that keeps the judge from
calling true sentences hallucinations on sparsely annotated data:
  - an unannotated object is a hallucination when the record is `complete` (the world: every object is listed),
    or when its name is in `exhaustive_names` (classes the source annotates exhaustively, e.g. COCO's 80 classes,
    CHAIR's assumption) and no region phrase or caption of the image names it either; otherwise cannot judge;
  - an attribute is false when every candidate instance carries an attribute of the same kind (colour, size)
    and none carries the claimed one; other attribute words are never decisive;
  - counts and positions are decisive only on `complete` records (partial annotations under-count, and free
    boxes on real photos rarely pin down "on the left").
A sentence with a false claim is a hallucination; with only true or undecidable claims and at least one true
claim, correct; with no checkable claim, cannot_judge.

Correction: a wrong attribute, count or position is replaced by the annotated one; a sentence that claims an absent
object, or that cannot be fixed cleanly, is dropped. The fixed sentence is re-checked before it is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lemminflect import getInflection

from hadpo.records import ImageRecord, Judgement, ObjectAnnotation
from hadpo.text import ObjectVocabulary, singular, split_sentences

# The same token pattern as hadpo.text.words, with character spans so that fixes edit the original text.
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")

COLOURS = {
    "red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "brown", "pink", "silver",
    "gold", "beige", "tan", "violet", "cyan", "teal", "maroon", "navy",
}  # fmt: skip
SIZES = {"small", "large", "medium"}
ATTRIBUTE_SYNONYMS = {"grey": "gray", "big": "large", "huge": "large", "tiny": "small", "little": "small"}
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "single": 1, "pair": 2, "couple": 2}  # fmt: skip
NUMBER_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
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
    return [
        Token(m.group(), singular(m.group()), m.start(), m.end()) for m in _WORD.finditer(sentence.lower())
    ]


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
        row, column = parse_position(_WORD.findall(obj.position.lower()))
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


def position_phrase(row: str, column: str) -> str:
    if (row, column) == ("middle", "center"):
        return "center"
    if row == "middle":
        return f"middle {column}"
    return f"{row} {column}" if column != "center" else f"{row} center"


def fix_articles(sentence: str) -> str:
    """Make 'a'/'an' agree with the next word after an edit ('a red' -> 'an orange')."""

    def agree(match: re.Match) -> str:
        article, word = match.group(1), match.group(2)
        wanted = "an" if word[0].lower() in "aeiou" else "a"
        if article[0].isupper():
            wanted = wanted.capitalize()
        return f"{wanted} {word}"

    return re.sub(r"\b([Aa]n?) ([A-Za-z]+)", agree, sentence)


def join_sentences(sentences: Iterable[str]) -> str:
    kept = [s[0].upper() + s[1:] for s in sentences if s]
    return ". ".join(kept) + "." if kept else ""


# --- the judge ------------------------------------------------------------------------------------------------


class AnnotationJudge:
    """Offline judge over `ImageRecord` annotations; see the module docstring for the rule it follows."""

    name = "annotations"
    max_concurrency = 1

    def __init__(
        self,
        vocabulary: ObjectVocabulary,
        attribute_words: Iterable[str] = (),
        exhaustive_names: Iterable[str] = (),
        fill_absent: bool = True,
    ):
        self.vocabulary = vocabulary
        self.fill_absent = fill_absent
        self.attribute_words = {normalise_attribute(w) for w in attribute_words} | COLOURS | SIZES
        self.attribute_words |= set(ATTRIBUTE_SYNONYMS)
        self.exhaustive_names = {self.canonical(n) for n in exhaustive_names}

    @classmethod
    def from_records(
        cls,
        records: Iterable[ImageRecord],
        synonyms: dict[str, list[str]] | None = None,
        exhaustive_names: Iterable[str] = (),
        extra_names: Iterable[str] = (),
        fill_absent: bool = True,
    ) -> AnnotationJudge:
        """Vocabulary = every annotated object name (+ `extra_names`, + `synonyms`); attribute words = every
        annotated attribute plus the built-in colour and size words."""
        records = list(records)
        names = {o.name.lower() for r in records for o in r.objects} | {n.lower() for n in extra_names}
        vocabulary = ObjectVocabulary.from_names(sorted(names), synonyms)
        attributes = {a for r in records for o in r.objects for a in o.attributes}
        return cls(vocabulary, attributes, exhaustive_names, fill_absent)

    def canonical(self, name: str) -> str:
        key = " ".join(singular(w) for w in _WORD.findall(name.lower()))
        return self.vocabulary.synonyms.get(key, name.lower())

    # -- checking --

    def check(self, image: ImageRecord, text: str) -> list[SentenceCheck]:
        """Claims of every sentence of `text` (split as SHR splits), each with its verdict."""
        instances: dict[str, list[ObjectAnnotation]] = {}
        for obj in image.objects:
            instances.setdefault(self.canonical(obj.name), []).append(obj)
        named_elsewhere = {m.name for t in [*(r.phrase for r in image.regions), *image.captions]
                           for m in self.vocabulary.find(t)}  # fmt: skip
        return [self._check_sentence(image, s, instances, named_elsewhere) for s in split_sentences(text)]

    def _check_sentence(self, image, sentence, instances, named_elsewhere) -> SentenceCheck:
        tokens = tokenize(sentence)
        mentions = self.vocabulary.find(sentence)
        check = SentenceCheck(sentence)
        for index, mention in enumerate(mentions):
            # A mention owns the words up to the next mention ("a red star in the top left and a blue moon").
            clause_end = mentions[index + 1].start if index + 1 < len(mentions) else len(tokens)
            clause_start = mentions[index - 1].end if index else 0
            check.claims.extend(
                self._check_mention(
                    image, tokens, mention, clause_start, clause_end, instances, named_elsewhere
                )
            )
        return check

    def _check_mention(self, image, tokens, mention, clause_start, clause_end, instances, named_elsewhere):
        name = mention.name
        present = instances.get(name, [])
        span = (tokens[mention.start].start, tokens[mention.end - 1].end)
        before = tokens[clause_start : mention.start]
        attributes, number_token = self._modifiers(before, tokens[mention.end : clause_end])
        plural = tokens[mention.end - 1].text != tokens[mention.end - 1].lemma

        if any(t.text in NEGATIONS for t in before[-3:]):
            verdict = (
                None if present else (True if self._absence_provable(image, name, named_elsewhere) else None)
            )
            return [Claim("negation", name, "absent", "present" if present else "", False if present else verdict,
                          span)]  # fmt: skip
        if not present:
            if name in named_elsewhere:
                return [Claim("existence", name, name, "named in a region or caption", True, span)]
            verdict = False if self._absence_provable(image, name, named_elsewhere) else None
            return [Claim("existence", name, name, "", verdict, span)]

        claims = [Claim("existence", name, name, name, True, span)]
        candidates = present
        for token in attributes:
            claim, matching = self._check_attribute(name, token, candidates)
            claims.append(claim)
            if not plural:  # "a small red star": one instance has all; "stars are red and green": each some
                candidates = matching or candidates
        if not image.complete:
            return claims
        claims.extend(self._check_count(name, number_token, plural, attributes, present, tokens, mention))
        # A place after the mention is its own ("a star in the top left"); one before it counts only for the
        # first mention ("In the top left, there is a star"), else it belongs to the previous mention.
        position_tokens = self._position_tokens(tokens[mention.end : clause_end])
        if not position_tokens and clause_start == 0:
            position_tokens = self._position_tokens(tokens[: mention.start])
        if position_tokens:
            claims.append(self._check_position(image, name, position_tokens, candidates))
        return claims

    def _absence_provable(self, image: ImageRecord, name: str, named_elsewhere: set[str]) -> bool:
        return image.complete or (name in self.exhaustive_names and name not in named_elsewhere)

    def _modifiers(self, before: list[Token], after: list[Token]) -> tuple[list[Token], Token | None]:
        """Attribute words of a mention ('small red' before it, or 'is red' after it) and its number word."""
        attributes: list[Token] = []
        number: Token | None = None
        for token in reversed(before):
            if token.text in self.attribute_words:
                attributes.insert(0, token)
            elif token.text in NUMBERS or token.text.isdigit() or token.text in SEVERAL:
                number = token
                break
            elif token.text not in {"and", "bright", "dark", "light", "pale"}:
                break
        if after and after[0].text in {"is", "are", "appears", "looks", "seems"}:
            for token in after[1:]:
                if token.text in self.attribute_words:
                    attributes.append(token)
                elif token.text not in {"and", "both", "all", "very", "quite", "colored", "coloured"}:
                    break
        return attributes, number

    def _check_attribute(self, name, token, candidates):
        claimed = normalise_attribute(token.text)
        matching = [o for o in candidates if claimed in {normalise_attribute(a) for a in o.attributes}]
        if matching:
            return Claim("attribute", name, claimed, claimed, True, (token.start, token.end)), matching
        kind = attribute_kind(claimed)
        same_kind = [[a for a in o.attributes if attribute_kind(a) == kind] for o in candidates]
        decisive = kind is not None and all(same_kind)
        actual = normalise_attribute(same_kind[0][0]) if decisive else ""
        return Claim(
            "attribute", name, claimed, actual, False if decisive else None, (token.start, token.end)
        ), []

    def _check_count(self, name, number_token, plural, attributes, present, tokens, mention):
        wanted = {normalise_attribute(t.text) for t in attributes}
        count = sum(1 for o in present if wanted <= {normalise_attribute(a) for a in o.attributes})
        count = count or len(present)  # a wrong attribute is its own claim; count the name then
        span = (tokens[mention.start].start, tokens[mention.end - 1].end)
        if number_token is not None and (number_token.text in NUMBERS or number_token.text.isdigit()):
            claimed = NUMBERS.get(number_token.text) or int(number_token.text)
            span = (number_token.start, number_token.end)
            return [Claim("count", name, str(claimed), str(count), claimed == count, span)]
        if plural:
            return [Claim("count", name, "several", str(count), count >= 2, span)]
        return []

    @staticmethod
    def _position_tokens(clause: list[Token]) -> list[Token]:
        words = [
            t for t in clause if any(p in ROWS or p in COLUMNS or p in CENTRES for p in t.text.split("-"))
        ]
        if not words:
            return []
        # "to the left of the moon" is a relation between objects, not a place in the image.
        last = clause.index(words[-1])
        if last + 1 < len(clause) and clause[last + 1].text == "of" and words[-1].text not in CENTRES:
            return []
        return words

    def _check_position(self, image, name, position_tokens, candidates) -> Claim:
        row, column = parse_position([t.text for t in position_tokens])
        claimed = " ".join(t.text for t in position_tokens)
        span = (position_tokens[0].start, position_tokens[-1].end)
        places = [grid_position(o, image.width, image.height) for o in candidates]
        ok = any((row is None or row == r) and (column is None or column == c) for r, c in places)
        # The fix uses the annotation's own phrase when it has one ("top middle"), so the text keeps its words.
        actual = candidates[0].position or position_phrase(*places[0])
        return Claim("position", name, claimed, actual, ok, span)

    # -- judging and correcting --

    def judge(self, image: ImageRecord, description_id: str, text: str) -> Judgement:
        checks = self.check(image, text)
        hallucinated: list[str] = []
        for check in checks:
            for claim in check.claims:
                if claim.kind == "existence" and claim.verdict is False and claim.name not in hallucinated:
                    hallucinated.append(claim.name)
        return Judgement(
            description_id=description_id,
            image_id=image.image_id,
            judge=self.name,
            sentences=[c.sentence for c in checks],
            labels=[c.label for c in checks],
            corrected=self.correct(image, checks),
            hallucinated_objects=hallucinated,
            reasons=["; ".join(c.reason for c in check.claims if c.verdict is False) for check in checks],
        )

    def correct(self, image: ImageRecord, checks: list[SentenceCheck]) -> str:
        """The description with wrong attributes/counts/positions fixed and unfixable sentences dropped. With
        `fill_absent` on a complete record, a sentence about one absent object is turned into the same sentence
        about an annotated object the text never mentions ("a yellow circle in the bottom right" -> "a red star
        in the top left"): the positive then differs from the negative in the hallucination alone, and does not
        teach the model to say less (a known weakness of SHR-style training, REFERENCE.md)."""
        mentioned = {c.name for check in checks for c in check.claims if c.kind == "existence" and c.verdict}
        unmentioned = [o for o in image.objects if self.canonical(o.name) not in mentioned]
        kept = []
        for check in checks:
            if check.label != "hallucination":
                kept.append(check.sentence)
                continue
            fixed = self._fix(check)
            if fixed is None and self.fill_absent and image.complete and unmentioned:
                fixed = self._substitute(check, unmentioned[0], image)
                if fixed is not None:
                    unmentioned = [o for o in unmentioned if self.canonical(o.name) != self.canonical(
                        unmentioned[0].name)]  # fmt: skip
            if fixed and all(c.label != "hallucination" for c in self.check(image, fixed)):
                kept.append(fixed.rstrip("."))
        return join_sentences(kept)

    def _substitute(self, check: SentenceCheck, obj: ObjectAnnotation, image: ImageRecord) -> str | None:
        """The sentence about one absent object rewritten about `obj`: its name, its colour / size in place of
        the claimed ones, its place in place of the claimed place. None when the sentence is not that simple."""
        if len(check.claims) != 1 or check.claims[0].kind != "existence":
            return None
        sentence = check.sentence
        tokens = tokenize(sentence)
        mention = self.vocabulary.find(sentence)[0]
        if tokens[mention.end - 1].text != tokens[mention.end - 1].lemma:
            return None  # a plural claim ("two circles") would need its count rewritten too
        attributes, number = self._modifiers(tokens[: mention.start], tokens[mention.end :])
        if number is not None:
            return None
        edits = [(tokens[mention.start].start, tokens[mention.end - 1].end, obj.name)]
        for token in attributes:
            kind = attribute_kind(token.text)
            replacement = (
                next((a for a in obj.attributes if attribute_kind(a) == kind), None) if kind else None
            )
            if replacement is None:
                return None
            edits.append((token.start, token.end, replacement))
        places = self._position_tokens(tokens[mention.end :]) or self._position_tokens(
            tokens[: mention.start]
        )
        if places:
            where = obj.position or position_phrase(*grid_position(obj, image.width, image.height))
            edits.append((places[0].start, places[-1].end, where))
        for start, end, replacement in sorted(edits, reverse=True):
            sentence = sentence[:start] + replacement + sentence[end:]
        return fix_articles(sentence)

    def _fix(self, check: SentenceCheck) -> str | None:
        sentence = check.sentence
        false_claims = [c for c in check.claims if c.verdict is False]
        if any(c.kind in {"existence", "negation"} or not c.actual for c in false_claims):
            return None
        edits: list[tuple[int, int, str]] = []
        for claim in false_claims:
            if claim.kind == "attribute" or claim.kind == "position":
                edits.append((*claim.span, claim.actual))
            elif claim.kind == "count":
                count = int(claim.actual)
                if claim.claimed == "several" or count not in NUMBER_WORDS:
                    return None  # "there are stars" for one star needs a rewrite, not a word swap
                edits.append((*claim.span, NUMBER_WORDS[count]))
                fixed_number = self._fix_number(sentence, claim, count)
                if fixed_number is None:
                    return None
                edits.extend(fixed_number)
        for start, end, replacement in sorted(edits, reverse=True):
            sentence = sentence[:start] + replacement + sentence[end:]
        return fix_articles(sentence)

    def _fix_number(self, sentence: str, claim: Claim, count: int) -> list[tuple[int, int, str]] | None:
        """Noun and verb agreement for a changed count: 'two stars are' -> 'one star is'."""
        tokens = tokenize(sentence)
        after = [t for t in tokens if t.start > claim.span[0]]
        noun = next((t for t in after if self.vocabulary.synonyms.get(t.lemma) == claim.name), None)
        if noun is None:
            return None
        plural_now = noun.text != noun.lemma
        edits = []
        if count == 1 and plural_now:
            edits.append((noun.start, noun.end, noun.lemma))
        elif count > 1 and not plural_now:
            edits.append((noun.start, noun.end, (getInflection(noun.lemma, "NNS") or (noun.lemma + "s",))[0]))
        verbs = {"is": "are", "are": "is"} if edits else {}
        for token in tokens:
            if token.text in verbs and (token.text == "is") == (count > 1):
                edits.append((token.start, token.end, verbs[token.text]))
        return edits
