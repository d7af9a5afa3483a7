"""The configuration of an iterative chain (`hadpo rounds --config rounds.yaml [key=value ...]`) and its
resolution into the two recipes every round runs: a pair build (`PairsConfig`) and a training run
(`HADPOConfig`). Everything is checked before any work starts: an unknown key, `rounds: 0`, a recipe that is
missing or refused by its own loader, or a reference the trainer cannot give is one line naming the file and
the key (`hadpo.config.ConfigError`, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from hadpo.config import Config, ConfigError, config_error, load_config, merge, read_yaml, validate_config
from hadpo.inference import DESCRIBE_PROMPT, DecodingConfig
from hadpo.models.base import model_location_problem
from hadpo.pairs.config import JudgeConfig, PairsConfig


class RoundsOptions(Config):
    """How rounds follow one another (shared by `hadpo rounds` and `hadpo demo --rounds`)."""

    reference: Literal["previous", "base"] = Field(
        "previous", description="round r's reference model: round r-1's model (as RLAIF-V) or the base"
    )
    images_per_round: int | None = Field(None, ge=1, description="images described per round; none = all")
    fresh_images: bool = Field(False, description="each round takes images no earlier round described")
    seed: int = Field(0, description="seeds the order in which images are drawn for the rounds")
    baseline: bool = Field(
        False, description="also train one round from the base on round 1's pairs for the rounds' total steps"
    )

    @model_validator(mode="after")
    def _fresh_needs_a_count(self):
        if self.fresh_images and self.images_per_round is None:
            raise ValueError("fresh_images needs images_per_round (how many new images each round describes)")
        return self


class RoundsEval(DecodingConfig):
    """What every round's model is evaluated on (all optional; the scene world brings its own suite). Yes/no
    question files are answered in `answer_mode`; descriptions are decoded with the DecodingConfig keys."""

    pope: list[str] = Field(default_factory=list, description="POPE question files (one per split)")
    heldout: list[str] = Field(default_factory=list, description="other yes/no question files (accuracy each)")
    image_root: str | None = Field(None, description="images of the question files; default beside each file")
    images: str | None = Field(None, description="images.jsonl of ImageRecords to describe: CHAIR, SHR, coverage")
    chair_annotations: str | None = Field(None, description="CHAIR's truth: COCO instances or images.jsonl")
    chair_protocol: Literal["hadpo", "reference"] = "hadpo"
    shr: bool = Field(True, description="judge the descriptions sentence by sentence (SHR)")
    judge: JudgeConfig | None = Field(None, description="SHR's judge; default the pairs recipe's judge section")
    prompt: str = DESCRIBE_PROMPT
    answer_mode: Literal["logits", "generate"] = "logits"
    mode: Literal["generate"] = "generate"
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(96, ge=1)


class RoundsConfig(RoundsOptions):
    """rounds.yaml: the two recipes (YAML files, paths relative to the working folder) with overrides on top,
    how many rounds, how they follow one another, and the evaluation."""

    rounds: int = Field(ge=1, description="rounds of describe -> judge -> pairs -> train -> evaluate")
    out_dir: str = "runs/rounds"
    model: str = Field("", description="the base model (round 0); default the training recipe's")
    pairs_recipe: str = Field(description="the pair build config (YAML), e.g. configs/pairs/world.yaml")
    train_recipe: str = Field(description="the training config (YAML), e.g. configs/world_hadpo.yaml")
    pairs: dict[str, Any] = Field(default_factory=dict, description="PairsConfig keys on top of pairs_recipe")
    train: dict[str, Any] = Field(default_factory=dict, description="HADPOConfig keys on top of train_recipe")
    eval: RoundsEval = Field(default_factory=RoundsEval)


def load_rounds_config(path: str | Path | None, overrides=()) -> RoundsConfig:
    """rounds.yaml, then `key=value` overrides (dotted keys reach into `pairs`, `train`, `eval`)."""
    return load_config(RoundsConfig, path, list(overrides), source=None if path else "rounds config")


@dataclass
class Recipes:
    """The chain's resolved recipes: the pair build (round 1's, before the keys each round sets) and the
    training recipe's values (a dict: the trainer's config is only built per round, with its paths)."""

    source: str  # the rounds config's name, for messages
    model: str  # the base model
    pairs: PairsConfig
    train: dict[str, Any]
    lora: bool  # LoRA / QLoRA: each round's adapter is merged, the next round trains a fresh one on it

    def train_config(self, changes: dict, source: str = ""):
        """The HADPOConfig of one training run: the recipe with `changes` on top."""
        from hadpo.train.config import HADPOConfig  # (imported here: it imports transformers)

        return validate_config(HADPOConfig, merge(self.train, changes), source or f"{self.source} train")


def resolve_recipes(config: RoundsConfig, source: str) -> Recipes:
    """Both recipes loaded and checked with placeholder paths, so that a bad key fails now, not in round 2."""
    for key in ("pairs_recipe", "train_recipe"):
        path = Path(getattr(config, key))
        if not path.is_file():
            raise config_error(source, (key,), f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    pairs = load_config(
        PairsConfig,
        config.pairs_recipe,
        config.pairs,
        source=f"{source} pairs ({config.pairs_recipe})",
        section="pairs",
    )
    train = merge(read_yaml(config.train_recipe), config.train)
    model = config.model or str(train.get("model_name_or_path") or "")
    if not model:
        raise config_error(source, ("model",), "give the base model (or model_name_or_path in the training recipe)")
    if problem := model_location_problem(model):
        raise config_error(source, ("model",), problem)
    recipes = Recipes(source, model, pairs, train, lora=False)
    placeholder = Path(config.out_dir) / "rounds" / "1"
    trained = recipes.train_config(
        {"model_name_or_path": model, "pairs": str(placeholder / "pairs" / "pairs.jsonl")},
        f"{source} train ({config.train_recipe})",
    )
    recipes.lora = trained.finetuning != "full"
    if config.reference == "base" and trained.reference == "adapters":
        raise config_error(
            source,
            ("reference",),
            "base needs the trainer's reference copy or precomputed (train.reference=precomputed): with "
            "adapters the reference is the model the adapters sit on, the previous round's",
        )
    return recipes


def check_same_chain(saved: dict, current: dict, out_dir: str, path: tuple[str, ...] = ()) -> None:
    """A folder holds one chain: a rerun with another config (other than more rounds) would mix two."""
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, _UNSET), current.get(key, _UNSET)
        if isinstance(old, dict) and isinstance(new, dict):
            check_same_chain(old, new, out_dir, (*path, key))
        elif old != new:
            where = ".".join((*path, key))
            raise ConfigError(
                f"out_dir {out_dir} holds a chain made with another config ({where}: {_shown(old)} -> "
                f"{_shown(new)}); rerun it with that config, or give another out_dir"
            )


_UNSET = object()


def _shown(value) -> str:
    return "unset" if value is _UNSET else repr(value)
