"""What the LLM judge and rewriter send and accept: prompt templates (`hadpo/judge/prompts/<name>.txt` or any path,
`=== system ===` / `=== user ===` sections with `$placeholders`, named by file stem and text hash), an image's
annotations as the judge reads them, the JSON answers they must give, parsed and validated, and the loop that
shows an invalid answer back to the model and asks again.
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

from hadpo.judge.llm_client import LLMClient
from hadpo.records import ImageRecord, describe_error

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
