"""Typed training config: `HADPOConfig`, a `transformers.TrainingArguments` subclass (the Trainer takes nothing
else).

Every HA-DPO option is a dataclass field with its help text in the field metadata (written once, shown by
`hadpo train --help-config` and in docs/training.md) and is validated in `__post_init__`, before any model is
loaded. It is loaded like every other config, by `hadpo.config.load_config(HADPOConfig, path, overrides)`:
YAML recipes hold only deltas from the defaults, an unknown key is an error naming the key, and `key=value`
overrides on the command line are parsed as YAML scalars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from hadpo.train.corruption import KINDS as CORRUPTION_KINDS
from hadpo.train.data import parse_mix
from hadpo.train.loss import LOSS_TYPES

REFERENCE_MODES = ("adapters", "copy", "precomputed")
TOKEN_WEIGHTINGS = ("none", "diff", "labels")
PAIR_WEIGHTINGS = ("none", "severity")
FINETUNING = ("lora", "qlora", "full")
DTYPES = ("float32", "bfloat16", "float16")


def _opt(default, help: str, **kwargs):
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class HADPOConfig(TrainingArguments):
    # --- model ---
    model_name_or_path: str = _opt("", "Base VLM: a hub id or a local folder (AutoModelForImageTextToText).")
    family: str = _opt(
        "auto",
        "Model family adapter: auto (from config.model_type), llava15, llava_next, qwen2_vl, instructblip, minigpt4.",
    )
    model_dtype: str = _opt("float32", "dtype the weights are loaded in: float32, bfloat16 or float16.")
    finetuning: str = _opt("lora", "lora (PEFT adapters), qlora (4-bit base, needs bitsandbytes + GPU) or full.")
    lora_r: int = _opt(16, "LoRA rank (the paper's LLaVA-1.5 recipe: 128).")
    lora_alpha: int = _opt(32, "LoRA alpha (the paper's LLaVA-1.5 recipe: 256).")
    lora_dropout: float = _opt(0.0, "LoRA dropout (the paper disables dropout).")
    lora_target: str | None = _opt(
        None,
        "Regex (full match on module names) of LoRA targets; default: the family's (docs/models.md): every "
        "linear layer of the LM (LLaVA, Qwen), its q, k, v (InstructBLIP, MiniGPT-4).",
    )
    freeze_vision_tower: bool = _opt(True, "Keep the vision encoder frozen (the paper does).")
    freeze_projector: bool = _opt(True, "Keep the vision-to-language projector frozen (the paper does).")
    disable_dropout: bool = _opt(True, "Set every dropout probability of the model to 0 (the paper does).")
    merge_adapter: bool = _opt(False, "Also save the base model with the LoRA adapter merged in (output_dir/merged).")
    # --- data ---
    pairs: str = _opt("", "Preference pairs JSONL written by `hadpo pairs` (PreferencePair rows).")
    eval_pairs: str | None = _opt(None, "Held-out pairs evaluated every eval_steps (set eval_strategy: steps).")
    data_mix: str = _opt("1:1", "Per-epoch repeats of desc:QA groups, e.g. 2:1 (LLaVA-1.5 release) or 1:2.")
    shuffle_pairs: bool = _opt(True, "Shuffle the pair order each epoch (seeded by `seed` and the epoch).")
    max_length: int | None = _opt(None, "Longest prompt (image tokens included) + response; none = no limit.")
    too_long: str = _opt("drop", "Pairs over max_length: drop (counted and logged) or error. Never truncated.")
    shared_prefix: bool = _opt(
        True,
        "Encode image + prompt once per pair and score chosen and rejected from it (one packed row with a "
        "block attention mask; same log-probs as two sequences). False: two sequences per pair. Models whose "
        "attention takes no block mask (e.g. flash_attention_2) use two sequences either way (logged).",
    )
    # --- objective ---
    beta: float = _opt(0.1, "DPO temperature beta (paper: 0.1).")
    loss_type: str | list[str] = _opt(
        "sigmoid",
        f"Preference loss, or a list of them summed with loss_weights (TRL's names; MPO: [sigmoid, bco_pair, "
        f"sft]): {', '.join(LOSS_TYPES)}.",
    )
    loss_weights: list[float] | None = _opt(
        None, "Weight of each loss_type in the list (MPO: [0.8, 0.2, 1.0]); default 1 each."
    )
    label_smoothing: float = _opt(
        0.0, "Label smoothing eps for sigmoid (cDPO) and robust losses; the target's epsilon for exo_pair."
    )
    token_weighting: str = _opt(
        "none",
        "Per-token weights of the response log-probs (dense DPO, RLHF-V arXiv 2312.00849): none; diff (the "
        "tokens where chosen and rejected differ, token-level matching as RLHF-V's code); labels (the tokens of "
        "the spans the judge marked: pairs' chosen_spans / rejected_spans). Policy and reference use the same "
        "weights.",
    )
    token_weight: float = _opt(3.0, "Weight of the marked tokens (the rest weigh 1); RLAIF-V's default 3.0.")
    pair_weighting: str = _opt(
        "none",
        "Per-pair weights (HSA-DPO): none; severity (the rejected log-ratio weighted by the rejected text's "
        "hallucination severity: the pair's `severity`, else the share of its sentences labelled hallucination; "
        "1 for QA pairs).",
    )
    image_conditional_weight: float = _opt(
        0.0,
        "mDPO's conditional term (arXiv 2406.11839): the chosen answer with the real image preferred over the same "
        "answer with a corrupted one (image_corruption). 0 = off; mDPO: 1.",
    )
    anchor_weight: float = _opt(
        0.0, "mDPO's anchor: -log sigmoid(beta (pi_w - ref_w) - anchor_delta) keeps the chosen reward up; mDPO: 1."
    )
    anchor_delta: float = _opt(0.0, "The anchor's delta (mDPO: 0).")
    image_corruption: str = _opt(
        "crop",
        "The corrupted image of the conditional term, made once per pair from a seed: crop (mDPO: a random crop "
        "keeping image_corruption_scale of the area, resized back), black, or noise (uniform random pixels). A "
        "pair's rejected_images are used instead where it has them.",
    )
    image_corruption_scale: list[float] = field(
        default_factory=lambda: [0.01, 0.2],
        metadata={"help": "The crop's share of the image area, low and high (mDPO: 0.01, 0.2)."},
    )
    warmup_sft_steps: int = _opt(
        0,
        "OPA-DPO's warm start (github.com/zhyang2226/OPA-DPO): this many SFT steps on the pairs' chosen answers "
        "before the preference phase, whose reference is then the warmed model. 0 = off.",
    )
    warmup_sft_learning_rate: float | None = _opt(None, "Learning rate of the warm start; default learning_rate.")
    logps_reduction: str = _opt("sum", "Response log-probs summed over tokens (paper) or averaged: sum or mean.")
    reference: str = _opt(
        "adapters",
        "Reference model: adapters (policy with LoRA disabled), copy (frozen copy), precomputed (log-probs "
        "computed once before training and cached on disk).",
    )
    ref_model_name_or_path: str | None = _opt(None, "Reference weights for copy/precomputed; default the base model.")
    reference_cache_dir: str | None = _opt(None, "Where precomputed reference log-probs live; default output_dir.")
    gamma: float = _opt(0.0, "Weight of the auxiliary SFT loss: total = L_dpo + gamma * L_sft (MiniGPT-4: 0.5).")
    sft_data: str | None = _opt(
        None, "Auxiliary SFT JSONL: {images, prompt, response} rows or ImageRecords with captions."
    )
    sft_ratio: float = _opt(1.0, "Auxiliary batches per DPO batch (1 = one each; 0.5 = every other).")
    sft_batch_size: int | None = _opt(None, "Auxiliary batch size per device; default per_device_train_batch_size.")
    sft_caption_prompt: str = _opt("Describe this image briefly.", "Prompt for ImageRecord captions used as SFT data.")
    chosen_sft_weight: float = _opt(0.0, "Weight of an extra language-modelling loss on the chosen responses.")
    # --- TrainingArguments defaults that differ for HA-DPO ---
    remove_unused_columns: bool = _opt(False, "Kept False: the collator needs every column.")
    logging_steps: float = _opt(1, "Log every N optimizer steps.")

    def __post_init__(self):
        super().__post_init__()
        choices = {
            "reference": REFERENCE_MODES,
            "token_weighting": TOKEN_WEIGHTINGS,
            "pair_weighting": PAIR_WEIGHTINGS,
            "image_corruption": CORRUPTION_KINDS,
            "finetuning": FINETUNING,
            "model_dtype": DTYPES,
            "logps_reduction": ("sum", "mean"),
            "too_long": ("drop", "error"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"config key '{name}': '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        self._check_loss_types()
        for name in ("model_name_or_path", "pairs"):
            if not getattr(self, name):
                raise ValueError(f"config key '{name}' is required")
        self._check_numbers()
        if self.reference == "adapters" and self.finetuning == "full":
            raise ValueError(
                "config key 'reference': adapters needs LoRA; use copy or precomputed with finetuning=full"
            )
        if self.gamma > 0 and not self.sft_data:
            raise ValueError("config key 'sft_data' is required when gamma > 0")
        if self.max_length is not None and self.max_length <= 0:
            raise ValueError(f"config key 'max_length' must be positive, got {self.max_length}")
        parse_mix(self.data_mix)
        if self.dataloader_persistent_workers:
            # Persistent workers keep the first epoch's copy of the dataset: rewrites would never change.
            raise ValueError("config key 'dataloader_persistent_workers' must stay false (per-epoch rewrites)")

    def _check_loss_types(self) -> None:
        types = self.loss_types
        if not types:
            raise ValueError("config key 'loss_type': the list is empty")
        for name in types:
            if name not in LOSS_TYPES:
                raise ValueError(f"config key 'loss_type': '{name}' is not one of {', '.join(LOSS_TYPES)}")
        if len(set(types)) != len(types):
            raise ValueError(f"config key 'loss_type': {types} names a loss twice")
        if self.loss_weights is not None:
            if isinstance(self.loss_weights, int | float) or len(self.loss_weights) != len(types):
                raise ValueError(
                    f"config key 'loss_weights': {self.loss_weights} must be a list of {len(types)} numbers, one "
                    f"per loss_type {types}"
                )
            if not all(isinstance(w, int | float) and math.isfinite(w) and w >= 0 for w in self.loss_weights):
                raise ValueError(f"config key 'loss_weights': {self.loss_weights} must be finite numbers >= 0")
        scale = self.image_corruption_scale
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(
                f"config key 'image_corruption_scale': {list(scale)} must be [low, high] with 0 < low <= high <= 1"
            )
        if self.warmup_sft_learning_rate is not None and not self.warmup_sft_learning_rate > 0:
            raise ValueError(f"config key 'warmup_sft_learning_rate' must be > 0, got {self.warmup_sft_learning_rate}")
        if self.warmup_sft_steps and self.ref_model_name_or_path:
            raise ValueError(
                "config key 'ref_model_name_or_path': with warmup_sft_steps the reference is the warmed model; unset it"
            )
        if self.warmup_sft_steps and self.finetuning == "qlora":
            raise ValueError("config key 'warmup_sft_steps': the warm start merges its adapter; use lora or full")

    @property
    def loss_types(self) -> list[str]:
        """`loss_type` as a list (one name is a list of one)."""
        return [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)

    @property
    def uses_corrupted_images(self) -> bool:
        return self.image_conditional_weight > 0

    @property
    def checkpointing_on(self) -> bool:
        """Gradient checkpointing asked for, under either of transformers' names for it (activation_checkpointing
        is the newer one)."""
        return bool(self.gradient_checkpointing or getattr(self, "activation_checkpointing", False))

    def _check_numbers(self) -> None:
        """Every number finite (NaN passes every `<=` test: `beta: .nan` would train on NaN and exit 0) and each
        HA-DPO number, and the optimiser's, in its range."""
        for item in fields(self):
            value = getattr(self, item.name, None)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"config key '{item.name}' must be a finite number, got {value}")
        ranges = {
            "beta": "> 0",
            "learning_rate": "> 0",
            "label_smoothing": "[0, 0.5)",
            "lora_dropout": "[0, 1)",
            "lora_r": ">= 1",
            "lora_alpha": "> 0",
            "gamma": ">= 0",
            "sft_ratio": ">= 0",
            "chosen_sft_weight": ">= 0",
            "token_weight": "> 0",
            "image_conditional_weight": ">= 0",
            "anchor_weight": ">= 0",
            "warmup_sft_steps": ">= 0",
            "weight_decay": ">= 0",
            "max_grad_norm": ">= 0",
            "adam_beta1": "[0, 1)",
            "adam_beta2": "[0, 1)",
            "adam_epsilon": "> 0",
            "warmup_steps": ">= 0",
            "num_train_epochs": "> 0",
        }
        for name, allowed in ranges.items():
            value = getattr(self, name)
            if not _within(value, allowed):
                raise ValueError(
                    f"config key '{name}' must be {'in ' if allowed[0] == '[' else ''}{allowed}, got {value}"
                )

    @classmethod
    def help_lines(cls) -> list[str]:
        """'name (default): help' for every HA-DPO option (TrainingArguments' own are documented upstream)."""
        own = {f.name for f in fields(TrainingArguments)}
        return [
            f"{f.name} ({f.default!r}): {f.metadata.get('help', '')}"
            for f in fields(cls)
            if f.name not in own or f.name in ("remove_unused_columns", "logging_steps")
        ]


def _within(value: float, allowed: str) -> bool:
    """`value` against "> a", ">= a" or "[a, b)"."""
    if allowed.startswith("["):
        low, high = (float(x) for x in allowed[1:-1].split(","))
        return low <= value < high
    operator, bound = allowed.split()
    return value > float(bound) if operator == ">" else value >= float(bound)
