"""The judge interface: given an image's annotations and a description, label each sentence and write a
corrected description. Used by pair construction (positives) and by SHR (evaluation).

Optional members the pair stages use when a judge has them: `max_concurrency` (how many `judge` calls may run
at once from a thread pool; absent = 1) and `estimate(image, text) -> (prompt_tokens, completion_tokens)` (what one
call would cost, for --dry-run; absent = the judge makes no paid calls)."""

from __future__ import annotations

from typing import Protocol

from hadpo.records import ImageRecord, Judgement


class Judge(Protocol):
    name: str  # recorded in every Judgement, e.g. "annotations" or "llm:gpt-4o@v1"

    def judge(self, image: ImageRecord, description_id: str, text: str) -> Judgement:
        """Label every sentence of `text` (as `hadpo.text.split_sentences` splits it) and correct it."""
        ...
