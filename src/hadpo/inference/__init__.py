"""Batched inference over any `AutoModelForImageTextToText` + processor: the one way hadpo asks a model about
images, for the pairs stage (sampled descriptions, the model's own yes/no answers) and for the benchmarks alike.

One `Answer` record (hadpo.records) per question is appended to a JSONL file as each batch finishes, so an
interrupted run resumes by skipping the question ids already in the file (issue 3, "Inference runner").
`DecodingConfig` is the one declaration of decoding settings; config sections that decode extend it.

Two modes:
- `generate`: decode up to `max_new_tokens` (greedy by default; beam search or seeded sampling configurable);
- `logits`: answer yes/no from the next-token probabilities of the answer words (`hadpo.inference.yes_no`:
  an image's questions from one encoding of it); the record keeps `yes_prob` = P(yes) / (P(yes) + P(no)) and
  `margin` = log P(yes) - log P(no).
A generated answer is read as yes / no by POPE's official rule (`parse_answer`, Li et al. 2023, arXiv 2305.10355).

Prompts take the model family's own format where hadpo has an adapter for it (`hadpo.models`: InstructBLIP's
plain instruction, MiniGPT-4's template), else the processor's chat template; an encoder-decoder language model
(InstructBLIP-FlanT5) answers in its decoder. Launched on several processes (`accelerate launch`), the runner
spreads each call's questions over them (`hadpo.inference.parallel`).
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image
from pydantic import Field
from tqdm.auto import tqdm

from hadpo.config import Config
from hadpo.errors import RunFailed
from hadpo.inference import parallel
from hadpo.inference.yes_no import (
    ANSWER_VARIANTS,
    answer_token_ids,
    leading_yes_no,
    mode_agreement,
    parse_answer,
    yes_no_answers,
)
from hadpo.records import (
    Answer,
    ImageRecord,
    drop_torn_tail,
    iter_jsonl,
    read_jsonl,
    resolve_image_path,
    write_jsonl,
)

if TYPE_CHECKING:
    from hadpo.models import VLMFamily

__all__ = [
    "ANSWER_VARIANTS",
    "DESCRIBE_PROMPT",
    "DecodingConfig",
    "Query",
    "RunSummary",
    "answer_token_ids",
    "answered_ids",
    "chat_prompt",
    "describe_images",
    "leading_yes_no",
    "load_model",
    "mode_agreement",
    "parse_answer",
    "run_queries",
    "serve_if_worker",
]

log = logging.getLogger(__name__)

DESCRIBE_PROMPT = "Describe this image in detail."
GENERATE_ONLY = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p")  # unused in logits mode


@dataclass
class Query:
    """One question for the runner: an id, an image file and the user's text."""

    question_id: str
    image: Path
    prompt: str
    image_id: str = ""


class DecodingConfig(Config):
    """How a model answers: the one declaration of decoding settings. A config section that decodes (the pairs
    stage's `describe` and `qa.sampling`, the demo's `eval`) extends it with its own defaults, so its keys stay
    flat in YAML and setting one of them never resets the others."""

    mode: Literal["generate", "logits"] = Field(
        "generate", description="generate text, or answer yes/no from the next-token probabilities"
    )
    batch_size: int = Field(8, ge=1, description="questions per forward pass")
    max_new_tokens: int = Field(16, ge=1, description="generate: longest answer in tokens")
    num_beams: int = Field(1, ge=1, description="generate: beam search width (1 = greedy or sampling)")
    do_sample: bool = Field(False, description="generate: sample (seeded) instead of greedy / beam search")
    temperature: float = Field(1.0, ge=0, description="generate: sampling temperature")
    top_p: float = Field(1.0, ge=0, le=1, description="generate: nucleus sampling mass")
    seed: int = Field(0, description="sampling seed (each batch: seed + crc32 of its first question id)")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, ...")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights' dtype")

    def decoding(self, **changes) -> DecodingConfig:
        """The plain decoding settings of this config (a section extending DecodingConfig), with `changes`."""
        return DecodingConfig(**{name: getattr(self, name) for name in DecodingConfig.model_fields} | changes)

    def generation_settings(self) -> dict:
        """The settings an answer records (and a resumed run must match): all but the device, and in logits
        mode none of the generate-only ones."""
        skipped = ("device", *GENERATE_ONLY) if self.mode == "logits" else ("device",)
        return {name: getattr(self, name) for name in DecodingConfig.model_fields if name not in skipped}


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
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hadpo.models import find_family  # (imported here: it loads transformers' model code)
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


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


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


