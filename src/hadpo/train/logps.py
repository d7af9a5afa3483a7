"""Response log-probs: the one place where a model's logits become per-sequence log-probabilities.

Every caller (the DPO policy and reference passes, the auxiliary SFT loss, the precomputed reference cache,
the tests) goes through `response_logps(model, batch) -> ResponseLogps`, which reads the batch's layout:

- **shared prefix** (the default for pairs, issue 13): one packed row per pair,
  `[prompt[:-1] | p, chosen | p, rejected]`, where `p` is the prompt's last token, written once per branch.
  `branch_ids` says what each column is (0 prompt, 1 chosen branch, 2 rejected branch, -1 padding); the block
  attention mask and position ids of `hadpo.inference.packing` let a branch see the prompt and its own earlier
  tokens only, numbered as if it followed the prompt alone. So each branch computes exactly what its own
  two-sequence row `[prompt, response]` would, while the vision tower and the image + prompt tokens run once per
  pair instead of twice (LLaVA-1.5: 576 image tokens before a ~100-token answer). `p` opens each branch (rather
  than being shared) because its logits predict the branch's first token: a shared `p` would give the rejected
  branch's first token to the chosen branch's last one. Gradients reach the prompt from both branches, as they
  do through two sequences.
- **sequences**: one row per (prompt, response), the prompt repeated (`PreferenceCollator(shared_prefix=False)`
  and every SFT batch). Models that cannot read packed rows use it (`packing_unsupported`: a flash-attention
  language model, an encoder-decoder one). With an encoder-decoder language model (InstructBLIP-FlanT5) the
  batch also holds `decoder_input_ids` / `decoder_attention_mask`, the labels then following the decoder.

Both give the same log-probs (fp32: within 1e-5) and gradients (tests/train/test_logps.py, every family).
A batch also holds `labels` (-100 except on response tokens), the processor's image tensors, and optional
non-model keys listed in `NON_MODEL_KEYS`: among them `token_weights` (N, T), aligned with `labels`, the per-token
weights of dense DPO (RLHF-V, arXiv 2312.00849): the preference log-prob of a response is then
sum_t w_t log p(y_t) (or that divided by sum_t w_t with `logps_reduction: mean`, as RLAIF-V's code averages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hadpo.inference.packing import packed_inputs

IGNORE_INDEX = -100
# Keys a collator may add that are not model inputs.
NON_MODEL_KEYS = ("labels", "ref_sums", "ref_counts", "branch_ids", "token_weights", "pair_severity", "corrupted")


@dataclass
class ResponseLogps:
    """Per-sequence sums of response-token log-probs and the number of response tokens, both (N,); with token
    weights also their weighted sums sum_t w_t log p(y_t) and sum_t w_t."""

    sums: torch.Tensor
    counts: torch.Tensor
    weighted_sums: torch.Tensor | None = None
    weighted_counts: torch.Tensor | None = None

    def preference_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sums, counts) that preference losses read: the weighted ones when the batch had token weights."""
        if self.weighted_sums is None:
            return self.sums, self.counts
        return self.weighted_sums, self.weighted_counts

    def reduce(self, reduction: str) -> torch.Tensor:
        """The preference log-probs: `sum` (the paper) or `mean` over response tokens (weighted where weighted)."""
        sums, counts = self.preference_parts()
        if reduction == "sum":
            return sums
        if reduction == "mean":
            return sums / counts.clamp(min=1)
        raise ValueError(f"unknown logps reduction '{reduction}'; expected sum or mean")

    def nll(self) -> torch.Tensor:
        """Per-sequence mean negative log-likelihood of the response tokens (unweighted): the SFT losses."""
        return -(self.sums / self.counts.clamp(min=1))


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
    """Sums of response-token log-probs per sequence, from one forward pass over `batch` (either layout).

    Only positions from the first response token of the batch on go through the LM head (`logits_to_keep`):
    the image and prompt tokens before it never need vocabulary logits. With a shared prefix the result has one
    entry per branch and pair, branch-major: (chosen of pairs 0..B-1, rejected of pairs 0..B-1)."""
    labels = batch["labels"]
    width = labels.shape[1]
    answered = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    first = max(int(answered[0]) if len(answered) else width - 1, 1)
    keep = width - first + 1  # logits at positions first-1 .. width-1 predict tokens first .. width-1
    inputs = model_inputs(batch)
    if "branch_ids" in batch:
        inputs.update(packed_inputs(model, batch))
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    # An encoder-decoder (InstructBLIP-FlanT5) ignores logits_to_keep: its labels line up with the decoder's
    # logits (see hadpo.train.collate.Encoder), of which the same last `keep` are read.
    logps, mask = token_logps(outputs.logits[:, -keep:], labels[:, width - keep :])
    columns = {"sums": logps, "counts": mask}
    if "token_weights" in batch:
        weights = batch["token_weights"][:, width - keep + 1 :].to(logps.dtype) * mask
        columns |= {"weighted_sums": logps * weights, "weighted_counts": weights}
    if "branch_ids" not in batch:
        return ResponseLogps(**{name: values.sum(-1) for name, values in columns.items()})
    branches = batch["branch_ids"][:, width - keep + 1 :]  # aligned with the shifted labels
    ids = range(1, int(batch["branch_ids"].max()) + 1)
    return ResponseLogps(
        **{name: torch.cat([(values * (branches == b)).sum(-1) for b in ids]) for name, values in columns.items()}
    )
