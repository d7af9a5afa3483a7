"""Several continuations of one prefix in one row (issue 13): the image and prompt are read once, and each
continuation (a preference pair's chosen and rejected response in training, an image's questions in yes/no
evaluation) computes exactly what it would as a sequence of its own.

A packed row is described by `branch_ids` (N, T): 0 on prefix columns, k >= 1 on the columns of continuation k,
-1 on padding. `block_attention_mask` lets a column see the prefix and the earlier columns of its own branch only;
`branch_positions` numbers each branch as if it followed the prefix alone (restarting where the prefix ends),
with the model's own `get_rope_index` for multimodal rotary positions (Qwen2-VL's M-RoPE). Together they are the
`attention_mask` and `position_ids` a Hugging Face model takes in place of its 2-D mask (`packed_inputs`).

A continuation's first token is predicted by the logits of the position before it, so a caller that needs the
log-prob of a branch's first token starts the branch with the prefix's last token (training does) or reads the
logits at the branch's last column (evaluation does).
"""

from __future__ import annotations

import inspect

import torch

PREFIX, PADDING = 0, -1  # branch ids of prefix and padding columns; continuations are 1, 2, ...
# Attention implementations that take an explicit 4-D mask: "sdpa" a boolean one, "eager" an additive one.
BLOCK_MASK_ATTENTION = ("sdpa", "eager")


def packed_inputs(model: torch.nn.Module, batch: dict) -> dict:
    """`attention_mask` (N, 1, T, T) and `position_ids` for a batch holding `branch_ids` and `input_ids` (plus,
    for M-RoPE, `mm_token_type_ids` and `image_grid_thw`)."""
    inner = _unwrapped(model, peft=False)
    mask = block_attention_mask(
        batch["branch_ids"], attention_implementation(model), inner.get_input_embeddings().weight.dtype
    )
    return {"attention_mask": mask, "position_ids": branch_positions(model, batch)}


def block_attention_mask(
    branch_ids: torch.Tensor, implementation: str = "sdpa", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N, 1, T, T) mask: column k is visible from row q when k <= q, k is not padding, and k is a prefix
    column or in q's branch. A padding row sees itself only (a row that sees nothing gives NaN in SDPA, which
    would then reach real rows through the values). Boolean for SDPA; additive (0 / dtype min) for eager."""
    if implementation not in BLOCK_MASK_ATTENTION:
        raise ValueError(f"attention '{implementation}' takes no block mask; use the unpacked layout")
    width = branch_ids.shape[1]
    row, col = branch_ids[:, :, None], branch_ids[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=branch_ids.device).tril()
    visible = causal & (row != PADDING) & (col != PADDING) & ((col == PREFIX) | (col == row))
    visible |= torch.eye(width, dtype=torch.bool, device=branch_ids.device) & (row == PADDING)
    visible = visible[:, None]
    if implementation == "sdpa":
        return visible
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, torch.finfo(dtype).min)


def branch_positions(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Position ids of a packed batch: branch b takes the positions of the tokens `prefix + branch b` in a row of
    their own. M-RoPE models ((3, N, T) positions) get them from `get_rope_index`, asked once per branch with an
    attention mask that selects that branch's sequence."""
    branch_ids = batch["branch_ids"]
    rope_index = _rope_index(model) if "image_grid_thw" in batch else None
    positions = None
    for branch in range(1, int(branch_ids.max()) + 1):
        selected = (branch_ids == PREFIX) | (branch_ids == branch)
        if rope_index is None:
            ids = selected.long().cumsum(-1) - 1
        else:
            ids, _ = rope_index(
                batch["input_ids"],
                mm_token_type_ids=batch["mm_token_type_ids"],
                image_grid_thw=batch["image_grid_thw"],
                attention_mask=selected.long(),
            )
        positions = ids if positions is None else torch.where(branch_ids == branch, ids, positions)
    return torch.where(branch_ids == PADDING, 0, positions)


def attention_implementation(model: torch.nn.Module) -> str:
    """The language model's attention implementation ("sdpa", "eager", "flash_attention_2", ...)."""
    config = _unwrapped(model, peft=False).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None) or "eager"


def packing_unsupported(model: torch.nn.Module) -> str | None:
    """Why `model` cannot read packed rows, or None when it can."""
    config = _unwrapped(model, peft=False).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "is_encoder_decoder", False):
        return "its language model is an encoder-decoder (the prompt is the encoder's, not a prefix)"
    implementation = attention_implementation(model)
    if implementation not in BLOCK_MASK_ATTENTION:
        return f"its attention implementation '{implementation}' takes no block mask (sdpa or eager do)"
    if "image_grid_thw" in inspect.signature(_unwrapped(model).forward).parameters and _rope_index(model) is None:
        return "its multimodal positions cannot be computed per branch (no get_rope_index)"
    return None


def _unwrapped(model: torch.nn.Module, peft: bool = True) -> torch.nn.Module:
    """The model inside a DDP wrapper and (with `peft`) a PEFT one."""
    inner = getattr(model, "module", model)
    return inner.get_base_model() if peft and hasattr(inner, "get_base_model") else inner


def _rope_index(model: torch.nn.Module):
    """The model's `get_rope_index` (Qwen2-VL / Qwen2.5-VL), through DDP and PEFT wrappers; None if it has none."""
    inner = _unwrapped(model)
    for candidate in (inner, getattr(inner, "model", None)):
        if candidate is not None and hasattr(candidate, "get_rope_index"):
            return candidate.get_rope_index
    return None
