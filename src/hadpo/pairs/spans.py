"""What a pair's judge marked, as character spans the trainer can weigh (`token_weighting: labels`), and the check
that corrected descriptions restate no fact.

- A description pair's rejected spans are its sentences labelled hallucination (the labels follow the SHR split of
  the rejected text); its chosen spans are the sentences of the chosen text that the rejected text does not hold:
  the corrected or substituted ones. A QA pair's answers are wholly right or wrong: their spans are the whole texts.
- `restated_counts`: how many chosen (and rejected) descriptions state the same object with the same attributes
  and place twice, word for word or reworded (stats.json `restated_facts`; 0 chosen is what the judge's
  corrections promise).
"""

from __future__ import annotations

from collections.abc import Iterable

from hadpo.judge.corrections import restated_sentences
from hadpo.judge.offline import AnnotationJudge
from hadpo.records import ImageRecord, PreferencePair
from hadpo.text import sentence_spans, split_sentences


def mark_spans(pair: PreferencePair) -> PreferencePair:
    """The pair with `chosen_spans` / `rejected_spans` filled where its labels say what they are (unchanged when it
    has spans already, or is a description pair without labels)."""
    if pair.chosen_spans or pair.rejected_spans:
        return pair
    if pair.kind == "qa":
        pair.chosen_spans, pair.rejected_spans = [(0, len(pair.chosen))], [(0, len(pair.rejected))]
        return pair
    rejected = split_sentences(pair.rejected)
    if not pair.labels or len(pair.labels) != len(rejected):
        return pair
    pair.rejected_spans = sentence_spans(pair.rejected, rejected, [label == "hallucination" for label in pair.labels])
    known = {sentence.lower() for sentence in rejected}
    chosen = split_sentences(pair.chosen)
    pair.chosen_spans = sentence_spans(pair.chosen, chosen, [sentence.lower() not in known for sentence in chosen])
    return pair


def restated_counts(
    pairs: Iterable[PreferencePair], images: dict[str, ImageRecord], judge: AnnotationJudge
) -> dict[str, int]:
    """Description pairs (every rewrite) whose chosen / rejected text restates a fact in another sentence."""
    counts = {"pairs": 0, "chosen": 0, "rejected": 0}
    for pair in pairs:
        if pair.kind != "desc" or pair.image_id not in images:
            continue
        counts["pairs"] += 1
        for side in ("chosen", "rejected"):
            counts[side] += restated_sentences(judge, images[pair.image_id], getattr(pair, side)) > 0
    return counts
