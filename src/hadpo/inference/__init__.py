"""Batched inference over any `AutoModelForImageTextToText` + processor: the one way hadpo asks a model about
images, for the pairs stage (sampled descriptions, the model's own yes/no answers) and for the benchmarks alike.

One `Answer` record (hadpo.records) per question is appended to a JSONL file as each batch finishes, so an
interrupted run resumes by skipping the question ids already in the file (issue 3, "Inference runner").
`DecodingConfig` is the one declaration of decoding settings; config sections that decode extend it.

Two modes:
- `generate`: decode up to `max_new_tokens` (greedy by default; beam search or seeded sampling configurable);
- `logits`: compare the probability of the answer "yes" against that of "no", each summed over its case
  variants ("yes", "Yes", "YES"), taking the tokens that the chat template writes after the generation prompt
  (so tokenizers that prefix a space get "Ġyes" / "▁Yes", not "yes"). Consecutive questions about one image are
  answered from one encoding of it, in one forward per batch (`hadpo.inference.image_prefix`); otherwise one
  forward over the whole prompts. When an answer word is several tokens (small vocabularies), its probability
  is teacher-forced. The record keeps both choices as `yes_prob` = P(yes) / (P(yes) + P(no)) and
  `margin` = log P(yes) - log P(no).
A generated answer is read as yes / no by POPE's official rule (`parse_answer`, Li et al. 2023, arXiv 2305.10355).

Prompts take the model family's own format where hadpo has an adapter for it (`hadpo.models`: InstructBLIP's
plain instruction, MiniGPT-4's template), else the processor's chat template; an encoder-decoder language model
(InstructBLIP-FlanT5) answers in its decoder. Launched on several processes (`accelerate launch`), the runner
spreads each call's questions over them (`hadpo.inference.parallel`).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image
from pydantic import Field
from tqdm.auto import tqdm

from hadpo.config import Config
from hadpo.inference import parallel
from hadpo.inference.image_prefix import prefix_answer_log_probs, split_prefix
from hadpo.inference.packing import packing_unsupported
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

log = logging.getLogger(__name__)

ANSWER_VARIANTS = {"yes": ("yes", "Yes", "YES"), "no": ("no", "No", "NO")}
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

    mode: Literal["generate", "logits"] = Field("generate", description="generate text, or answer yes/no from "
                                                "the next-token probabilities")
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
    processor = (family.load_processor(str(model_name_or_path)) if family
                 else AutoProcessor.from_pretrained(str(model_name_or_path)))  # fmt: skip
    return model.to(device).eval(), processor


def chat_prompt(processor, text: str, family: VLMFamily | None = None) -> str:
    """The user turn with one image, ending where the answer starts: in the family's own prompt format
    (InstructBLIP's plain instruction, MiniGPT-4's template), else rendered by the processor's chat template."""
    if family is not None:
        return family.prompt_text(processor, text, 1)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answer_token_ids(processor, answers: Sequence[str], family: VLMFamily | None = None) -> list[list[int]]:
    """The distinct token sequences of each answer word as the chat template writes it after the generation
    prompt (usually one token, e.g. "▁Yes" or "Ġyes").

    The template decides whether a space separates "ASSISTANT:" from the answer, so tokenise the conversation
    with and without the assistant turn and take what follows the prompt, up to the end of the word; fall back
    to the word tokenised alone after a space. A family whose format tokenises the answer apart from the prompt
    (`separate_answer_tokens`: InstructBLIP, MiniGPT-4) gets the answer tokenised alone, as its collator trains
    it."""
    tokenizer = getattr(processor, "tokenizer", processor)
    if family is not None and family.separate_answer_tokens:
        continuations = [tokenizer(family.response_text(processor, answer), add_special_tokens=False)["input_ids"]
                         for answer in answers]  # fmt: skip
    else:
        continuations = [_continuation_in_turn(processor, tokenizer, answer) for answer in answers]
    sequences: list[list[int]] = []
    for answer, continuation in zip(answers, continuations):
        for size in range(1, len(continuation) + 1):
            if tokenizer.decode(continuation[:size]).strip() == answer:
                continuation = continuation[:size]
                break
        if continuation and continuation not in sequences:
            sequences.append(continuation)
    return sequences


