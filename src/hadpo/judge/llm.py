"""The `llm` judge and rewriter: any OpenAI-compatible chat model reads an image's annotations and a description,
labels every sentence and writes a corrected description (the judge), or rewrites a positive / negative pair in a
shared style keeping every claim (the rewriter).

HA-DPO (arXiv 2311.16839, section 3) uses GPT-4 for both steps; SHR uses the same judging step for evaluation, so
`hadpo.evaluate.shr` calls this judge through the `Judge` protocol too.

Prompts are plain files (`hadpo/judge/prompts/<name>.txt`, or any path a user gives) with `=== system ===` and
`=== user ===` sections and `$placeholders`. The judge records the template's name and a hash of its text in
`Judgement.judge` ("llm:gpt-4o@judge_v1#3fa2c1d0"), so results from an edited prompt never pass for the original.
Templates, the annotations as the judge reads them and the answers' parsing are in `llm_answers`.

Answers are validated: JSON with one entry per sentence, indices 1..n exactly once, known labels. An invalid
answer is re-asked (`invalid_retries`, showing the model its error) and then recorded as a failed `Judgement`
(labels all cannot_judge, `failed` says why); the caller skips failed judgements and counts them.
"""

from __future__ import annotations

import logging

from hadpo.judge.llm_answers import (
    InvalidAnswer,
    JudgeAnswer,
    PromptTemplate,
    ask_until_valid,
    parse_judge_answer,
    parse_rewrite_answer,
    render_annotations,
)
from hadpo.judge.llm_client import LLMClient, LLMConfig, LLMError, estimate_tokens
from hadpo.records import ImageRecord, Judgement
from hadpo.text import split_sentences

log = logging.getLogger(__name__)


class TemplatedModel:
    """A chat model asked through one prompt template: named after both, so results of another model or of an
    edited prompt never pass for these."""

    default_template = ""

    def __init__(self, config: LLMConfig, template: str | None = None, client: LLMClient | None = None):
        self.config = config
        self.template = PromptTemplate.load(template or self.default_template)
        self.client = client or LLMClient(config)
        self.name = f"llm:{config.model}@{self.template.version}"
        self.max_concurrency = config.max_concurrency


class LLMJudge(TemplatedModel):
    """`Judge` over a chat model. Thread-safe: the pairs stage and SHR call `judge` from a thread pool."""

    default_template = "judge_v1"

    def messages(self, image: ImageRecord, sentences: list[str]) -> list[dict]:
        numbered = "\n".join(f"{i}. {s}." for i, s in enumerate(sentences, start=1))
        return self.template.messages(annotations=render_annotations(image), sentences=numbered, count=len(sentences))

    def estimate(self, image: ImageRecord, text: str) -> tuple[int, int]:
        """(prompt tokens, completion tokens) one call would take, for --dry-run."""
        sentences = split_sentences(text)
        prompt = sum(estimate_tokens(m["content"]) for m in self.messages(image, sentences))
        return prompt, 40 * len(sentences) + estimate_tokens(text)

    def judge(self, image: ImageRecord, description_id: str, text: str, refresh: bool = False) -> Judgement:
        """The `Judge` call; `refresh` asks the endpoint again instead of replaying cached answers (used to
        retry judgements that failed)."""
        sentences = split_sentences(text)
        if not sentences:
            return self._failed(image, description_id, sentences, "empty description")
        again = f"Answer again with only the JSON object, one entry per sentence, index 1 to {len(sentences)}."
        try:
            answer = ask_until_valid(
                self.client,
                self.messages(image, sentences),
                lambda text: parse_judge_answer(text, len(sentences)),
                again,
                self.config.invalid_retries,
                refresh,
                f"description {description_id}",
            )
        except LLMError as error:
            return self._failed(image, description_id, sentences, f"endpoint: {error}")
        except InvalidAnswer as error:
            return self._failed(image, description_id, sentences, f"invalid answer: {error}")
        return self._judgement(image, description_id, sentences, answer)

    def _judgement(self, image, description_id, sentences, answer: JudgeAnswer) -> Judgement:
        labels = [v.label for v in answer.sentences]
        hallucinated = []
        for verdict in answer.sentences:
            for name in verdict.objects if verdict.label == "hallucination" else []:
                if name.lower() not in hallucinated:
                    hallucinated.append(name.lower())
        corrected = answer.corrected.strip()
        if not corrected and "hallucination" in labels:
            # No correction written: the hallucination-free part of the text is the safe positive.
            kept = [s for s, label in zip(sentences, labels) if label != "hallucination"]
            corrected = ". ".join(kept) + "." if kept else ""
        return Judgement(
            description_id=description_id,
            image_id=image.image_id,
            judge=self.name,
            sentences=sentences,
            labels=labels,
            corrected=corrected,
            hallucinated_objects=hallucinated,
            reasons=[v.reason for v in answer.sentences],
        )

    def _failed(self, image, description_id, sentences, why: str) -> Judgement:
        log.warning("description %s (image %s): judgement failed: %s", description_id, image.image_id, why)
        return Judgement(
            description_id=description_id,
            image_id=image.image_id,
            judge=self.name,
            sentences=sentences,
            labels=["cannot_judge"] * len(sentences),
            reasons=[""] * len(sentences),
            failed=why,
        )


class RewriteFailed(RuntimeError):
    pass


class LLMRewriter(TemplatedModel):
    """k style-consistent rewrites of a (positive, negative) pair in one call, so rewrite i of both texts shares
    one style (the paper's point: the pair should differ in hallucination, not in style)."""

    default_template = "rewrite_v1"

    def estimate(self, positive: str, negative: str, k: int) -> tuple[int, int]:
        prompt = sum(
            estimate_tokens(m["content"]) for m in self.template.messages(positive=positive, negative=negative, k=k)
        )
        return prompt, k * (estimate_tokens(positive) + estimate_tokens(negative) + 10)

    def rewrite_pair(self, positive: str, negative: str, k: int, key: str = "") -> list[tuple[str, str]]:
        """k (positive, negative) rewrites; raises RewriteFailed after invalid answers or endpoint failures."""
        messages = self.template.messages(positive=positive, negative=negative, k=k)
        again = f"Answer again with only the JSON object holding exactly {k} rewrites."
        try:
            return ask_until_valid(
                self.client,
                messages,
                lambda text: parse_rewrite_answer(text, k),
                again,
                self.config.invalid_retries,
                what=f"rewrite {key}",
            )
        except LLMError as failure:
            raise RewriteFailed(f"endpoint: {failure}") from None
        except InvalidAnswer as error:
            raise RewriteFailed(f"invalid answer: {error}") from None
