"""Answering questions about images with one model, in this process: load a model, write its prompts, answer
batches in either mode, append one `Answer` per question to a JSONL file after each batch, and resume from what
the file holds. `hadpo.inference.runner` decides what each process answers; this module answers it.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from hadpo.files import drop_torn_tail
from hadpo.inference.decoding import DecodingConfig
from hadpo.inference.yes_no import ANSWER_VARIANTS, answer_token_ids, yes_no_answers
from hadpo.progress import progress_bar
from hadpo.records import Answer, iter_jsonl, write_jsonl

if TYPE_CHECKING:
    from hadpo.models import VLMFamily

log = logging.getLogger(__name__)


@dataclass
class Query:
    """One question for the runner: an id, an image file and the user's text."""

    question_id: str
    image: Path
    prompt: str
    image_id: str = ""


@dataclass
class RunSummary:
    written: int = 0
    resumed: int = 0  # questions already answered in the output file
    skipped: int = 0  # questions whose image could not be read
    skipped_ids: list[str] = field(default_factory=list)


def load_model(model_name_or_path: str | Path, device: str = "cpu", dtype: str = "float32"):
    """An `AutoModelForImageTextToText` and its processor from a local folder, a hub id or a folder holding a
    trained LoRA adapter (transformers loads its base model), in eval mode. The processor comes from the
    family's adapter where hadpo has one (InstructBLIP's image token, Qwen2-VL without torchvision); importing
    hadpo.models registers MiniGPT-4 with the Auto classes."""
    # Deferred: the Auto classes and the model families load transformers' model code (seconds), which
    # importing hadpo.inference for DecodingConfig or parse_answer does not need.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hadpo.models import find_family
    from hadpo.models.base import model_location_problem

    if problem := model_location_problem(str(model_name_or_path)):
        raise ValueError(f"model {problem}")
    model = AutoModelForImageTextToText.from_pretrained(str(model_name_or_path), dtype=getattr(torch, dtype))
    family = find_family(model.config.model_type)
    processor = (
        family.load_processor(str(model_name_or_path))
        if family
        else AutoProcessor.from_pretrained(str(model_name_or_path))
    )
    return model.to(device).eval(), processor


def chat_prompt(processor, text: str, family: VLMFamily | None = None) -> str:
    """The user turn with one image, ending where the answer starts: in the family's own prompt format
    (InstructBLIP's plain instruction, MiniGPT-4's template), else rendered by the processor's chat template."""
    if family is not None:
        return family.prompt_text(processor, text, 1)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answered_ids(output: Path, settings: dict | None = None, model_name: str | None = None) -> set[str]:
    """Question ids already answered in `output`. A run killed while writing leaves a cut last line: it is
    dropped from the file (logged) so the resumed run answers that question again. Answers written by another
    model or with other decoding settings (the batch size aside) are an error: resuming would mix two runs."""
    if not output.exists():
        return set()
    drop_torn_tail(output)
    done = set()
    for number, answer in enumerate(iter_jsonl(output, Answer), start=1):
        if settings is not None:
            theirs = {k: v for k, v in answer.generation.items() if k != "batch_size"}
            ours = {k: v for k, v in settings.items() if k != "batch_size"}
            if theirs != ours or (model_name is not None and answer.model != model_name):
                raise ValueError(
                    f"{output}:{number}: answered by {answer.model or 'another model'} with "
                    f"{theirs}, not {model_name or 'this model'} with {ours}; write to another file"
                )
        done.add(answer.question_id)
    return done


def answer_queries(
    model,
    processor,
    queries: Iterable[Query],
    output: str | Path,
    config: DecodingConfig | None = None,
    model_name: str = "",
    progress: bool = True,
) -> RunSummary:
    """Answer, in this process, every query not yet in `output`, appending one `Answer` per query after each
    batch. A question whose image cannot be read is skipped with a warning and counted."""
    config = config or DecodingConfig()
    output = Path(output)
    queries = list(queries)
    done = answered_ids(output, config.generation_settings(), model_name)
    todo = [q for q in queries if q.question_id not in done]
    summary = RunSummary(resumed=len(queries) - len(todo))
    if summary.resumed:
        log.info("%s: resuming, %d of %d questions already answered", output, summary.resumed, len(queries))
    answer_batch = BatchAnswerer(model, processor, config, model_name)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.touch()
    bar = progress_bar(total=len(todo), desc=f"{config.mode} {output.name}", disable=not progress)
    for chunk in _chunks(todo, config.batch_size, by_image=config.mode == "logits"):
        batch, images = _readable(chunk, summary)
        if batch:
            summary.written += write_jsonl(output, answer_batch(batch, images), append=True)
        bar.update(len(chunk))
    bar.close()
    return summary