def _continuation_in_turn(processor, tokenizer, answer: str) -> list[int]:
    user = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    prompt_text = processor.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    turn = user + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    full_ids = tokenizer(processor.apply_chat_template(turn, tokenize=False), add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] == prompt_ids:
        return full_ids[len(prompt_ids) :]
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"]


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
                raise ValueError(f"{output}:{number}: answered by {answer.model or 'another model'} with "
                                 f"{theirs}, not {model_name or 'this model'} with {ours}; write to another file")
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
    if shard and parallel.world_size() > 1 and parallel.rank() == 0:
        return _run_on_every_rank(model, processor, list(queries), output, config, model_name, progress)
    done = answered_ids(output, config.generation_settings(), model_name)
    queries = list(queries)
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
                log.warning("question %s: cannot read image %s (%s); skipped", query.question_id, query.image,
                            error.__class__.__name__)
                summary.skipped += 1
                summary.skipped_ids.append(query.question_id)
        if batch:
            texts = [chat_prompt(processor, q.prompt, family) for q in batch]
            if config.mode == "logits":
                records = _yes_no_answers(model, processor, batch, images, texts, yes_sequences + no_sequences,
                                          len(yes_sequences), config.device, decoder_start,
                                          reuse_cache=not (family and family.mm_token_types))  # fmt: skip
            else:
                inputs = processor(images=images, text=texts, return_tensors="pt", padding=True).to(config.device)
                # Seeded per batch from its first question: reproducible, whatever ran before in the process.
                torch.manual_seed(config.seed + zlib.crc32(batch[0].question_id.encode()))
                records = _generated_answers(model, processor, inputs, batch, config, decoder_start is None)
            for record, query in zip(records, batch):
                record.update(question_id=query.question_id, image_id=query.image_id, prompt=query.prompt,
                              mode=config.mode, model=model_name, generation=settings)
            summary.written += write_jsonl(output, (Answer(**r) for r in records), append=True)
        bar.update(len(chunk))
    bar.close()
    return summary


def _run_on_every_rank(model, processor, queries: list[Query], output: Path, config: DecodingConfig,
                       model_name: str, progress: bool) -> RunSummary:  # fmt: skip
    """Rank 0 of a multi-process launch: merge what an interrupted run left in shards, send each rank a
    contiguous slice of the rest (an image's questions on one rank), then merge the shards in question order."""
    path = str(getattr(model, "name_or_path", "") or "")
    if not path:
        log.warning("%s: a model built in memory cannot be loaded by the other processes; rank 0 answers alone",
                    output)  # fmt: skip
        return run_queries(model, processor, queries, output, config, model_name, progress, shard=False)
    _merge_shards(output, queries, config, model_name)
    done = answered_ids(output, config.generation_settings(), model_name)
    todo = [q for q in queries if q.question_id not in done]
    slices = parallel.contiguous_slices(todo, parallel.world_size(), key=lambda query: query.image)
    job = parallel.Job(path, config.dtype, slices, str(output), config, model_name)
    statuses = parallel.dispatch(job, lambda job: _answer_slice(job, (model, processor), progress))
    written = _merge_shards(output, queries, config, model_name)
    failed = [f"rank {r}: {status['error']}" for r, status in enumerate(statuses) if status.get("error")]
    if failed:
        raise RuntimeError(f"{output}: " + "; ".join(failed) + " (answers so far are kept; run again to resume)")
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
        summary = run_queries(*loaded, job.slices[parallel.rank()], parallel.shard_path(job.output, parallel.rank()),
                              config, job.model_name, progress, shard=False)  # fmt: skip
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
    new = sorted((a for a in found.values() if a.question_id not in done),
                 key=lambda answer: order.get(answer.question_id, len(order)))  # fmt: skip
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


