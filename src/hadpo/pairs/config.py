"""The typed, strict configuration of a pair build (`hadpo pairs build CONFIG.yaml [key=value ...]`): one
section per stage, defaults for everything, YAML holding only the deltas. Loaded like every config,
`hadpo.config.load_config(PairsConfig, path, overrides, section="pairs")`: unknown keys and unknown kinds are
errors naming the key and its section; the resolved config is saved beside the outputs (`config.yaml`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hadpo.config import Config
from hadpo.judge.llm_client import LLMConfig
from hadpo.pairs.describe import DescribeConfig
from hadpo.pairs.qa import QA_KINDS, AnswerSampling


class SourceConfig(Config):
    kind: Literal["folder", "visual_genome", "coco"] = "folder"
    images: str = ""  # folder: the images.jsonl of ImageRecords; visual_genome / coco: the image folder
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


class JudgeConfig(Config):
    kind: Literal["annotations", "llm"] = "annotations"  # annotations (offline) | llm
    synonyms: dict[str, list[str]] = {}  # annotations: canonical name -> synonyms
    extra_names: list[str] = []  # annotations: object words to detect beyond annotations
    exhaustive_names: list[str] = []  # annotations: classes annotated exhaustively
    fill_absent: bool = True  # annotations: correct "an absent X" into an annotated object the text omits
    # llm: bundled template name or a path to a template file; v2 adds: a correction never states a fact twice
    template: str = "judge_v2"
    llm: LLMConfig = Field(default_factory=LLMConfig)
    retry_failed: bool = False  # redo judgements recorded as failed


class RewriteConfig(Config):
    k: int = Field(3, ge=0)  # rewrites per pair (the paper: 3)
    kind: Literal["offline", "llm"] = (
        "offline"  # offline (paraphrase) | llm (same endpoint as the judge unless llm is given)
    )
    template: str = "rewrite_v1"
    llm: LLMConfig | None = None


class ShortAnswers(Config):
    """One-word answers for yes/no questions (LLaVA-1.5's "Answer with a single word" data): a model trained on
    them answers "Yes." / "No.", and its pairs should compare the same words."""

    yes: str = Field("Yes.", min_length=1)
    no: str = Field("No.", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data):
        # YAML 1.1 (PyYAML) reads the unquoted keys `yes` and `no` as true and false.
        if isinstance(data, dict):
            return {{True: "yes", False: "no"}.get(k, k) if isinstance(k, bool) else k: v for k, v in data.items()}
        return data


class QAConfig(Config):
    enabled: bool = True
    max_per_image: int = 6
    # Which facts become questions: existence (hallucinated objects, balanced by present ones) and, from the
    # offline judge, false attribute / count / position claims. Leave a kind out to keep it held out.
    kinds: list[str] = list(QA_KINDS)
    # POPE-style questions that need no description: per completely annotated image, this many absent objects
    # that co-occur most with its present ones (answer "no") and as many present ones ("yes"). 0 = off.
    co_occurrence_per_image: int = 0
    # Chosen/rejected texts of yes/no questions: these short answers instead of the sentences ("Yes, there is a
    # dog in the image."); null keeps the sentences.
    short_answers: ShortAnswers | None = None
    sample_answers: bool = False  # ask the target model (describe.model) the yes/no questions
    sampling: AnswerSampling = Field(default_factory=AnswerSampling)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(QA_KINDS))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r} (known: {', '.join(QA_KINDS)})")
        return kinds


class PairsConfig(Config):
    out_dir: str = "runs/pairs"
    source: SourceConfig = Field(default_factory=SourceConfig)
    describe: DescribeConfig = Field(default_factory=DescribeConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    ground_truth: str | None = None  # "module:function(image, sentence) -> label": agreement reported in stats
