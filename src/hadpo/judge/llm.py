"""The `llm` judge and rewriter: any OpenAI-compatible chat model reads an image's annotations and a description,
labels every sentence and writes a corrected description (the judge), or rewrites a positive / negative pair in a
shared style keeping every claim (the rewriter).

HA-DPO (arXiv 2311.16839, section 3) uses GPT-4 for both steps; SHR uses the same judging step for evaluation, so
`hadpo.evaluate.shr` calls this judge through the `Judge` protocol too.

Prompts are plain files (`hadpo/judge/prompts/<name>.txt`, or any path a user gives) with `=== system ===` and
`=== user ===` sections and `$placeholders`. The judge records the template's name and a hash of its text in
`Judgement.judge` ("llm:gpt-4o@judge_v1#3fa2c1d0"), so results from an edited prompt never pass for the original.

Answers are validated: JSON with one entry per sentence, indices 1..n exactly once, known labels. An invalid
answer is re-asked (`invalid_retries`, showing the model its error) and then recorded as a failed `Judgement`
(labels all cannot_judge, `failed` says why); the caller skips failed judgements and counts them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pydantic import BaseModel, ValidationError

from hadpo.judge.llm_client import LLMClient, LLMConfig, LLMError, estimate_tokens
from hadpo.records import ImageRecord, Judgement, describe_error
from hadpo.text import split_sentences

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).parent / "prompts"
LABELS = {"hallucination", "correct", "cannot_judge"}


class InvalidAnswer(ValueError):
    """The model's answer does not fit the requested JSON shape; the message says how."""


@dataclass
class PromptTemplate:
    name: str  # file stem, e.g. "judge_v1"
    system: str
    user: str
    digest: str  # first 8 hex digits of the sha256 of the file text

    @classmethod
    def load(cls, name_or_path: str) -> PromptTemplate:
        """A bundled template by name ("judge_v1") or any template file by path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = PROMPTS_DIR / f"{name_or_path}.txt"
        if not path.exists():
            raise FileNotFoundError(f"prompt template {name_or_path!r} not found (looked at {path})")
        text = path.read_text(encoding="utf-8")
        parts = re.split(r"^=== (system|user) ===\s*$", text, flags=re.MULTILINE)
        sections = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
        if "user" not in sections:
            raise ValueError(f"prompt template {path}: no '=== user ===' section")
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        return cls(path.stem, sections.get("system", ""), sections["user"], digest)

    @property
    def version(self) -> str:
        return f"{self.name}#{self.digest}"

    def messages(self, **values) -> list[dict]:
        messages = []
        if self.system:
            messages.append({"role": "system", "content": Template(self.system).substitute(values)})
        messages.append({"role": "user", "content": Template(self.user).substitute(values)})
        return messages


# --- answer shapes ----------------------------------------------------------------------------------------------


class SentenceVerdict(BaseModel):
    index: int
    label: str
    reason: str = ""
    objects: list[str] = []


class JudgeAnswer(BaseModel):
    sentences: list[SentenceVerdict]
    corrected: str = ""


class RewritePair(BaseModel):
    a: str
    b: str


class RewriteAnswer(BaseModel):
    rewrites: list[RewritePair]


def parse_json_object(text: str) -> dict:
    """The JSON object in a model's answer, tolerating a ```json fence or words around it."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise InvalidAnswer("the answer holds no JSON object")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as error:
        raise InvalidAnswer(f"the answer is not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    return data


def normalise_label(label: str) -> str:
    label = re.sub(r"[\s-]+", "_", label.strip().lower())
    return {
        "hallucinated": "hallucination",
        "cannot_be_judged": "cannot_judge",
        "unknown": "cannot_judge",
    }.get(label, label)


def parse_judge_answer(text: str, sentence_count: int) -> JudgeAnswer:
    """Validate a judge answer against the numbered sentences it was asked about; raise InvalidAnswer."""
    try:
        answer = JudgeAnswer.model_validate(parse_json_object(text))
    except ValidationError as error:
        raise InvalidAnswer(describe_error(error)) from None
    seen = set()
    for verdict in answer.sentences:
        if not 1 <= verdict.index <= sentence_count:
            raise InvalidAnswer(f"sentence {verdict.index} does not exist (the description has {sentence_count})")
        if verdict.index in seen:
            raise InvalidAnswer(f"sentence {verdict.index} is labelled twice")
        seen.add(verdict.index)
        verdict.label = normalise_label(verdict.label)
        if verdict.label not in LABELS:
            raise InvalidAnswer(f"sentence {verdict.index}: unknown label {verdict.label!r}")
    if len(seen) != sentence_count:
        raise InvalidAnswer(f"{len(seen)} sentences labelled, the description has {sentence_count}")
    answer.sentences.sort(key=lambda v: v.index)
    return answer


def parse_rewrite_answer(text: str, k: int) -> list[tuple[str, str]]:
    try:
        answer = RewriteAnswer.model_validate(parse_json_object(text))
    except ValidationError as error:
        raise InvalidAnswer(describe_error(error)) from None
    pairs = [(r.a.strip(), r.b.strip()) for r in answer.rewrites]
    if len(pairs) != k or not all(a and b for a, b in pairs):
        raise InvalidAnswer(f"{len(pairs)} non-empty rewrites, asked for {k}")
    return pairs


def render_annotations(image: ImageRecord) -> str:
    """The image's annotations as the SHR judge reads them: region phrases with normalised [x1, y1, x2, y2],
    objects with their attributes, then captions as factual notes."""

    def box(values: list[float]) -> str:
        x, y, w, h = values
        corners = [x / image.width, y / image.height, (x + w) / image.width, (y + h) / image.height]
        return "[" + ", ".join(f"{v:.2f}" for v in corners) + "]"

    lines = [f"{box(r.box)} {r.phrase}" for r in image.regions]
    for obj in image.objects:
        described = " ".join([*obj.attributes, obj.name])
        where = f", {obj.position}" if obj.position else ""
        lines.append(f"{box(obj.box)} object: {described}{where}")
    lines.extend(f"note: {caption}" for caption in image.captions)
    if image.complete:
        lines.append("note: every object in the image is listed above; anything not listed is absent.")
    return "\n".join(lines) or "(no annotations)"


def ask_until_valid(
    client: LLMClient,
    messages: list[dict],
    parse,
    again: str,
    invalid_retries: int,
    refresh: bool = False,
    what: str = "request",
):
    """`parse(answer)` of the endpoint's answer to `messages`; an invalid answer is shown back to the model with
    its problem and `again` (at most `invalid_retries` times). Raises LLMError (endpoint) or InvalidAnswer."""
    problem = ""
    for attempt in range(invalid_retries + 1):
        completion = client.complete(messages, refresh=refresh)
        try:
            return parse(completion.text)
        except InvalidAnswer as error:
            problem = str(error)
            log.debug("%s: invalid answer (attempt %d): %s", what, attempt + 1, problem)
            # Showing the model its answer and the error changes the request, so the retry is not a cache hit.
            messages = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": f"Your answer was invalid: {problem}. {again}"},
            ]
    raise InvalidAnswer(problem)


# --- the judge and the rewriter ----------------------------------------------------------------------------------


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
