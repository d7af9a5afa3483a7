"""The typed, strict configuration of a pair build (`hadpo pairs build CONFIG.yaml`): one dataclass per stage,
defaults for everything, YAML holding only the deltas. Unknown keys are errors naming the key and its section;
the resolved config is saved beside the outputs (`config.yaml`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hadpo.judge.llm_client import LLMConfig
from hadpo.pairs.describe import DescribeConfig
from hadpo.pairs.qa import QA_KINDS, AnswerSampling


@dataclass
class SourceConfig:
    kind: str = "folder"  # folder | world | visual_genome | coco
    images: str = ""  # folder: the images.jsonl of ImageRecords; visual_genome / coco: the image folder
    world_config: str | None = (
        None  # world: YAML with world: / pretrain: sections (None = the built-in world)
    )
    split: str = "pairs"  # world: which split's images
    runs_dir: str = "runs"  # world: where the world and its base model are cached (built when missing)
    objects: str | None = None  # visual_genome: objects.json
    attributes: str | None = None  # visual_genome: attributes.json (objects with attributes)
    relationships: str | None = None  # visual_genome: relationships.json (become region phrases)
    region_descriptions: str | None = None  # visual_genome: region_descriptions.json
    image_data: str | None = None  # visual_genome: image_data.json (image sizes)
    instances: str | None = None  # coco: instances_*.json
    captions: str | None = None  # coco: captions_*.json (reference captions)
    min_objects: int = 0  # HA-DPO keeps images with neither too few ...
    max_objects: int = 1000  # ... nor too many annotated objects
    limit: int | None = None  # first N images only


@dataclass
class JudgeConfig:
    kind: str = "annotations"  # annotations (offline) | llm
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # annotations: canonical name -> synonyms
    extra_names: list[str] = field(
        default_factory=list
    )  # annotations: object words to detect beyond annotations
    exhaustive_names: list[str] = field(default_factory=list)  # annotations: classes annotated exhaustively
    fill_absent: bool = True  # annotations: correct "an absent X" into an annotated object the text omits
    template: str = "judge_v1"  # llm: bundled template name or a path to a template file
    llm: LLMConfig = field(default_factory=LLMConfig)
    retry_failed: bool = False  # redo judgements recorded as failed


@dataclass
class RewriteConfig:
    k: int = 3  # rewrites per pair (the paper: 3)
    kind: str = "offline"  # offline (paraphrase) | llm (same endpoint as the judge unless llm is given)
    template: str = "rewrite_v1"
    llm: LLMConfig | None = None


@dataclass
class QAConfig:
    enabled: bool = True
    max_per_image: int = 6
    # Which facts become questions: existence (hallucinated objects, balanced by present ones) and, from the
    # offline judge, false attribute / count / position claims. Leave a kind out to keep it held out.
    kinds: list[str] = field(default_factory=lambda: list(QA_KINDS))
    # POPE-style questions that need no description: per completely annotated image, this many absent objects
    # that co-occur most with its present ones (answer "no") and as many present ones ("yes"). 0 = off.
    co_occurrence_per_image: int = 0
    sample_answers: bool = False  # ask the target model (describe.model) the yes/no questions
    sampling: AnswerSampling = field(default_factory=AnswerSampling)

    def __post_init__(self):
        unknown = sorted(set(self.kinds) - set(QA_KINDS))
        if unknown:
            raise ValueError(f"qa.kinds: unknown kind {unknown[0]!r} (known: {', '.join(QA_KINDS)})")


@dataclass
class PairsConfig:
    out_dir: str = "runs/pairs"
    source: SourceConfig = field(default_factory=SourceConfig)
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    qa: QAConfig = field(default_factory=QAConfig)
    ground_truth: str | None = (
        None  # "module:function(image, sentence) -> label": agreement reported in stats
    )


def _dataclass_type(annotation) -> type | None:
    if dataclasses.is_dataclass(annotation):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)
    return None


def from_dict(cls, data: dict | None, where: str = "pairs config"):
    """An instance of dataclass `cls` from `data`; unknown keys raise ValueError naming the key."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in data.items():
        nested = _dataclass_type(hints[key])
        values[key] = (
            from_dict(nested, value, f"{where}.{key}") if nested and isinstance(value, dict) else value
        )
    return cls(**values)


def load_config(path: str | Path, **overrides) -> PairsConfig:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data = data.get("pairs", data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(PairsConfig, data, str(path))


def save_config(config: PairsConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(config)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
