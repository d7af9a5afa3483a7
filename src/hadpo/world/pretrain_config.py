"""The base model's pretraining recipe (`pretrain:` in the demo YAML): the tiny LLaVA's shape, the vision stage's
and the language stages' optimisation, and the instruction stages in order (`InstructionStage`; the default
curriculum is `DEFAULT_STAGES`, the measurements behind it are in docs/world.md). Its digest, with the world's,
names the cached model folder (runs/base/<digest>/).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field, model_validator

from hadpo.config import Config
from hadpo.world.config import WorldConfig
from hadpo.world.tiny import TinyLlavaSpec, check_head_widths

RECIPE_VERSION = 2  # part of the cache key: a code change that changes what is trained bumps it


class InstructionStage(Config):
    """One phase of instruction tuning: what its conversations look like and how long it lasts."""

    name: str
    steps: int = Field(ge=0, description="optimizer steps (the minimum, with until_existence)")
    describe_probability: float = Field(0.5, ge=0.0, le=1.0, description="share of conversations that are captions")
    brief_share: float = Field(0.0, ge=0.0, le=1.0, description="share of those that are brief captions")
    qa_turns: int = Field(4, ge=1, description="yes/no questions in a question conversation")
    from_caption: bool = Field(False, description="questions written from a noisy caption (web-like), not the image")
    yes_bias: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of existence questions about named objects (default 0.5, or the "
        "world's bias.yes_bias for questions written from captions)",
    )
    partner_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of 'no' questions about an absent family member (hard negatives)"
    )
    existence_share: float = Field(1.0, ge=0.0, le=1.0, description="else colour / count / position questions")
    answer_weight: float = Field(1.0, gt=0.0, description="loss weight of question answers (captions weigh 1)")
    until_existence: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="after `steps`, go on (checked every 100 steps, up to max_steps) until "
        "held-out existence questions are answered this well",
    )
    until_kind: Literal["mixed", "family", "min"] = Field(
        "mixed",
        description="which held-out accuracy until_existence reads: alternately present and any absent "
        "object, absent family members, or the lowest of present / random / family",
    )
    max_steps: int | None = Field(None, ge=0)


# The curriculum: brief captions (objects and words aligned), grounded questions until existence is answered
# from the image, hard negatives until absent family members are told apart from present ones too, then the
# web-like stage whose questions are written from noisy captions: it teaches the model to say "yes" to the
# absent family member it can tell apart, a model that sees yet says yes (the hallucination HA-DPO targets).
DEFAULT_STAGES = [
    InstructionStage(name="captions", steps=1000, brief_share=1.0, qa_turns=1, yes_bias=0.85),
    InstructionStage(
        name="grounded", steps=600, describe_probability=0.0, existence_share=0.7, until_existence=0.9, max_steps=2000
    ),
    InstructionStage(
        name="hard",
        steps=600,
        describe_probability=0.0,
        existence_share=0.7,
        partner_share=0.5,
        until_existence=0.9,
        until_kind="min",
        max_steps=2500,
    ),
    InstructionStage(
        name="web", steps=1400, describe_probability=0.5, from_caption=True, existence_share=0.85, answer_weight=2.0
    ),
]


class PretrainConfig(Config):
    seed: int = 0
    vocab_size: int = 512
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 3
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 336
    vision_steps: int = Field(400, ge=0)
    vision_batch: int = Field(128, ge=1)
    vision_lr: float = Field(2e-3, gt=0)
    lm_lr: float = Field(1e-3, gt=0)
    lm_betas: tuple[float, float] = (0.9, 0.98)
    lm_weight_decay: float = Field(0.01, ge=0.0)
    lm_batch: int = Field(32, ge=1)
    warmup_steps: int = Field(50, ge=0)
    stages: list[InstructionStage] = Field(default_factory=lambda: [s.model_copy() for s in DEFAULT_STAGES])
    threads: int = Field(0, ge=0, description="torch threads (0 = torch's default)")
    device: str = Field("cpu", description="'cpu', 'cuda' or 'auto'; not part of the cache key")

    @model_validator(mode="after")
    def _head_widths(self) -> PretrainConfig:
        check_head_widths(self)  # here too: the config is read before the world is drawn
        return self

    def spec(self, world: WorldConfig) -> TinyLlavaSpec:
        shape = self.model_dump(include=set(TinyLlavaSpec.model_fields))  # the widths and depths set here
        return TinyLlavaSpec(image_size=world.image_size, patch_size=world.patch_size, **shape)

    def digest(self, world: WorldConfig) -> str:
        settings = self.model_dump(exclude={"device", "threads"})
        payload = json.dumps({"world": world.digest(), "pretrain": settings, "recipe": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]
