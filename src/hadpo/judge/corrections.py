"""The offline judge's corrected description (the positive of a description pair): a wrong attribute, count or
position is replaced by the annotated one; a sentence that claims an absent object, or that cannot be fixed
cleanly, is dropped; every fixed sentence is checked again before it is kept.

On a `complete` record (`fill_absent`), a sentence about one absent object is instead rewritten about an
annotated object the text never mentions, with that object's colour, size and place: the positive then differs
from the negative in the hallucination alone, and does not teach the model to say less.

A correction never restates a fact (issue 19): a fixed sentence that would say what another sentence of the
description already says (the same object with the same colour, size and place, word for word or reworded; e.g.
"a small green cross in the bottom middle" fixed into "a small blue cross in the top middle" beside "The top middle
has a small blue cross") is treated as unfixable: rewritten about an unmentioned object, or dropped. A sentence the
description repeats is kept once. DPO would otherwise reward repeating.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lemminflect import getInflection

from hadpo.judge.claims import (
    Claim,
    SentenceCheck,
    attribute_kind,
    grid_cell_phrase,
    grid_position,
    normalise_attribute,
    parse_position,
    position_tokens,
    tokenize,
)
from hadpo.records import ImageRecord, ObjectAnnotation
from hadpo.text import NUMBER_WORDS, article, join_sentences

if TYPE_CHECKING:  # the judge calls this module; only its type is named here
    from hadpo.judge.offline import AnnotationJudge


def fix_articles(sentence: str) -> str:
    """Make 'a'/'an' agree with the next word after an edit ('a red' -> 'an orange')."""

    def agree(match: re.Match) -> str:
        written, word = match.group(1), match.group(2)
        wanted = article(word)
        if written[0].isupper():
            wanted = wanted.capitalize()
        return f"{wanted} {word}"

    return re.sub(r"\b([Aa]n?) ([A-Za-z]+)", agree, sentence)


def correct(judge: AnnotationJudge, image: ImageRecord, checks: list[SentenceCheck]) -> str:
    """The description with wrong attributes/counts/positions fixed and unfixable sentences dropped; a fix that
    would restate a fact of the description counts as unfixable. With `fill_absent` on a complete record, an
    unfixable sentence about one object is turned into the same sentence about an annotated object the text does
    not describe ("a yellow circle in the bottom right" -> "a red star in the top left"): the positive then differs
    from the negative in the hallucination alone, and does not teach the model to say less (a known weakness of
    training on SHR-style corrections)."""
    # Facts the corrected text states: its true sentences', wherever they stand, then each kept fix's; the annotated
    # objects none of them describes are the ones a sentence without a clean fix may be rewritten about.
    stated = [fact for check in checks if check.label != "hallucination" for fact in sentence_facts(check)]
    fixes: dict[int, tuple[str, list[Fact]]] = {}  # a kept fix and its facts
    for index, check in enumerate(checks):
        fixed = fix(judge, check) if check.label == "hallucination" else None
        if fixed is not None and (facts := clean_facts(judge, image, fixed, stated)) is not None:
            fixes[index] = fixed, facts
            stated += facts
    unmentioned = [o for o in image.objects if not any(describes(judge, fact, o, image) for fact in stated)]
    kept, kept_facts = [], []
    for index, check in enumerate(checks):
        if check.label != "hallucination":
            facts = sentence_facts(check)
            if not restates(facts, kept_facts):  # a sentence the description repeats is kept once
                kept.append(check.sentence)
                kept_facts += facts
            continue
        fixed, facts = fixes.get(index, (None, None))
        if fixed is None and judge.fill_absent and image.complete and unmentioned:
            fixed = substitute(judge, check, unmentioned[0], image)
            facts = None if fixed is None else clean_facts(judge, image, fixed, stated)
            if facts is None:
                fixed = None
            else:
                unmentioned, stated = unmentioned[1:], stated + facts
        if fixed:
            kept.append(fixed.rstrip("."))
            kept_facts += facts
    return join_sentences(kept)


Fact = tuple[str, frozenset, tuple[str | None, str | None] | None]


def sentence_facts(check: SentenceCheck) -> list[Fact]:
    """(object, attribute words, grid place) of each object a sentence states to be there (negations are not
    facts about a present object): "The top middle has a small blue cross" -> ("cross", {small, blue}, (top,
    center))."""
    facts: list[list] = []
    for claim in check.claims:
        if claim.kind in ("existence", "negation"):
            facts.append([claim.name, set(), None] if claim.kind == "existence" else None)
        elif facts and facts[-1] is not None:
            if claim.kind == "attribute":
                facts[-1][1].add(claim.claimed)
            elif claim.kind == "position":
                facts[-1][2] = parse_position(claim.claimed.split())
    return [(name, frozenset(words), place) for name, words, place in filter(None, facts)]


def clean_facts(judge: AnnotationJudge, image: ImageRecord, sentence: str, stated: list[Fact]) -> list[Fact] | None:
    """The facts of a rewritten sentence, or None when it still hallucinates or says nothing but what `stated`
    says already."""
    checks = judge.check(image, sentence)
    facts = [fact for check in checks for fact in sentence_facts(check)]
    if any(check.label == "hallucination" for check in checks) or restates(facts, stated):
        return None
    return facts


def describes(judge: AnnotationJudge, fact: Fact, obj: ObjectAnnotation, image: ImageRecord) -> bool:
    """Whether a stated fact can be about `obj`: its name, attribute words it carries, its place (a place the
    words leave open, as "on the left", matches either way)."""
    name, words, place = fact
    if judge.canonical(obj.name) != name or not words <= {normalise_attribute(a) for a in obj.attributes}:
        return False
    if place is None:
        return True
    row, column = grid_position(obj, image.width, image.height)
    return place[0] in (None, row) and place[1] in (None, column)


def restates(facts: list[Fact], known: list[Fact]) -> bool:
    """Whether a sentence of `facts` says nothing but what `known` says: each of its objects stated there with the
    same attribute words and place."""
    return bool(facts) and all(fact in known for fact in facts)


def restated_sentences(judge: AnnotationJudge, image: ImageRecord, text: str) -> int:
    """How many sentences of `text` restate an earlier one (word for word or reworded: the same objects with the
    same attributes and places). Word-for-word repeats are counted too, though the judge reads them once."""
    raw = [" ".join(s.split()) for s in re.split(r"[.!?]+", text) if s.strip()]
    seen: list[Fact] = []
    count = 0
    for sentence in raw:
        facts = [f for check in judge.check(image, sentence) for f in sentence_facts(check)]
        count += restates(facts, seen)
        seen += facts
    return count


def substitute(judge: AnnotationJudge, check: SentenceCheck, obj: ObjectAnnotation, image: ImageRecord) -> str | None:
    """The sentence about one object (absent, or present but not fixable without restating) rewritten about `obj`:
    its name, its colour / size in place of the claimed ones, its place in place of the claimed place. None when
    the sentence is not that simple (several objects, a count, a negation)."""
    kinds = [claim.kind for claim in check.claims]
    if kinds.count("existence") != 1 or kinds[0] != "existence" or {"count", "negation"} & set(kinds):
        return None
    sentence = check.sentence
    tokens = tokenize(sentence)
    mention = judge.vocabulary.find(sentence)[0]
    if tokens[mention.end - 1].text != tokens[mention.end - 1].lemma:
        return None  # a plural claim ("two circles") would need its count rewritten too
    attributes, number = judge.modifiers(tokens[: mention.start], tokens[mention.end :])
    if number is not None:
        return None
    edits = [(tokens[mention.start].start, tokens[mention.end - 1].end, obj.name)]
    for token in attributes:
        kind = attribute_kind(token.text)
        replacement = next((a for a in obj.attributes if attribute_kind(a) == kind), None) if kind else None
        if replacement is None:
            return None
        edits.append((token.start, token.end, replacement))
    places = position_tokens(tokens[mention.end :]) or position_tokens(tokens[: mention.start])
    if places:
        where = obj.position or grid_cell_phrase(*grid_position(obj, image.width, image.height))
        edits.append((places[0].start, places[-1].end, where))
    for start, end, replacement in sorted(edits, reverse=True):
        sentence = sentence[:start] + replacement + sentence[end:]
    return fix_articles(sentence)


def fix(judge: AnnotationJudge, check: SentenceCheck) -> str | None:
    """The sentence with each false attribute, count or position replaced by the annotated one; None when a
    claim cannot be fixed by a word swap (an absent object, a negation, "several" for one)."""
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
            if claim.claimed == "several" or not 1 <= count < len(NUMBER_WORDS):
                return None  # "there are stars" for one star needs a rewrite, not a word swap
            edits.append((*claim.span, NUMBER_WORDS[count]))
            fixed_number = fix_number(judge, sentence, claim, count)
            if fixed_number is None:
                return None
            edits.extend(fixed_number)
    for start, end, replacement in sorted(edits, reverse=True):
        sentence = sentence[:start] + replacement + sentence[end:]
    return fix_articles(sentence)


def fix_number(judge: AnnotationJudge, sentence: str, claim: Claim, count: int) -> list[tuple[int, int, str]] | None:
    """Noun and verb agreement for a changed count: 'two stars are' -> 'one star is'."""
    tokens = tokenize(sentence)
    after = [t for t in tokens if t.start > claim.span[0]]
    noun = next((t for t in after if judge.vocabulary.synonyms.get(t.lemma) == claim.name), None)
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
