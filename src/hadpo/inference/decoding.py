"""`DecodingConfig`, the one declaration of decoding settings: how a model answers (generate or yes/no logits,
batch size, beam search, sampling, device, dtype). Config sections that decode (the pairs stage's `describe` and
`qa.sampling`, the demo's `eval`) extend it, and `hadpo eval` has one option per key (`hadpo.cli.options`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hadpo.config import Config

GENERATE_ONLY = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p")  # unused in logits mode


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