def _yes_no_answers(model, processor, batch: list[Query], images, texts: list[str], sequences: list[list[int]],
                    n_yes: int, device: str, decoder_start: int | None, reuse_cache: bool) -> list[dict]:  # fmt: skip
    """Logits-mode answers of a batch: each image's questions from one encoding of it (`image_prefix`, packed),
    or whole, for images whose prompts cannot share one and for models that cannot read packed rows (an
    encoder-decoder language model answers in its decoder)."""
    groups = [list(indices) for _, indices in itertools.groupby(range(len(batch)), key=lambda i: batch[i].image)]
    packable = decoder_start is None and packing_unsupported(model) is None
    split = [split_prefix(processor, images[g[0]], [texts[i] for i in g]) if packable else None for g in groups]
    log_probs: list[torch.Tensor | None] = [None] * len(batch)
    shared = [(group, prefix) for group, prefix in zip(groups, split) if prefix is not None]
    if shared:
        rows = prefix_answer_log_probs(model, [prefix for _, prefix in shared], sequences)
        for index, row in zip((i for group, _ in shared for i in group), rows):
            log_probs[index] = row
    whole = [i for group, prefix in zip(groups, split) if prefix is None for i in group]
    if whole:
        inputs = processor(images=[images[i] for i in whole], text=[texts[i] for i in whole], return_tensors="pt",
                           padding=True).to(device)  # fmt: skip
        rows = (_answer_log_probs(model, inputs, sequences, reuse_cache) if decoder_start is None
                else _decoder_answer_log_probs(model, inputs, sequences, decoder_start))  # fmt: skip
        for index, row in zip(whole, rows):
            log_probs[index] = row
    return _yes_no_records(torch.stack(log_probs), n_yes)


def describe_images(
    model_path: str, images_file: str | Path, output: str | Path, config: DecodingConfig,
    prompt: str = DESCRIBE_PROMPT, progress: bool = True,
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
def _generated_answers(model, processor, inputs, batch: list[Query], config: DecodingConfig,
                       returns_prompt: bool = True) -> list[dict]:  # fmt: skip
    """Decoded answers; a decoder-only model returns the prompt before them, an encoder-decoder only its
    decoder's tokens (from the start token, dropped as a special token)."""
    kwargs = {"max_new_tokens": config.max_new_tokens, "num_beams": config.num_beams, "do_sample": config.do_sample}
    if config.do_sample:
        kwargs.update(temperature=config.temperature, top_p=config.top_p)
    generated = model.generate(**inputs, **kwargs)
    new_tokens = generated[:, inputs["input_ids"].shape[1] :] if returns_prompt else generated
    texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [{"text": text.strip()} for text in texts]


@torch.no_grad()
def _answer_log_probs(model, inputs, sequences: list[list[int]], reuse_cache: bool = True) -> torch.Tensor:
    """(B, K) log P(sequence k | prompt of row b): one forward over the prompts gives every single-token answer;
    a multi-token answer continues from the prompts' key/value cache with its own tokens (teacher forcing), the
    cache cut back to the prompt afterwards. Without `reuse_cache` (Qwen2-VL's M-RoPE derives positions from the
    whole attention mask), or when the output carries no cache (InstructBLIP keeps it inside its language
    model's output), the prompt, images included, is read again with the answer after it."""
    # No position_ids: the model derives them as in its own first generation step (rotary models see only
    # relative positions; OPT-style models count them from the attention mask; Qwen2-VL builds 3-D ones).
    multi_token = any(len(sequence) > 1 for sequence in sequences)
    output = model(**inputs, use_cache=multi_token and reuse_cache)
    first = torch.log_softmax(output.logits[:, -1, :].float(), dim=-1)  # (B, V) the answer's first token
    columns = []
    mask = inputs["attention_mask"]
    batch_size = mask.shape[0]
    # transformers 5 names the key/value cache `cache`; 4.x names it `past_key_values`.
    cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = getattr(output, cache_argument, None) if multi_token and reuse_cache else None
    for sequence in sequences:
        total = first[:, sequence[0]]
        if len(sequence) > 1:
            # Feed all but the last answer token: the logits after token k predict token k + 1.
            fed = torch.tensor(sequence[:-1], device=mask.device).expand(batch_size, -1)  # (B, L - 1)
            full_mask = torch.cat([mask, torch.ones_like(fed)], dim=1)
            if cache is not None:
                step = model(input_ids=fed, attention_mask=full_mask, use_cache=True, **{cache_argument: cache})
            else:
                step = model(**_with_answer(inputs, fed), use_cache=False)
            log_probs = torch.log_softmax(step.logits[:, -fed.shape[1] :].float(), dim=-1)  # (B, L - 1, V)
            targets = torch.tensor(sequence[1:], device=mask.device).expand(batch_size, -1).unsqueeze(-1)
            total = total + log_probs.gather(-1, targets).squeeze(-1).sum(-1)
            if cache is not None:
                cache.crop(-fed.shape[1])  # drop the answer tokens again
        columns.append(total)
    return torch.stack(columns, dim=1)


def _with_answer(inputs, fed: torch.Tensor) -> dict:
    """The model inputs with answer tokens `fed` (B, L) after each prompt: text tokens, attended to."""
    extended = dict(inputs)
    extended["input_ids"] = torch.cat([inputs["input_ids"], fed], dim=1)
    extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(fed)], dim=1)
    for key in ("mm_token_type_ids", "token_type_ids"):  # per-token kinds: 0 is text
        if key in inputs:
            extended[key] = torch.cat([inputs[key], torch.zeros_like(fed, dtype=inputs[key].dtype)], dim=1)
    return extended


