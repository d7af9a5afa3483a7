"""The world's conversations as tensors, for the base model's pretraining: token ids, labels and loss weights of a
conversation in the processor's chat format, padded batches, and the weighted loss of the answer tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from hadpo.world.tiny import IMAGE_TOKEN

IGNORE = -100  # the label of tokens the loss skips (the prompt, padding)


def encode_conversation(
    turns: list[tuple[str, str]], tokenizer, image_tokens: int, answer_weight: float = 1.0
) -> tuple[list[int], list[int], list[float]]:
    """Token ids, labels and loss weights of a multi-turn conversation in the processor's chat format (as the
    tokenizer encodes it: <s> first); only the assistant's answers (with their end-of-turn token) are trained
    on. The first user turn carries the image tokens."""
    input_ids: list[int] = [tokenizer.bos_token_id]
    labels: list[int] = [IGNORE]
    weights: list[float] = [0.0]
    for turn, (question, answer) in enumerate(turns):
        user = ("USER: " + IMAGE_TOKEN * image_tokens + "\n" if turn == 0 else "USER: ") + question + " ASSISTANT:"
        user_ids = tokenizer(user, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(" " + answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        input_ids += user_ids + reply_ids
        labels += [IGNORE] * len(user_ids) + reply_ids
        weights += [0.0] * len(user_ids) + [answer_weight] * len(reply_ids)
    return input_ids, labels, weights


def collate(
    encoded: list[tuple[list[int], list[int], list[float]]], pad_id: int, left: bool = False
) -> dict[str, torch.Tensor]:
    """Pad to one batch (right-padded for training; `left` for asking the next token)."""
    length = max(len(ids) for ids, _, _ in encoded)
    batch = {
        "input_ids": torch.full((len(encoded), length), pad_id),
        "labels": torch.full((len(encoded), length), IGNORE),
        "weights": torch.zeros((len(encoded), length)),
        "attention_mask": torch.zeros((len(encoded), length), dtype=torch.long),
    }
    for row, (ids, target, weight) in enumerate(encoded):
        span = slice(length - len(ids), length) if left else slice(0, len(ids))
        batch["input_ids"][row, span] = torch.tensor(ids)
        batch["labels"][row, span] = torch.tensor(target)
        batch["weights"][row, span] = torch.tensor(weight)
        batch["attention_mask"][row, span] = 1
    return batch


def weighted_loss(model, batch: dict, pixel_values) -> torch.Tensor:
    """Cross-entropy of the answer tokens, each weighted (question answers may weigh more than captions)."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixel_values
    ).logits[:, :-1]
    labels, weights = batch["labels"][:, 1:], batch["weights"][:, 1:]
    losses = nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(weights)
    return (losses * weights).sum() / weights.sum().clamp(min=1e-6)
