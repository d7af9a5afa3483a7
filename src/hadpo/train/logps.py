"""Response log-probs: the one place where a model's logits become per-sequence log-probabilities.

Every caller (the DPO policy and reference passes, the auxiliary SFT loss, the precomputed reference cache,
the tests) goes through `response_logps`, so that a faster forward (one that encodes the image and prompt once
per pair instead of once per response, issue 5) can replace it behind the same interface: a function
`(model, batch) -> ResponseLogps`.

A batch is what the collators in `hadpo.train.data` build: `input_ids`, `attention_mask`, `labels` (-100 on
prompt, image and padding tokens), the processor's image tensors (with an encoder-decoder language model also
`decoder_input_ids` / `decoder_attention_mask`, the labels then following the decoder), and optional non-model
keys listed in `NON_MODEL_KEYS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
# Keys a collator may add that are not model inputs.
NON_MODEL_KEYS = ("labels", "ref_sums", "ref_counts")


@dataclass
class ResponseLogps:
    """Per-sequence sums of response-token log-probs and the number of response tokens, both (N,)."""

    sums: torch.Tensor
    counts: torch.Tensor

    def reduce(self, reduction: str) -> torch.Tensor:
        """`sum` (the paper) or `mean` over response tokens."""
        if reduction == "sum":
            return self.sums
        if reduction == "mean":
            return self.sums / self.counts.clamp(min=1)
        raise ValueError(f"unknown logps reduction '{reduction}'; expected sum or mean")


LogpsFn = Callable[[torch.nn.Module, dict], ResponseLogps]


def model_inputs(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key not in NON_MODEL_KEYS}


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label under the logits that predict it, and the response mask.

    logits (N, T, V) predict position t+1 from position t, so they are shifted against labels (N, T).
    Returns (logps (N, T-1), mask (N, T-1)); logps are 0 where the mask is False.
    """
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return picked * mask, mask


def response_logps(model: torch.nn.Module, batch: dict) -> ResponseLogps:
    """One forward pass over every sequence of `batch`; sums of response-token log-probs per sequence.

    Only positions from the first response token of the batch on go through the LM head (`logits_to_keep`):
    the image and prompt tokens before it (576 image tokens in LLaVA-1.5) never need vocabulary logits."""
    labels = batch["labels"]
    width = labels.shape[1]
    answered = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    first = max(int(answered[0]) if len(answered) else width - 1, 1)
    keep = width - first + 1  # logits at positions first-1 .. width-1 predict tokens first .. width-1
    outputs = model(**model_inputs(batch), use_cache=False, logits_to_keep=keep)
    # An encoder-decoder (InstructBLIP-FlanT5) ignores logits_to_keep: its labels line up with the decoder's
    # logits (see hadpo.train.data.Encoder), of which the same last `keep` are read.
    logps, mask = token_logps(outputs.logits[:, -keep:], labels[:, width - keep :])
    return ResponseLogps(sums=logps.sum(-1), counts=mask.sum(-1))
