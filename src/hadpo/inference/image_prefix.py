"""Yes/no questions answered from one encoding per image (issue 13): POPE asks six questions about each image and
MME two, and every one of them repeats the image (576 tokens in LLaVA-1.5) and the prompt text before the
question. Here each image's *prefix* (the templated prompt up to where its questions differ, image tokens
included) is read once: a packed row holds the prefix and then every question as a branch of its own
(`hadpo.inference.packing`: a branch sees the prefix and itself, numbered as if it followed the prefix alone),
and the language-model head reads only the columns where answers start. One forward per batch of images.

The split is found on tokens, not on text: each prompt is tokenised with its image placeholder unexpanded, the
longest common token prefix of an image's prompts is its prefix, and the processor's expanded encoding of one
prompt must end with exactly the other tokens (the placeholder expanded inside the prefix only), else the image's
questions are answered whole (`split_prefix` returns None). Models whose image encoding reads the question
(InstructBLIP's Q-Former) are answered whole too, as are models that take no block mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hadpo.inference.packing import PADDING, packed_inputs

# Processor outputs that are per-token text inputs (rebuilt here), not image inputs.
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class ImagePrefix:
    """One image's questions split at their common prefix."""

    prefix_ids: torch.Tensor  # (L,) with the image tokens expanded
    suffix_ids: list[torch.Tensor]  # per question, (S_i,), at least one token, no image token
    image_inputs: dict  # the processor's image tensors for this one image
    prefix_token_types: torch.Tensor | None  # (L,) mm_token_type_ids (Qwen2-VL), if the processor gives them


def split_prefix(processor, image, texts: list[str]) -> ImagePrefix | None:
    """The prefix shared by `texts` (templated prompts about `image`) and each one's own tokens, or None when
    the prompts cannot share an encoding of the image."""
    encoded = processor(images=[image], text=[texts[0]], return_tensors="pt")
    if "qformer_input_ids" in encoded:  # the image's query tokens depend on the question
        return None
    tokenizer = getattr(processor, "tokenizer", processor)
    plain = tokenizer(texts)["input_ids"]  # the processor's own tokenisation, placeholders unexpanded
    common = _common_prefix_length(plain)
    common = min(common, min(len(ids) for ids in plain) - 1)  # every question keeps its last token at least
    expanded = encoded["input_ids"][0]
    tail = plain[0][common:]
    split = len(expanded) - len(tail)
    image_token = getattr(processor, "image_token_id", None)
    if split <= 0 or expanded[split:].tolist() != tail or any(image_token in ids[common:] for ids in plain):
        return None
    types = encoded.get("mm_token_type_ids")
    return ImagePrefix(
        prefix_ids=expanded[:split],
        suffix_ids=[torch.tensor(ids[common:], dtype=torch.long) for ids in plain],
        image_inputs={key: value for key, value in encoded.items() if key not in TOKEN_KEYS},
        prefix_token_types=None if types is None else types[0][:split],
    )


@torch.no_grad()
def prefix_answer_log_probs(model, prefixes: list[ImagePrefix], sequences: list[list[int]]) -> torch.Tensor:
    """(N, K) log P(answer sequence k | question n), N the questions of `prefixes` in order, from one forward:
    a packed row per image, `[prefix | question 1 | question 2 | ...]` (`hadpo.inference.packing`), logits at
    each question's last column only. An answer of several tokens (small vocabularies) is teacher-forced in a
    branch of its own per question, `[question, answer[:-1]]`."""
    device = next(model.parameters()).device
    multi = [k for k, sequence in enumerate(sequences) if len(sequence) > 1]
    rows, reads = [], []  # reads: (question, answer or None for all, row, column of the question's last token)
    questions = 0
    for m, prefix in enumerate(prefixes):
        ids, branch_ids = [prefix.prefix_ids], [torch.zeros(len(prefix.prefix_ids), dtype=torch.long)]
        for suffix in prefix.suffix_ids:
            n, questions = questions, questions + 1
            for answers, tokens in [(None, suffix)] + [
                (k, torch.cat([suffix, _tensor(sequences[k][:-1])])) for k in multi
            ]:
                reads.append((n, answers, m, sum(map(len, ids)) + len(suffix) - 1))
                ids.append(tokens)
                branch_ids.append(torch.full((len(tokens),), len(ids) - 1))
        rows.append((torch.cat(ids), torch.cat(branch_ids)))
    batch = _packed_batch(prefixes, rows)
    batch = {key: value.to(device) for key, value in batch.items()}
    first = min(column for *_, column in reads)
    keep = batch["input_ids"].shape[1] - first
    model_inputs = {key: value for key, value in batch.items() if key != "branch_ids"}
    logits = model(**model_inputs, **packed_inputs(model, batch), logits_to_keep=keep).logits
    log_probs = torch.zeros(questions, len(sequences), device=device)
    for n, answers, m, column in reads:
        if answers is None:  # the question's own branch: every answer's first token
            row = torch.log_softmax(logits[m, column - first].float(), dim=-1)
            log_probs[n] = row[[sequence[0] for sequence in sequences]]
        else:
            sequence = sequences[answers]
            steps = torch.log_softmax(logits[m, column - first : column - first + len(sequence)].float(), dim=-1)
            log_probs[n, answers] = steps.gather(-1, _tensor(sequence, device)[:, None]).sum()
    return log_probs


def _packed_batch(prefixes: list[ImagePrefix], rows: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    branch_ids = torch.full((len(rows), width), PADDING, dtype=torch.long)
    for index, (ids, branches) in enumerate(rows):
        input_ids[index, : len(ids)], branch_ids[index, : len(ids)] = ids, branches
    batch = {key: torch.cat([p.image_inputs[key] for p in prefixes]) for key in prefixes[0].image_inputs}
    batch.update(input_ids=input_ids, branch_ids=branch_ids)
    if prefixes[0].prefix_token_types is not None:
        types = torch.zeros_like(input_ids)
        for index, prefix in enumerate(prefixes):
            types[index, : len(prefix.prefix_token_types)] = prefix.prefix_token_types
        batch["mm_token_type_ids"] = types
    return batch


def _tensor(values, device=None) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long, device=device)


def _common_prefix_length(rows: list[list[int]]) -> int:
    length = 0
    for column in zip(*rows):
        if any(value != column[0] for value in column):
            break
        length += 1
    return length