def run_queries(
    model,
    processor,
    queries: Iterable[Query],
    output: str | Path,
    config: DecodingConfig | None = None,
    model_name: str = "",
    progress: bool = True,
    shard: bool = True,
) -> RunSummary:
    """Answer every query not yet in `output`, appending one `Answer` per query after each batch. Launched on
    several processes, rank 0's call spreads the questions over every rank (`hadpo.inference.parallel`);
    `shard=False` answers them here only."""
    from hadpo.models import decoder_start_token_id, find_family

    config = config or DecodingConfig()
    output = Path(output)
    queries = list(queries)
    if shard:
        _merge_shards(output, queries, config, model_name)  # what an interrupted multi-process run answered
        if parallel.world_size() > 1 and parallel.rank() == 0:
            return _run_on_every_rank(model, processor, queries, output, config, model_name, progress)
    done = answered_ids(output, config.generation_settings(), model_name)
    todo = [q for q in queries if q.question_id not in done]
    summary = RunSummary(resumed=len(queries) - len(todo))
    if summary.resumed:
        log.info("%s: resuming, %d of %d questions already answered", output, summary.resumed, len(queries))
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # decoder-only: the last position of every row is its real last token
    family = find_family(model.config.model_type)
    decoder_start = decoder_start_token_id(model.config)  # an encoder-decoder LM answers in its decoder
    yes_sequences = answer_token_ids(processor, ANSWER_VARIANTS["yes"], family)
    no_sequences = answer_token_ids(processor, ANSWER_VARIANTS["no"], family)
    settings = config.generation_settings()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.touch()
    bar = tqdm(total=len(todo), desc=f"{config.mode} {output.name}", disable=not progress)
    for chunk in _chunks(todo, config.batch_size, by_image=config.mode == "logits"):
        batch, images = [], []
        for query in chunk:
            try:  # consecutive questions about one image (POPE, MME) read it once
                same = batch and batch[-1].image == query.image
                images.append(images[-1] if same else _open_image(query.image))
                batch.append(query)
            except OSError as error:
                log.warning(
                    "question %s: cannot read image %s (%s); skipped",
                    query.question_id,
                    query.image,
                    error.__class__.__name__,
                )
                summary.skipped += 1
                summary.skipped_ids.append(query.question_id)
        if batch:
            texts = [chat_prompt(processor, q.prompt, family) for q in batch]
            if config.mode == "logits":
                records = yes_no_answers(
                    model,
                    processor,
                    batch,
                    images,
                    texts,
                    yes_sequences + no_sequences,
                    len(yes_sequences),
                    config.device,
                    decoder_start,
                    reuse_cache=not (family and family.mm_token_types),
                )
            else:
                inputs = processor(images=images, text=texts, return_tensors="pt", padding=True).to(config.device)
                # Seeded per batch from its first question: reproducible, whatever ran before in the process.
                torch.manual_seed(config.seed + zlib.crc32(batch[0].question_id.encode()))
                records = _generated_answers(model, processor, inputs, batch, config, decoder_start is None)
            for record, query in zip(records, batch):
                record.update(
                    question_id=query.question_id,
                    image_id=query.image_id,
                    prompt=query.prompt,
                    mode=config.mode,
                    model=model_name,
                    generation=settings,
                )
            summary.written += write_jsonl(output, (Answer(**r) for r in records), append=True)
        bar.update(len(chunk))
    bar.close()
    return summary


def _run_on_every_rank(
    model, processor, queries: list[Query], output: Path, config: DecodingConfig, model_name: str, progress: bool
) -> RunSummary:
    """Rank 0 of a multi-process launch: send each rank a contiguous slice of the questions left (an image's
    questions on one rank), then merge the ranks' shards in question order."""
    path = str(getattr(model, "name_or_path", "") or "")
    if not path:
        log.warning("%s: a model built in memory cannot be loaded by the other processes; rank 0 answers alone", output)
        return run_queries(model, processor, queries, output, config, model_name, progress, shard=False)
    done = answered_ids(output, config.generation_settings(), model_name)
    todo = [q for q in queries if q.question_id not in done]
    slices = parallel.contiguous_slices(todo, parallel.world_size(), key=lambda query: query.image)
    job = parallel.Job(path, config.dtype, slices, str(output), config, model_name)
    statuses = parallel.dispatch(job, lambda job: _answer_slice(job, (model, processor), progress))
    written = _merge_shards(output, queries, config, model_name)
    failed = [f"rank {r}: {status['error']}" for r, status in enumerate(statuses) if status.get("error")]
    if failed:
        raise RunFailed(f"{output}: " + "; ".join(failed) + " (answers so far are kept; run again to resume)")
    skipped = [question_id for status in statuses for question_id in status["skipped"]]
    return RunSummary(written=written, resumed=len(queries) - len(todo), skipped=len(skipped), skipped_ids=skipped)


