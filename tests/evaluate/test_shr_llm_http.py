"""SHR with the LLM judge against a local OpenAI-compatible HTTP server started here: real HTTP, scripted
answers including malformed ones. Failed judgements must be counted, never dropped."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hadpo.evaluate.shr import evaluate_shr
from hadpo.records import ImageRecord, Region

llm = pytest.importorskip("hadpo.judge.llm")
llm_client = pytest.importorskip("hadpo.judge.llm_client")


def _verdicts(*labels):
    return json.dumps({"sentences": [{"index": i, "label": label} for i, label in enumerate(labels, start=1)]})


def scripted_answer(messages: list[dict]) -> str:
    """The judge's answer, chosen by the description in the request; a retry (more than one user turn) may be
    answered differently."""
    prompt = " ".join(m["content"] for m in messages if m["role"] == "user")
    retry = sum(m["role"] == "user" for m in messages) > 1
    if "wears a hat" in prompt:
        return _verdicts("correct", "hallucination")
    if "green cat" in prompt:
        return "Sure! The description looks fine to me."  # never valid JSON, also on the retry
    if "cup and a fork" in prompt:
        return _verdicts("hallucination") if retry else '```json\n{"sentences": [\n```'  # malformed, then fixed
    if "purple" in prompt:
        return _verdicts("correct")  # one label for two sentences, on both attempts
    return _verdicts("cannot judge")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = scripted_answer(body["messages"])
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_shr_over_http_counts_malformed_judgements(server):
    config = llm_client.LLMConfig(
        base_url=server, model="scripted-judge", max_retries=0, invalid_retries=1, max_concurrency=2
    )
    judge = llm.LLMJudge(config)
    image = ImageRecord(
        image_id="1", path="1.png", width=100, height=50, regions=[Region(phrase="a red dog", box=[10, 5, 40, 20])]
    )
    descriptions = [
        ("a", "1", "There is a red dog. It wears a hat."),  # valid: correct, hallucination
        ("b", "1", "A green cat sleeps."),  # malformed twice: failed
        ("c", "1", "There is a cup and a fork."),  # malformed, then valid on the retry: hallucination
        ("d", "1", "A purple bird. A purple tree."),  # sentence count mismatch twice: failed
    ]
    result, judgements = evaluate_shr(descriptions, {"1": image}, judge, progress=False)
    # Usable: a (2 sentences, 1 hallucinated) and c (1 sentence, hallucinated) -> SHR = 2 / 3.
    assert result.shr == pytest.approx(2 / 3)
    assert result.failed_judgements == 2 and sorted(result.failed_ids) == ["b", "d"]
    assert result.images == 4 and len(judgements) == 4
    assert result.judge.startswith("llm:scripted-judge@judge_v1")
    assert all(j.failed for j in judgements if j.description_id in ("b", "d"))


def test_hadpo_eval_shr_with_the_llm_judge(server, image_records, tmp_path, capsys, monkeypatch):
    from hadpo.cli import main

    monkeypatch.setenv("HADPO_TEST_KEY", "not-a-real-key")
    descriptions = tmp_path / "descriptions.jsonl"
    descriptions.write_text(
        json.dumps({"image_id": "1", "text": "A red dog. It wears a hat."})
        + "\n"
        + json.dumps({"image_id": "2", "text": "A green cat sleeps."})
        + "\n"
    )
    assert (
        main(
            [
                "eval",
                "shr",
                "--descriptions",
                str(descriptions),
                "--images",
                str(image_records),
                "--judge",
                "llm",
                "--base-url",
                server,
                "--judge-model",
                "scripted-judge",
                "--api-key-env",
                "HADPO_TEST_KEY",
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    # The first description is judged (correct, hallucination), the second answer never parses: SHR 1/2, 1 failed.
    assert (metrics["shr"], metrics["failed_judgements"]) == (0.5, 1)
    assert metrics["judge"].startswith("llm:scripted-judge@judge_v1")
    assert len((tmp_path / "out" / "shr_judgements.jsonl").read_text().splitlines()) == 2


def test_shr_judges_with_the_pair_build_s_judge_config(server, image_records, tmp_path, capsys, monkeypatch):
    """`--judge-config` reads a pair build's config (its judge: section); the --judge-* flags and --judge-set
    override its keys, in that order; the judge that results is the one the flags alone describe."""
    from hadpo.cli import main

    monkeypatch.setenv("HADPO_TEST_KEY", "not-a-real-key")
    descriptions = tmp_path / "descriptions.jsonl"
    descriptions.write_text(json.dumps({"image_id": "1", "text": "A red dog. It wears a hat."}) + "\n")
    build = tmp_path / "build.yaml"
    build.write_text(
        "source: {kind: folder, images: images.jsonl}\n"
        f"judge:\n  kind: llm\n  llm: {{base_url: '{server}', model: other-model, api_key_env: HADPO_TEST_KEY}}\n"
    )
    common = ["eval", "shr", "--descriptions", str(descriptions), "--images", str(image_records), "--no-progress"]

    def judge_name(*options: str) -> str:
        assert main([*common, *options, "--out", str(tmp_path / "out")]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["shr"] == 0.5
        return metrics["judge"]

    # A pair build's judge, with its prompt (judge_v2 by default); SHR's own default prompt is judge_v1.
    assert judge_name("--judge-config", str(build)).startswith("llm:other-model@judge_v2")
    assert judge_name("--judge", "llm", "--base-url", server, "--api-key-env", "HADPO_TEST_KEY").startswith(
        "llm:gpt-4o@judge_v1"
    )
    assert judge_name("--judge-config", str(build), "--judge-model", "scripted-judge").startswith("llm:scripted-judge@")
    chosen = judge_name("--judge-config", str(build), "--judge-model", "ignored", "--judge-set", "llm.model=last")
    assert chosen.startswith("llm:last@")
    flags_only = [
        "--judge",
        "llm",
        "--base-url",
        server,
        "--api-key-env",
        "HADPO_TEST_KEY",
        "--judge-prompt",
        "judge_v2",
    ]
    assert judge_name(*flags_only, "--judge-model", "other-model") == judge_name("--judge-config", str(build))

    assert main([*common, "--judge-config", str(build), "--judge-set", "llm.modle=x", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"hadpo: error: {build}: llm: unknown key 'modle' (did you mean 'model'?)"
