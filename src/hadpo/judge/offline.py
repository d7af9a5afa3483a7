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

Correction (`hadpo.judge.corrections`): a wrong attribute, count or position is replaced by the annotated one; a
sentence that claims an absent object, or that cannot be fixed cleanly, is dropped. The fixed sentence is
re-checked before it is kept. The words and claims it reads are in `hadpo.judge.claims`.
"""

from __future__ import annotations

from collections.abc import Iterable

from hadpo.judge.claims import (
    ATTRIBUTE_SYNONYMS,
    COLOURS,
    NEGATIONS,
    NUMBERS,
    SEVERAL,
    SIZES,
    WORD,
    Claim,
    SentenceCheck,
    Token,
    attribute_kind,
    grid_cell_phrase,
    grid_position,
    normalise_attribute,
    parse_position,
    position_tokens,
    tokenize,
)
from hadpo.judge.corrections import correct
from hadpo.records import ImageRecord, Judgement, ObjectAnnotation
from hadpo.text import ObjectVocabulary, singular, split_sentences


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
        key = " ".join(singular(w) for w in WORD.findall(name.lower()))
        return self.vocabulary.synonyms.get(key, name.lower())

    # -- checking --

    def check(self, image: ImageRecord, text: str) -> list[SentenceCheck]:
        """Claims of every sentence of `text` (split as SHR splits), each with its verdict."""
        instances: dict[str, list[ObjectAnnotation]] = {}
        for obj in image.objects:
            instances.setdefault(self.canonical(obj.name), []).append(obj)
        named_elsewhere = {
            m.name for t in [*(r.phrase for r in image.regions), *image.captions] for m in self.vocabulary.find(t)
        }
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
                self._check_mention(image, tokens, mention, clause_start, clause_end, instances, named_elsewhere)
            )
        return check

    def _check_mention(self, image, tokens, mention, clause_start, clause_end, instances, named_elsewhere):
        name = mention.name
        present = instances.get(name, [])
        span = (tokens[mention.start].start, tokens[mention.end - 1].end)
        before = tokens[clause_start : mention.start]
        attributes, number_token = self.modifiers(before, tokens[mention.end : clause_end])
        plural = tokens[mention.end - 1].text != tokens[mention.end - 1].lemma

        if any(t.text in NEGATIONS for t in before[-3:]):
            verdict = None if present else (True if self._absence_provable(image, name, named_elsewhere) else None)
            return [
                Claim("negation", name, "absent", "present" if present else "", False if present else verdict, span)
            ]
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
        place = position_tokens(tokens[mention.end : clause_end])
        if not place and clause_start == 0:
            place = position_tokens(tokens[: mention.start])
        if place:
            claims.append(self._check_position(image, name, place, candidates))
        return claims

    def _absence_provable(self, image: ImageRecord, name: str, named_elsewhere: set[str]) -> bool:
        return image.complete or (name in self.exhaustive_names and name not in named_elsewhere)

    def modifiers(self, before: list[Token], after: list[Token]) -> tuple[list[Token], Token | None]:
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
        return Claim("attribute", name, claimed, actual, False if decisive else None, (token.start, token.end)), []

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

    def _check_position(self, image, name, position_tokens, candidates) -> Claim:
        row, column = parse_position([t.text for t in position_tokens])
        claimed = " ".join(t.text for t in position_tokens)
        span = (position_tokens[0].start, position_tokens[-1].end)
        places = [grid_position(o, image.width, image.height) for o in candidates]
        ok = any((row is None or row == r) and (column is None or column == c) for r, c in places)
        # The fix uses the annotation's own phrase when it has one ("top middle"), so the text keeps its words.
        actual = candidates[0].position or grid_cell_phrase(*places[0])
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
            corrected=correct(self, image, checks),
            hallucinated_objects=hallucinated,
            reasons=["; ".join(c.reason for c in check.claims if c.verdict is False) for check in checks],
        )