_WORKER_MODELS: dict[tuple, tuple] = {}  # (path, device, dtype) -> (model, processor) of a serving rank


def _answer_slice(job: parallel.Job, loaded=None, progress: bool = False) -> dict:
    """One rank's share of a job, appended to its shard; errors are reported to rank 0, not raised."""
    try:
        if loaded is None:
            key = (job.model_path, parallel.device_for_rank(job.config.device), job.dtype)
            if key not in _WORKER_MODELS:
                _WORKER_MODELS.clear()
                _WORKER_MODELS[key] = load_model(*key)
            loaded = _WORKER_MODELS[key]
        config = job.config.model_copy(update={"device": str(next(loaded[0].parameters()).device)})
        summary = run_queries(
            *loaded,
            job.slices[parallel.rank()],
            parallel.shard_path(job.output, parallel.rank()),
            config,
            job.model_name,
            progress,
            shard=False,
        )
        return {"skipped": summary.skipped_ids}
    except Exception as error:  # noqa: BLE001 - any failure is rank 0's to report
        return {"error": f"{type(error).__name__}: {error}", "skipped": []}


def _merge_shards(output: Path, queries: list[Query], config: DecodingConfig, model_name: str) -> int:
    """Append the answers in `output`'s shards that it lacks, in question order, and delete the shards."""
    shards = parallel.leftover_shards(output)
    if not shards:
        return 0
    settings = config.generation_settings()
    done = answered_ids(output, settings, model_name)
    found: dict[str, Answer] = {}
    for shard_file in shards:
        answered_ids(shard_file, settings, model_name)  # the same model and settings; a cut last line dropped
        for answer in iter_jsonl(shard_file, Answer):
            found.setdefault(answer.question_id, answer)
    order = {query.question_id: index for index, query in enumerate(queries)}
    new = sorted(
        (a for a in found.values() if a.question_id not in done),
        key=lambda answer: order.get(answer.question_id, len(order)),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    written = write_jsonl(output, new, append=True) if new else 0
    for shard_file in shards:
        shard_file.unlink()
    return written


def serve_if_worker() -> bool:
    """In a multi-process launch, join the process group; ranks > 0 then answer rank 0's questions until its
    command ends, and return True (they have nothing else to do)."""
    if parallel.world_size() == 1:
        return False
    parallel.start()
    if parallel.rank() == 0:
        return False
    parallel.serve(_answer_slice)
    return True


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


def describe_images(
    model_path: str,
    images_file: str | Path,
    output: str | Path,
    config: DecodingConfig,
    prompt: str = DESCRIBE_PROMPT,
    progress: bool = True,
) -> Path:
    """One description per image of an images.jsonl (question_id = image_id), resumable."""
    if Path(images_file).suffix != ".jsonl":
        raise ValueError(f"{images_file}: describing images needs an images.jsonl of ImageRecords")
    records = read_jsonl(images_file, ImageRecord)
    queries = [Query(r.image_id, resolve_image_path(r, images_file), prompt, image_id=r.image_id) for r in records]
    model, processor = load_model(model_path, config.device, config.dtype)
    run_queries(model, processor, queries, output, config, model_name=str(model_path), progress=progress)
    return Path(output)


@torch.no_grad()
def _generated_answers(
    model, processor, inputs, batch: list[Query], config: DecodingConfig, returns_prompt: bool = True
) -> list[dict]:
    """Decoded answers; a decoder-only model returns the prompt before them, an encoder-decoder only its
    decoder's tokens (from the start token, dropped as a special token)."""
    kwargs = {"max_new_tokens": config.max_new_tokens, "num_beams": config.num_beams, "do_sample": config.do_sample}
    if config.do_sample:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    generated = model.generate(**inputs, **kwargs)
    new_tokens = generated[:, inputs["input_ids"].shape[1] :] if returns_prompt else generated
    texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [{"text": text.strip()} for text in texts]
