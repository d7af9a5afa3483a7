"""Data-parallel inference (hadpo.inference.parallel): slices, shards merged in order and resumed, and two CPU
processes under `accelerate launch` writing the same answers as one."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from hadpo.cli import main
from hadpo.inference import DecodingConfig, Query, load_model, run_queries
from hadpo.inference.parallel import contiguous_slices, shard_path
from hadpo.records import Answer, read_jsonl, write_jsonl
from launch import free_port

RUNNER = "import sys\nfrom hadpo.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def test_slices_are_contiguous_and_keep_an_image_s_questions_together():
    items = [(image, k) for image in "abcde" for k in range(3)]  # 15 questions, 3 per image
    slices = contiguous_slices(items, 2, key=lambda item: item[0])
    assert [len(s) for s in slices] == [9, 6] and sum(slices, []) == items  # the cut at 7.5 moves to 9
    assert [len(s) for s in contiguous_slices(items, 4)] == [4, 4, 3, 4]  # cuts at round(3.75, 7.5, 11.25)
    assert sum(contiguous_slices(items[:1], 3), []) == items[:1]  # more ranks than questions: some idle


def _queries(image_records, n=8):
    folder = image_records.parent / "images"
    prompts = ["Is there a dog in the image?", "Is there a cup in the image?"]
    return [Query(f"q{i}", folder / f"{i // 2}.png", prompts[i % 2], image_id=str(i // 2)) for i in range(n)]


def test_a_resumed_run_merges_the_shards_an_interrupted_one_left_in_question_order(
    tiny_model_dir, image_records, tmp_path
):
    model, processor = load_model(tiny_model_dir)
    queries = _queries(image_records)
    config = DecodingConfig(mode="logits", batch_size=4)
    name = str(tiny_model_dir)
    reference = tmp_path / "reference.jsonl"
    run_queries(model, processor, queries, reference, config, model_name=name, progress=False)
    answers = {a.question_id: a for a in read_jsonl(reference, Answer)}
    # An interrupted 2-process run: rank 1 had answered q6 and q5 into its shard, rank 0 q0 into the output.
    output = tmp_path / "answers.jsonl"
    write_jsonl(output, [answers["q0"]])
    write_jsonl(shard_path(output, 1), [answers["q6"], answers["q5"]])
    summary = run_queries(model, processor, queries, output, config, model_name=name, progress=False)
    merged = read_jsonl(output, Answer)
    assert [a.question_id for a in merged] == ["q0", "q5", "q6", "q1", "q2", "q3", "q4", "q7"]
    assert summary.resumed == 3 and summary.written == 5 and not shard_path(output, 1).exists()
    for answer in merged:
        assert answer.margin == pytest.approx(answers[answer.question_id].margin, abs=1e-4)
    # A shard written with other settings is refused, not mixed in.
    write_jsonl(shard_path(output, 0), [answers["q1"]])
    with pytest.raises(ValueError, match="answered by"):
        run_queries(model, processor, queries, output, DecodingConfig(mode="generate"), model_name=name)


@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None, reason="no accelerate")
def test_two_processes_write_the_answers_of_one(tiny_model_dir, image_records, tmp_path):
    questions = tmp_path / "pope_random.jsonl"
    rows = [
        {"question_id": i, "image": f"images/{i // 3 % 4}.png", "text": text, "label": "yes" if i % 2 else "no"}
        for i, text in enumerate(
            ["Is there a dog in the image?", "Is there a cup in the image?", "Is there a knife in the image?"] * 4
        )
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = [
        "eval",
        "pope",
        "run",
        "--questions",
        str(questions),
        "--image-root",
        str(image_records.parent),
        "--model",
        str(tiny_model_dir),
        "--mode",
        "logits",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0

    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, str(runner), *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = read_jsonl(tmp_path / "one" / "answers_random_logits.jsonl", Answer)
    two = read_jsonl(tmp_path / "two" / "answers_random_logits.jsonl", Answer)
    assert [a.question_id for a in two] == [a.question_id for a in one] == [str(i) for i in range(12)]
    assert [a.text for a in two] == [a.text for a in one]
    assert [a.margin for a in two] == pytest.approx([a.margin for a in one], abs=1e-4)
    assert not list((tmp_path / "two").glob("*.rank*"))
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["pope"]["splits"]["random"]["n"] == 12
