"""The offline judge's corrected description (the positive of a description pair): a wrong attribute, count or
position is replaced by the annotated one; a sentence that claims an absent object, or that cannot be fixed
cleanly, is dropped; every fixed sentence is checked again before it is kept.

On a `complete` record (`fill_absent`), a sentence about one absent object is instead rewritten about an
annotated object the text never mentions, with that object's colour, size and place: the positive then differs
from the negative in the hallucination alone, and does not teach the model to say less.
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
    """The description with wrong attributes/counts/positions fixed and unfixable sentences dropped. With
    `fill_absent` on a complete record, a sentence about one absent object is turned into the same sentence
    about an annotated object the text never mentions ("a yellow circle in the bottom right" -> "a red star
    in the top left"): the positive then differs from the negative in the hallucination alone, and does not
    teach the model to say less (a known weakness of training on SHR-style corrections)."""
    mentioned = {c.name for check in checks for c in check.claims if c.kind == "existence" and c.verdict}
    unmentioned = [o for o in image.objects if judge.canonical(o.name) not in mentioned]
    kept = []
    for check in checks:
        if check.label != "hallucination":
            kept.append(check.sentence)
            continue
        fixed = fix(judge, check)
        if fixed is None and judge.fill_absent and image.complete and unmentioned:
            fixed = substitute(judge, check, unmentioned[0], image)
            if fixed is not None:
                unmentioned = [
                    o for o in unmentioned if judge.canonical(o.name) != judge.canonical(unmentioned[0].name)
                ]
        if fixed and all(c.label != "hallucination" for c in judge.check(image, fixed)):
            kept.append(fixed.rstrip("."))
    return join_sentences(kept)


def substitute(judge: AnnotationJudge, check: SentenceCheck, obj: ObjectAnnotation, image: ImageRecord) -> str | None:
    """The sentence about one absent object rewritten about `obj`: its name, its colour / size in place of
    the claimed ones, its place in place of the claimed place. None when the sentence is not that simple."""
    if len(check.claims) != 1 or check.claims[0].kind != "existence":
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
