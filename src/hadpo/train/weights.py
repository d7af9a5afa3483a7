"""Where a preference pair's weight lies: per-token weights (dense DPO) and per-pair severity (HSA-DPO).

- `diff_token_masks`: the tokens where chosen and rejected differ (RLHF-V, arXiv 2312.00849; its code matches the
  two token sequences and keeps matching blocks of at least 3 tokens as "same"). HA-DPO's style-consistent
  rewrites keep chosen and rejected in one style, so what differs is the hallucination and its correction.
  RLHF-V's own code weighs only spans replaced on both sides; here a span inserted or deleted on one side (a
  hallucinated sentence the correction dropped) is weighed too.
- `span_token_mask`: the tokens that overlap character spans the judge marked (the pair's `chosen_spans` and
  `rejected_spans`, FDPO-style sentence labels, arXiv 2308.06394; `hadpo.pairs.spans` writes them).
- `pair_severity`: how much of the rejected text is hallucinated: the pair's own `severity` when it has one (a
  detector's score, as HSA-DPO's data), else the share of its sentences the judge labelled hallucination; a QA pair
  without labels is wholly wrong (1).
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from hadpo.records import PreferencePair

MIN_MATCH = 3  # RLHF-V's min_match_size: shorter common runs inside a changed region do not count as "same"


def diff_token_masks(chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> tuple[list[bool], list[bool]]:
    """(chosen mask, rejected mask): True on the tokens outside the two sequences' common runs of >= 3 tokens."""
    matcher = SequenceMatcher(None, list(chosen_ids), list(rejected_ids), autojunk=False)
    chosen, rejected = [True] * len(chosen_ids), [True] * len(rejected_ids)
    for block in matcher.get_matching_blocks():
        if block.size >= MIN_MATCH:
            chosen[block.a : block.a + block.size] = [False] * block.size
            rejected[block.b : block.b + block.size] = [False] * block.size
    return chosen, rejected


def span_token_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True on each token whose character offsets overlap one of `spans` ([start, end) in the same text)."""
    return [any(start < span_end and span_start < end for span_start, span_end in spans) for start, end in offsets]


def pair_severity(pair: PreferencePair) -> float:
    """The rejected text's hallucination severity in [0, 1] (or the pair's own `severity`, any value >= 0)."""
    if pair.severity is not None:
        return pair.severity
    if pair.labels:
        return sum(label == "hallucination" for label in pair.labels) / len(pair.labels)
    if pair.kind == "qa":
        return 1.0
    raise ValueError(
        f"pair '{pair.pair_id}' has neither `severity` nor sentence `labels`; pair_weighting=severity needs one "
        "(pairs from `hadpo pairs build` carry labels)"
    )
