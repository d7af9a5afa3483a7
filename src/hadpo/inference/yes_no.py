"""Yes/no answers from next-token probabilities, and reading yes/no from generated text.

`yes_no_answers` compares P(yes) with P(no), each summed over its case variants ("yes", "Yes", "YES"), taking the
tokens that the chat template writes after the generation prompt (so tokenizers that prefix a space get "Ġyes" /
"▁Yes", not "yes"). Consecutive questions about one image are answered from one encoding of it, in one packed
forward (`hadpo.inference.image_prefix`); other questions, and models that cannot read packed rows, from one
forward over their whole prompts. An answer word of several tokens (small vocabularies) is teacher-forced; an
encoder-decoder language model (InstructBLIP-FlanT5) answers in its decoder. A generated answer is read as yes /
no by POPE's official rule (`parse_answer`, Li et al. 2023, arXiv 2305.10355).
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from hadpo.inference.image_prefix import prefix_answer_log_probs, split_prefix
from hadpo.inference.packing import packing_unsupported
from hadpo.records import Answer

if TYPE_CHECKING:
    from hadpo.models import VLMFamily

ANSWER_VARIANTS = {"yes": ("yes", "Yes", "YES"), "no": ("no", "No", "NO")}


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
        continuations = [
            tokenizer(family.response_text(processor, answer), add_special_tokens=False)["input_ids"]
            for answer in answers
        ]
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


def yes_no_answers(
    model,
    processor,
    batch: list,
    images,
    texts: list[str],
    sequences: list[list[int]],
    n_yes: int,
    device: str,
    decoder_start: int | None,
    reuse_cache: bool,
) -> list[dict]:
    """Logits-mode answer records of a batch of queries (consecutive ones about one image share its encoding):
    each image's questions from one encoding of it (`image_prefix`, packed),
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
        inputs = processor(
            images=[images[i] for i in whole], text=[texts[i] for i in whole], return_tensors="pt", padding=True
        ).to(device)
        rows = (
            answer_log_probs(model, inputs, sequences, reuse_cache)
            if decoder_start is None
            else decoder_answer_log_probs(model, inputs, sequences, decoder_start)
        )
        for index, row in zip(whole, rows):
            log_probs[index] = row
    return _yes_no_records(torch.stack(log_probs), n_yes)


@torch.no_grad()
def answer_log_probs(model, inputs, sequences: list[list[int]], reuse_cache: bool = True) -> torch.Tensor:
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
def decoder_answer_log_probs(model, inputs, sequences: list[list[int]], start: int) -> torch.Tensor:
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
        records.append(
            {"text": "yes" if margin > 0 else "no", "yes_prob": 1.0 / (1.0 + math.exp(-margin)), "margin": margin}
        )
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
