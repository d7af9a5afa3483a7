"""The `llm` judge end to end against a scripted OpenAI-compatible server on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from fake_llm import FakeChatServer, valid_judge_answer

from hadpo.judge.llm import LLMJudge, LLMRewriter
from hadpo.judge.llm_answers import InvalidAnswer, parse_judge_answer
from hadpo.judge.llm_client import LLMConfig
from hadpo.records import ImageRecord, ObjectAnnotation

IMAGE = ImageRecord(
    image_id="img1",
    path="img1.png",
    width=48,
    height=48,
    complete=True,
    objects=[ObjectAnnotation(name="star", attributes=["red"], box=[0, 0, 16, 16], position="top left")],
)
TWO_SENTENCES = "There is a red star. There is a dog."


def config(server: FakeChatServer, tmp_path, **overrides) -> LLMConfig:
    values = dict(
        base_url=server.base_url,
        model="fake-judge",
        api_key_env="HADPO_TEST_KEY",
        timeout_s=0.5,
        max_retries=3,
        max_concurrency=1,
        invalid_retries=1,
        cache_dir=str(tmp_path / "cache"),
        price_per_1k_prompt=1.0,
        price_per_1k_completion=2.0,
    )
    values.update(overrides)
    return LLMConfig(**values)


def answer(*labels: str, corrected: str = "There is a red star.") -> str:
    entries = [
        {"index": i, "label": label, "reason": "", "objects": ["dog"] if label == "hallucination" else []}
        for i, label in enumerate(labels, start=1)
    ]
    return json.dumps({"sentences": entries, "corrected": corrected})


def test_parse_judge_answer_checks_shape():
    parsed = parse_judge_answer("```json\n" + answer("correct", "cannot judge") + "\n```", 2)
    assert [v.label for v in parsed.sentences] == ["correct", "cannot_judge"]
    for bad, message in [
        ("not json at all", "no JSON object"),
        ("{'index': 1}", "not valid JSON"),
        (answer("correct"), "1 sentences labelled"),
        (answer("correct", "correct", "correct"), "sentence 3 does not exist"),
        (answer("correct", "maybe"), "unknown label"),
    ]:
        with pytest.raises(InvalidAnswer, match=message):
            parse_judge_answer(bad, 2)


def test_llm_judge_retries_records_failures_and_caches(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HADPO_TEST_KEY", "sk-secret-never-logged")
    caplog.set_level(logging.DEBUG)
    with FakeChatServer() as server:
        judge = LLMJudge(config(server, tmp_path))
        server.script = [429, 500, ("sleep", 1.5), answer("correct", "hallucination")]  # 3 retries, then good
        first = judge.judge(IMAGE, "d1", TWO_SENTENCES)
        server.script = ["this is not json", "{still not json"]  # invalid, re-asked once, still invalid
        second = judge.judge(IMAGE, "d2", TWO_SENTENCES + " It is red.")
        server.script = [
            answer("correct", "correct", "correct"),
            answer("correct", "correct"),
        ]  # unknown index 3
        third = judge.judge(IMAGE, "d3", "A star. A red star at the top left")
        empty = judge.judge(IMAGE, "d4", "  . ")

        assert first.failed is None and first.labels == ["correct", "hallucination"]
        assert first.hallucinated_objects == ["dog"] and first.corrected == "There is a red star."
        assert first.judge.startswith("llm:fake-judge@judge_v1#")
        assert second.failed.startswith("invalid answer:") and second.labels == ["cannot_judge"] * 3
        assert third.failed is None and third.labels == ["correct", "correct"]
        assert empty.failed == "empty description"
        usage = judge.client.usage
        assert usage.requests == 4 + 2 + 2 == len(server.requests)
        assert usage.retries == 3
        assert usage.errors == {"RateLimitError": 1, "InternalServerError": 1, "APITimeoutError": 1}
        assert usage.prompt_tokens == 100 * 5 and usage.cost == pytest.approx((100 * 5 + 20 * 10) / 1000)
        # the re-ask shows the model its error, so it is a different request from the first
        assert "does not exist" in server.requests[-1]["messages"][-1]["content"]

        # Rerun with a fresh judge on the same cache: identical results, zero new requests.
        requests_before = len(server.requests)
        again = LLMJudge(config(server, tmp_path))
        rerun = [
            again.judge(IMAGE, d, t)
            for d, t in [
                ("d1", TWO_SENTENCES),
                ("d2", TWO_SENTENCES + " It is red."),
                ("d3", "A star. A red star at the top left"),
            ]
        ]
        assert len(server.requests) == requests_before
        assert again.client.usage.requests == 0 and again.client.usage.cache_hits == 5
        assert [j.model_dump() for j in rerun] == [j.model_dump() for j in (first, second, third)]

    # The key reaches the server and nothing else: not the logs, not the cache, not the outputs.
    assert server.headers[0]["authorization"] == "Bearer sk-secret-never-logged"
    written = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    outputs = json.dumps([j.model_dump() for j in (first, second, third)])
    assert "sk-secret" not in caplog.text + written + outputs


def test_llm_judge_gives_up_after_max_retries(tmp_path):
    with FakeChatServer() as server:
        judge = LLMJudge(config(server, tmp_path, max_retries=2))
        server.script = [500, 503, 502]
        judgement = judge.judge(IMAGE, "d1", TWO_SENTENCES)
        assert judgement.failed == "endpoint: InternalServerError after 3 attempts"
        assert judge.client.usage.requests == 3 and judge.client.usage.retries == 2
        assert judge.client.usage.transport_failures == 1
        # a failed call is not cached: the next try asks again and succeeds
        assert judge.judge(IMAGE, "d1", TWO_SENTENCES).failed is None


def test_llm_judge_concurrency_is_bounded(tmp_path):
    import time

    def slow_answer(body):
        time.sleep(0.1)
        return valid_judge_answer(body)

    with FakeChatServer(responder=slow_answer) as server:
        judge = LLMJudge(config(server, tmp_path, max_concurrency=2, cache_dir=None))
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda i: judge.judge(IMAGE, f"d{i}", f"There is a star number {i}."), range(6)))
        assert all(r.failed is None for r in results)
        assert server.max_in_flight == 2 and judge.client.usage.requests == 6


def test_llm_rewriter_keeps_pairs_and_reasks(tmp_path):
    good = json.dumps({"rewrites": [{"a": f"pos {i}", "b": f"neg {i}"} for i in range(3)]})
    with FakeChatServer() as server:
        rewriter = LLMRewriter(config(server, tmp_path))
        server.script = [json.dumps({"rewrites": [{"a": "only one", "b": "x"}]}), good]
        assert rewriter.rewrite_pair("A red star.", "A red star and a dog.", 3) == [
            ("pos 0", "neg 0"),
            ("pos 1", "neg 1"),
            ("pos 2", "neg 2"),
        ]
        assert len(server.requests) == 2
        assert "A red star and a dog." in server.requests[0]["messages"][1]["content"]


def test_rate_limit_spaces_request_starts():
    import time

    from hadpo.judge.llm_client import RateLimiter

    limiter = RateLimiter(per_minute=600)  # one start per 0.1 s
    start = time.monotonic()
    for _ in range(4):
        limiter.wait()
    assert 0.29 <= time.monotonic() - start < 1.0
    assert RateLimiter(0).interval == 0.0


def test_request_key_is_a_content_hash():
    from hadpo.judge.llm_client import request_key

    messages = [{"role": "user", "content": "x"}]
    assert request_key("m", messages, {"temperature": 0}) == request_key("m", list(messages), {"temperature": 0})
    assert request_key("m", messages, {"temperature": 0}) != request_key("m", messages, {"temperature": 1})
    assert request_key("m", messages, {}) != request_key("other", messages, {})


def test_custom_prompt_template_is_versioned_by_name_and_hash(tmp_path):
    from hadpo.judge.llm_answers import PromptTemplate, render_annotations

    path = tmp_path / "strict_judge.txt"
    path.write_text("=== user ===\nFacts:\n$annotations\nSentences:\n$sentences\n($count)\n")
    judge = LLMJudge(LLMConfig(base_url="http://127.0.0.1:9/v1", model="m"), template=str(path))
    assert judge.name.startswith("llm:m@strict_judge#") and len(judge.name.split("#")[1]) == 8
    messages = judge.messages(IMAGE, ["There is a red star"])
    assert messages == [
        {"role": "user", "content": f"Facts:\n{render_annotations(IMAGE)}\nSentences:\n1. There is a red star.\n(1)"}
    ]
    assert "[0.00, 0.00, 0.33, 0.33] object: red star, top left" in render_annotations(IMAGE)
    path.write_text("no sections")
    with pytest.raises(ValueError, match="no '=== user ===' section"):
        PromptTemplate.load(str(path))
    with pytest.raises(FileNotFoundError):
        PromptTemplate.load("judge_v999")