def _readable(chunk: list[Query], summary: RunSummary) -> tuple[list[Query], list[Image.Image]]:
    """The queries of `chunk` whose image can be read, and their images; the others are counted in `summary`."""
    batch, images = [], []
    for query in chunk:
        try:  # consecutive questions about one image (POPE, MME) read it once
            same = batch and batch[-1].image == query.image
            images.append(images[-1] if same else _open_image(query.image))
            batch.append(query)
        except OSError as error:
            log.warning(
                "question %s: cannot read image %s (%s); skipped", query.question_id, query.image, type(error).__name__
            )
            summary.skipped += 1
            summary.skipped_ids.append(query.question_id)
    return batch, images


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class BatchAnswerer:
    """One model's answers to a batch of queries, in its family's prompt format: decoded text (`generate`) or
    yes/no from the next-token probabilities (`logits`), each `Answer` recording the model and its settings."""

    def __init__(self, model, processor, config: DecodingConfig, model_name: str):
        from hadpo.models import decoder_start_token_id, find_family  # deferred, as in load_model

        self.model, self.processor, self.config, self.model_name = model, processor, config, model_name
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"  # decoder-only: the last position of every row is its real last token
        self.family = find_family(model.config.model_type)
        self.decoder_start = decoder_start_token_id(model.config)  # an encoder-decoder LM answers in its decoder
        self.yes_sequences = answer_token_ids(processor, ANSWER_VARIANTS["yes"], self.family)
        self.no_sequences = answer_token_ids(processor, ANSWER_VARIANTS["no"], self.family)
        self.settings = config.generation_settings()

    def __call__(self, batch: list[Query], images: list[Image.Image]) -> list[Answer]:
        config = self.config
        texts = [chat_prompt(self.processor, q.prompt, self.family) for q in batch]
        if config.mode == "logits":
            records = yes_no_answers(
                self.model,
                self.processor,
                batch,
                images,
                texts,
                self.yes_sequences + self.no_sequences,
                len(self.yes_sequences),
                config.device,
                self.decoder_start,
                reuse_cache=not (self.family and self.family.mm_token_types),
            )
        else:
            inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True).to(config.device)
            # Seeded per batch from its first question: reproducible, whatever ran before in the process.
            torch.manual_seed(config.seed + zlib.crc32(batch[0].question_id.encode()))
            records = _generated_answers(self.model, self.processor, inputs, config, self.decoder_start is None)
        for record, query in zip(records, batch):
            record.update(
                question_id=query.question_id,
                image_id=query.image_id,
                prompt=query.prompt,
                mode=config.mode,
                model=self.model_name,
                generation=self.settings,
            )
        return [Answer(**record) for record in records]


def _chunks(queries: list[Query], size: int, by_image: bool) -> Iterable[list[Query]]:
    """Batches of up to `size` queries; `by_image`: consecutive questions about one image stay in one batch
    where they fit (they share that image's encoding), a batch holding whole groups of them."""
    if not by_image:
        yield from (queries[start : start + size] for start in range(0, len(queries), size))
        return
    chunk: list[Query] = []
    for _, group in itertools.groupby(queries, key=lambda query: query.image):
        group = list(group)
        if chunk and len(chunk) + len(group) > size:
            yield chunk
            chunk = []
        for start in range(0, len(group), size):
            chunk += group[start : start + size]
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


@torch.no_grad()
def _generated_answers(model, processor, inputs, config: DecodingConfig, returns_prompt: bool = True) -> list[dict]:
    """Decoded answers; a decoder-only model returns the prompt before them, an encoder-decoder only its
    decoder's tokens (from the start token, dropped as a special token)."""
    kwargs = {"max_new_tokens": config.max_new_tokens, "num_beams": config.num_beams, "do_sample": config.do_sample}
    if config.do_sample:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    generated = model.generate(**inputs, **kwargs)
    new_tokens = generated[:, inputs["input_ids"].shape[1] :] if returns_prompt else generated
    texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [{"text": text.strip()} for text in texts]
