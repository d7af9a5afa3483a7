"""The one home of judge kinds: how a judge and a rewriter are configured, and the two functions that build them.

The pair build (`hadpo pairs`: its `judge:` and `rewrite:` sections) and SHR (`hadpo eval shr --judge-config`,
a pair build's config or a YAML of `JudgeConfig` keys, the `--judge-*` flags and `--judge-set key=value` on top)
both build their judge with `make_judge`, so a judge kind declared here works in both.

Adding a judge: a class with the `hadpo.judge.base.Judge` protocol, its `kind` in `JudgeConfig` and its branch of
`make_judge`, both in this file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from hadpo.config import Config
from hadpo.judge.base import Judge
from hadpo.judge.llm import LLMJudge, LLMRewriter
from hadpo.judge.llm_client import LLMClient, LLMConfig
from hadpo.judge.offline import AnnotationJudge
from hadpo.judge.paraphrase import ParaphraseRewriter
from hadpo.records import ImageRecord


class JudgeConfig(Config):
    kind: Literal["annotations", "llm"] = "annotations"  # annotations (offline) | llm
    synonyms: dict[str, list[str]] = {}  # annotations: canonical name -> synonyms
    extra_names: list[str] = []  # annotations: object words to detect beyond annotations
    exhaustive_names: list[str] = []  # annotations: classes annotated exhaustively
    fill_absent: bool = True  # annotations: correct "an absent X" into an annotated object the text omits
    # llm: bundled template name or a path to a template file; v2 adds: a correction never states a fact twice
    # (the pair build's default; SHR's judge keeps v1 unless its --judge-config says otherwise)
    template: str = "judge_v2"
    llm: LLMConfig = Field(default_factory=LLMConfig)
    retry_failed: bool = False  # pairs: redo judgements recorded as failed


class RewriteConfig(Config):
    k: int = Field(3, ge=0)  # rewrites per pair (the paper: 3)
    kind: Literal["offline", "llm"] = "offline"  # offline (paraphrase) | llm (the judge's endpoint unless llm is given)
    template: str = "rewrite_v1"
    llm: LLMConfig | None = None


def make_judge(
    config: JudgeConfig,
    images: Iterable[ImageRecord] = (),
    exhaustive_names: Iterable[str] = (),
    cache_dir: str | Path | None = None,
) -> Judge:
    """The judge `config` describes. The offline judge reads its vocabulary from `images` (their annotated
    objects and attributes) and treats `exhaustive_names` (classes the source annotates exhaustively, as COCO's
    80) as config.exhaustive_names; the LLM judge caches its answers in config.llm.cache_dir, else `cache_dir`
    (None: no cache)."""
    if config.kind == "annotations":
        return AnnotationJudge.from_records(
            images,
            config.synonyms,
            [*exhaustive_names, *config.exhaustive_names],
            config.extra_names,
            config.fill_absent,
        )
    if config.kind == "llm":
        return LLMJudge(_cached(config.llm, cache_dir), config.template)
    raise ValueError(f"judge.kind {config.kind!r} has no branch in make_judge (hadpo/judge/config.py)")


def make_rewriter(config: RewriteConfig, judge_config: JudgeConfig, judge: Judge, cache_dir: str | Path | None = None):
    """The rewriter `config` describes: the offline paraphraser, or an LLM (the judge's endpoint and client
    unless config.llm names another, so that one concurrency bound and one usage account cover both)."""
    if config.kind == "offline":
        return ParaphraseRewriter()
    if config.kind == "llm":
        llm = _cached(config.llm or judge_config.llm, cache_dir)
        shares_client = isinstance(judge, LLMJudge) and config.llm is None
        return LLMRewriter(llm, config.template, client=judge.client if shares_client else LLMClient(llm))
    raise ValueError(f"rewrite.kind {config.kind!r} has no branch in make_rewriter (hadpo/judge/config.py)")


def _cached(llm: LLMConfig, cache_dir: str | Path | None) -> LLMConfig:
    """`llm` with `cache_dir` as its cache when it names none (a copy: the caller's config stays as written)."""
    if llm.cache_dir or cache_dir is None:
        return llm
    return llm.model_copy(update={"cache_dir": str(cache_dir)})
