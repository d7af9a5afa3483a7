"""The judge's one home (hadpo.judge.config): every kind the config declares is built by make_judge, the offline
judge reads its vocabulary and exhaustive classes from what it is given, an LLM judge and rewriter share one
client and a cache folder without the config being changed."""

from __future__ import annotations

import typing

import pytest

from hadpo.judge.config import JudgeConfig, RewriteConfig, make_judge, make_rewriter
from hadpo.judge.llm import LLMJudge, LLMRewriter
from hadpo.judge.llm_client import LLMConfig
from hadpo.judge.offline import AnnotationJudge
from hadpo.judge.paraphrase import ParaphraseRewriter
from hadpo.records import ImageRecord, ObjectAnnotation

IMAGE = ImageRecord(
    image_id="0",
    path="0.png",
    width=48,
    height=48,
    objects=[ObjectAnnotation(name="dog", attributes=["red"], box=[0, 0, 10, 10])],
)


def test_every_declared_kind_has_a_branch(tmp_path):
    for kind in typing.get_args(JudgeConfig.model_fields["kind"].annotation):
        assert make_judge(JudgeConfig(kind=kind), [IMAGE], cache_dir=tmp_path).name
    for kind in typing.get_args(RewriteConfig.model_fields["kind"].annotation):
        config = RewriteConfig(kind=kind)
        assert make_rewriter(config, JudgeConfig(), make_judge(JudgeConfig(), [IMAGE]), tmp_path).name


def test_the_offline_judge_reads_its_vocabulary_and_exhaustive_classes():
    # "cat" is not annotated: only a word it knows (extra_names) and a class annotated exhaustively (the
    # source's, or the config's) makes "a cat" a hallucination rather than a word it cannot judge.
    text = "There is a red dog. There is a cat."
    plain = make_judge(JudgeConfig(), [IMAGE]).judge(IMAGE, "d", text)
    known = make_judge(JudgeConfig(extra_names=["cat"]), [IMAGE], exhaustive_names=["cat"]).judge(IMAGE, "d", text)
    configured = make_judge(JudgeConfig(extra_names=["cat"], exhaustive_names=["cat"]), [IMAGE]).judge(IMAGE, "d", text)
    assert isinstance(make_judge(JudgeConfig(), [IMAGE]), AnnotationJudge)
    assert plain.labels[0] == known.labels[0] == "correct"
    assert plain.labels[1] != "hallucination"
    assert known.labels[1] == configured.labels[1] == "hallucination"


def test_llm_judge_and_rewriter_share_a_client_and_the_cache_folder(tmp_path):
    config = JudgeConfig(kind="llm", llm=LLMConfig(model="m"))
    judge = make_judge(config, cache_dir=tmp_path / "cache")
    assert isinstance(judge, LLMJudge) and judge.client.config.cache_dir == str(tmp_path / "cache")
    assert config.llm.cache_dir is None  # the resolved config saved beside a build stays as written

    rewriter = make_rewriter(RewriteConfig(kind="llm"), config, judge, tmp_path / "cache")
    assert isinstance(rewriter, LLMRewriter) and rewriter.client is judge.client
    own = make_rewriter(RewriteConfig(kind="llm", llm=LLMConfig(model="other")), config, judge, tmp_path / "cache")
    assert own.client is not judge.client and own.client.config.model == "other"
    assert isinstance(make_rewriter(RewriteConfig(), config, judge), ParaphraseRewriter)

    named = JudgeConfig(kind="llm", llm=LLMConfig(cache_dir=str(tmp_path / "mine")))
    assert make_judge(named, cache_dir=tmp_path / "cache").client.config.cache_dir == str(tmp_path / "mine")


def test_an_unknown_kind_is_refused_by_the_config():
    with pytest.raises(ValueError, match="kind"):
        JudgeConfig(kind="gpt")
