"""The scene world's configuration: what scenes look like and how the base model's training data is biased.

The bias knobs mirror how real VLM training data is made (see the foundation issue):
  caption noise   web captions name objects that usually appear with a present one but are absent
                  (here: right after a family's first present member, an absent member in its colour and
                  size, at a rate that differs by family);
  captions -> QA  instruction QA is written from the captions, not the image (as LLaVA's text-only GPT
                  wrote its instruction data from COCO captions), so a noisy caption yields a "yes";
  yes-bias        most questions written from captions ask about objects the caption names.
Every report prints these knobs. A config that cannot work fails at load with one clear line.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field, model_validator

from hadpo.config import Config
from hadpo.world.drawing import COLOURS, SHAPES


class Family(Config):
    """Objects that usually appear together (like fork and knife), and how often captions name an absent
    member right after a present one."""

    members: list[str] = Field(min_length=2)
    caption_noise: float = Field(ge=0.0, le=1.0)


class BiasConfig(Config):
    caption_noise_scale: float = Field(1.0, ge=0.0, description="multiplies every family's caption_noise")
    qa_from_captions: bool = Field(
        True, description="web-like (from_caption) stages' questions are written from noisy captions, not images"
    )
    yes_bias: float = Field(
        0.85,
        ge=0.0,
        le=1.0,
        description="share of questions written from captions that ask about named objects (a stage may set its own)",
    )


class SplitSizes(Config):
    pretrain: int = Field(12000, ge=1)
    pairs: int = Field(1000, ge=1)
    eval: int = Field(500, ge=1)


class WorldConfig(Config):
    seed: int = 0
    image_size: int = Field(48, gt=0)
    patch_size: int = Field(16, gt=0)  # one grid cell per vision patch: a patch sees exactly one object
    colours: list[str] = Field(default_factory=lambda: ["red", "green", "blue", "yellow", "purple", "orange"])
    sizes: list[str] = Field(default_factory=lambda: ["small", "large"])
    # Families of four: a scene of three objects usually holds three members of one family, so the fourth is
    # the absent object a co-occurrence-biased model names, and POPE's adversarial negatives are mostly such
    # absent family members (the share is printed in the demo report).
    families: list[Family] = Field(
        default_factory=lambda: [
            Family(members=["star", "moon", "sun", "cloud"], caption_noise=0.8),
            Family(members=["heart", "diamond", "club", "spade"], caption_noise=0.6),
            Family(members=["circle", "ring", "rectangle", "triangle"], caption_noise=0.4),
            Family(members=["cross", "arrow", "bolt", "flag"], caption_noise=0.2),
        ]
    )
    min_objects: int = Field(3, ge=1)
    max_objects: int = Field(3, ge=1)
    cooccurrence: float = Field(0.8, ge=0.0, le=1.0, description="P(next object is a present object's partner)")
    splits: SplitSizes = Field(default_factory=SplitSizes)
    bias: BiasConfig = Field(default_factory=BiasConfig)

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        if not self.families:
            raise ValueError("the world has no categories (families is empty)")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        names = self.categories
        unknown = [n for n in names if n not in SHAPES]
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r} (known drawings: {', '.join(sorted(SHAPES))})")
        if len(set(names)) != len(names):
            raise ValueError("a category belongs to more than one family")
        bad = [c for c in self.colours if c not in COLOURS]
        if bad:
            raise ValueError(f"unknown colour {bad[0]!r} (known: {', '.join(COLOURS)})")
        if self.max_objects > self.grid**2:
            raise ValueError(f"max_objects {self.max_objects} exceeds the {self.grid}x{self.grid} grid cells")
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects {self.min_objects} > max_objects {self.max_objects}")
        if not set(self.sizes) <= {"small", "large"} or not self.sizes:
            raise ValueError(f"sizes must be a non-empty subset of small, large; got {self.sizes}")
        return self

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def categories(self) -> list[str]:
        return [name for family in self.families for name in family.members]

    def family_of(self, name: str) -> Family:
        return next(f for f in self.families if name in f.members)

    def partners(self, name: str) -> list[str]:
        return [m for m in self.family_of(name).members if m != name]

    def absent_partners(self, present: set[str]) -> list[str]:
        """Categories not in `present` that share a family with one that is (in category order): the absent
        objects a co-occurrence-biased model says "yes" to, POPE's adversarial negatives."""
        families = {tuple(self.family_of(name).members) for name in present}
        return [n for n in self.categories if n not in present and tuple(self.family_of(n).members) in families]

    def knobs(self) -> dict:
        """The declared data imperfections, as printed in every report."""
        return {
            "caption_noise": {
                "+".join(f.members): round(f.caption_noise * self.bias.caption_noise_scale, 3) for f in self.families
            },
            "qa_from_captions": self.bias.qa_from_captions,
            "yes_bias": self.bias.yes_bias,
            "cooccurrence": self.cooccurrence,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]