@torch.no_grad()
def _decoder_answer_log_probs(model, inputs, sequences: list[list[int]], start: int) -> torch.Tensor:
    """(B, K) log P(sequence k | prompt of row b) for an encoder-decoder language model (InstructBLIP-FlanT5):
    the prompt is the encoder's, the answer the decoder's from its start token, teacher-forced; one forward for
    the single-token answers, one per longer answer."""
    batch_size = inputs["input_ids"].shape[0]
    device = inputs["input_ids"].device
    columns: dict[int, torch.Tensor] = {}
    single = [k for k, sequence in enumerate(sequences) if len(sequence) == 1]
    if single:
        decoder_input_ids = torch.full((batch_size, 1), start, device=device)
        first = torch.log_softmax(model(**inputs, decoder_input_ids=decoder_input_ids).logits[:, -1].float(), -1)
        columns.update({k: first[:, sequences[k][0]] for k in single})
    for k, sequence in enumerate(sequences):
        if len(sequence) > 1:
            fed = torch.tensor([start, *sequence[:-1]], device=device).expand(batch_size, -1)  # (B, L)
            log_probs = torch.log_softmax(model(**inputs, decoder_input_ids=fed).logits.float(), dim=-1)
            targets = torch.tensor(sequence, device=device).expand(batch_size, -1).unsqueeze(-1)
            columns[k] = log_probs.gather(-1, targets).squeeze(-1).sum(-1)
    return torch.stack([columns[k] for k in range(len(sequences))], dim=1)


def _yes_no_records(log_probs: torch.Tensor, n_yes: int) -> list[dict]:
    """Answer records from (B, K) log-probs of the yes variants (first n_yes columns) and the no variants."""
    log_yes = torch.logsumexp(log_probs[:, :n_yes], dim=-1)  # (B,) summed over case variants
    log_no = torch.logsumexp(log_probs[:, n_yes:], dim=-1)
    records = []
    for ly, ln in zip(log_yes.tolist(), log_no.tolist()):
        margin = ly - ln
        records.append({"text": "yes" if margin > 0 else "no", "yes_prob": 1.0 / (1.0 + math.exp(-margin)),
                        "margin": margin})
    return records


def leading_yes_no(text: str) -> str | None:
    """'yes' / 'no' when a generated answer starts with that word (any case, punctuation after it), else None."""
    first = text.strip().split(maxsplit=1)[:1]
    word = first[0].strip(".,!:;").lower() if first else ""
    return word if word in ("yes", "no") else None


def mode_agreement(generated: Iterable[Answer], logits: Iterable[Answer]) -> dict:
    """How often the logits mode and the generate mode give the same answer, over the questions whose generated
    answer starts with yes/no (the issue's must-show: >= 99 %)."""
    by_id = {answer.question_id: answer for answer in logits}
    compared = agreed = 0
    for answer in generated:
        word = leading_yes_no(answer.text)
        other = by_id.get(answer.question_id)
        if word is None or other is None:
            continue
        compared += 1
        agreed += word == other.text
    return {"compared": compared, "agreed": agreed, "rate": agreed / compared if compared else None}


def parse_answer(text: str, strict: bool = False) -> str:
    """'yes' | 'no' (| 'other' in strict mode). Official: before the first '.', commas dropped, split on spaces;
    "no" when the words contain "No", "no" or "not" (so "NO" and "Nope" count as yes, as officially).
    Strict: the first word, lower-cased and stripped of punctuation, must be yes or no."""
    if strict:
        first = re.findall(r"[a-z]+", text.lower())[:1]
        return first[0] if first and first[0] in ("yes", "no") else "other"
    if "." in text:
        text = text.split(".")[0]
    tokens = text.replace(",", "").split(" ")
    return "no" if ("No" in tokens or "no" in tokens or "not" in tokens) else "yes"
