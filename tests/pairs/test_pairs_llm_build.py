"""A pair build with the `llm` judge and rewriter against the scripted local server (real HTTP on 127.0.0.1):
every judged sentence mentioning a dog is a hallucination; rewrites keep both texts' claims."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "judge"))
from fake_llm import FakeChatServer  # noqa: E402

from hadpo.judge.llm_client import LLMConfig  # noqa: E402
from hadpo.pairs.build import run_build  # noqa: E402
from hadpo.pairs.config import PairsConfig, SourceConfig  # noqa: E402
from hadpo.pairs.store import BuildFiles  # noqa: E402
from hadpo.records import Description, Judgement, PreferencePair, read_jsonl, write_jsonl  # noqa: E402


def dog_judge_and_rewriter(body: dict) -> str:
    user = body["messages"][-1]["content"]
    if "rewrites" in user:
        a = re.search(r"^A: (.*)$", user, flags=re.MULTILINE).group(1)
        b = re.search(r"^B: (.*)$", user, flags=re.MULTILINE).group(1)
        return json.dumps(
            {
                "rewrites": [
                    {"a": f"{a} Truly.", "b": f"{b} Truly."},
                    {"a": a, "b": "A star."},
                    {"a": f"{a} A dog.", "b": b},
                ]
            }
        )
    sentences = re.findall(r"^\d+\. (.*)\.$", user, flags=re.MULTILINE)
    entries = [
        {
            "index": i,
            "label": "hallucination" if "dog" in s.lower() else "correct",
            "reason": "",
            "objects": ["dog"] if "dog" in s.lower() else [],
        }
        for i, s in enumerate(sentences, start=1)
    ]
    kept = [s for s in sentences if "dog" not in s.lower()]
    return json.dumps({"sentences": entries, "corrected": ". ".join(kept) + "." if kept else ""})


def test_llm_build_judges_rewrites_caches_and_estimates(image_records, tmp_path):
    with FakeChatServer(responder=dog_judge_and_rewriter) as server:
        llm = LLMConfig(
            base_url=server.base_url,
            model="fake",
            api_key_env="HADPO_TEST_KEY",
            max_concurrency=3,
            price_per_1k_prompt=0.5,
        )
        config = PairsConfig(out_dir=str(tmp_path / "build"), source=SourceConfig(images=str(image_records)))
        config.judge.kind, config.judge.llm = "llm", llm
        config.rewrite.kind = "llm"
        files = BuildFiles(tmp_path / "build")
        files.root.mkdir()
        write_jsonl(
            files.descriptions,
            [
                Description(description_id="0#d0", image_id="0", prompt="Describe.", text="A red square. A dog runs."),
                Description(description_id="1#d0", image_id="1", prompt="Describe.", text="A red dog."),
                Description(description_id="2#d0", image_id="2", prompt="Describe.", text="A blue cup. A red fork."),
            ],
        )

        estimate = run_build(config, ("judge", "rewrite", "qa"), dry_run=True)
        assert estimate["dry_run"]["judge"]["llm_calls"] == 3 and estimate["dry_run"]["judge"]["prompt_tokens"] > 0
        assert len(server.requests) == 0 and not files.judgements.exists()
        config.describe.per_image = 2
        before_describe = run_build(config, ("describe", "judge", "rewrite"), dry_run=True)["dry_run"]
        assert before_describe["llm_for_new_descriptions"]["judge_calls"] == 4 * 2 - 3  # 3 already described
        assert before_describe["llm_for_new_descriptions"]["rewrite_calls_at_most"] == 5
        assert len(server.requests) == 0

        stats = run_build(config, ("judge", "rewrite", "qa"))
        judgements = {j.description_id: j for j in read_jsonl(files.judgements, Judgement)}
        assert judgements["0#d0"].labels == ["correct", "hallucination"] and judgements["0#d0"].judge.startswith(
            "llm:fake@judge_v2#"
        )
        assert judgements["1#d0"].corrected == ""  # all hallucinated: no positive
        pairs = read_jsonl(files.pairs, PreferencePair)
        desc = sorted((p.rewrite_index, p.chosen, p.rejected) for p in pairs if p.kind == "desc")
        assert desc == [
            (0, "A red square.", "A red square. A dog runs."),
            (1, "A red square. Truly.", "A red square. A dog runs. Truly."),
        ]
        assert stats["dropped"] == {
            "empty_correction": 1,
            "negative_lost_hallucination": 1,
            "positive_gained_hallucination": 1,
        }
        assert {p.prompt for p in pairs if p.kind == "qa"} >= {"Is there a dog in the image?"}
        # 3 judgements + 1 re-judge of the positive + 1 rewrite call + 3 x 2 re-judges = 11 calls; two re-judge
        # a text judged before (rewrite 2's positive, rewrite 3's negative) and come from the cache
        assert stats["llm"]["requests"] == len(server.requests) == 11 - 2 and stats["llm"]["cache_hits"] == 2
        assert stats["llm"]["cost"] == pytest.approx(stats["llm"]["prompt_tokens"] * 0.5 / 1000)

        # A rerun with the stages' outputs deleted still makes no request: every answer is in the cache.
        files.judgements.unlink()
        files.rewrites.unlink()
        before = len(server.requests)
        again = run_build(config, ("judge", "rewrite", "qa"))
        assert len(server.requests) == before and again["llm"]["cache_hits"] == 11
        assert again["llm_total"]["requests"] == 9 and again["llm_total"]["cache_hits"] == 2 + 11
        assert read_jsonl(files.pairs, PreferencePair) == pairs


def test_llm_judge_stage_records_and_counts_unusable_answers(image_records, tmp_path, caplog):
    def garbled(body: dict) -> str:
        user = body["messages"][1]["content"]
        if "Garble" in user:
            return "Sure! Here is my verdict: everything looks fine."
        return dog_judge_and_rewriter(body)

    with FakeChatServer(responder=garbled) as server:
        config = PairsConfig(out_dir=str(tmp_path / "build"), source=SourceConfig(images=str(image_records)))
        config.judge.kind = "llm"
        config.judge.llm = LLMConfig(base_url=server.base_url, model="fake")
        files = BuildFiles(tmp_path / "build")
        files.root.mkdir()
        write_jsonl(
            files.descriptions,
            [
                Description(description_id="0#d0", image_id="0", prompt="Describe.", text="A dog. A red square."),
                Description(description_id="2#d0", image_id="2", prompt="Describe.", text="Garble. A blue cup."),
            ],
        )
        stats = run_build(config, ("judge",))
        assert stats["skipped"] == {"judge_failed": 1} and stats["judgements_failed"] == 1
        assert "description 2#d0 (image 2): judgement failed: invalid answer: the answer holds no JSON object" in (
            caplog.text
        )
        assert caplog.text.count("2#d0") == 1  # one line for the record, not one per layer
        assert len(server.requests) == 1 + 2  # the garbled one was re-asked once
        # the failure is on disk, so a rerun does not pay again; retry_failed asks again
        assert len(read_jsonl(files.judgements, Judgement)) == 2
        run_build(config, ("judge",))
        assert len(server.requests) == 3
        config.judge.retry_failed = True
        stats = run_build(config, ("judge",))
        assert len(server.requests) == 3 + 2  # asked again, past the cache of the failed answers
        judgements = read_jsonl(files.judgements, Judgement)
        assert [j.description_id for j in judgements] == ["0#d0", "2#d0"] and judgements[1].failed
