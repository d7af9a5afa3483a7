"""The speed benchmarks run (their GPU path included, on the CPU at tiny size) and print what docs/benchmarks.md
reads; the figures themselves come from running them, never from a test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.speed import train_epochs
from benchmarks.speed.harness import build_model, parameter_shares
from benchmarks.speed.trainers import prompt_with_bos
from hadpo.world.tiny import train_tokenizer

REPOSITORY = Path(__file__).resolve().parents[2]


def _last_json(module: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--json"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_gpu_shape_is_llava_1_5_7b():
    model, _ = build_model("llava15-7b", "meta", torch.bfloat16)  # shapes only, no memory
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 7.06
    assert model.config.image_seq_length == 576 and model.config.vision_config.num_hidden_layers == 24
    assert 0.045 < parameter_shares(model)["vision"] < 0.047


def test_trls_prompt_gets_the_bos_the_tokenizer_would_add():
    adds = train_tokenizer(["USER: hello ASSISTANT:"] * 5, vocab_size=300)
    plain = train_tokenizer(["USER: hello ASSISTANT:"] * 5, vocab_size=300, bos=False)
    text = "USER: hello ASSISTANT:"
    assert prompt_with_bos(adds, text) == "<s>" + text
    # encoded without special tokens (as TRL does) it gives what the tokenizer gives by default (as hadpo does)
    assert adds(prompt_with_bos(adds, text), add_special_tokens=False)["input_ids"] == adds(text)["input_ids"]
    assert prompt_with_bos(adds, "<s>" + text) == "<s>" + text  # a template that writes it: left alone
    assert prompt_with_bos(plain, text) == text


@pytest.mark.slow  # three interpreters (the parent, a timing child, the loss child): ~15 s of CPU
def test_train_speed_runs_the_gpu_path_at_tiny_size_on_the_cpu():
    # bf16, LoRA, model FLOPs utilisation from counted FLOPs (a made-up 1 TFLOP/s peak) and peak memory.
    result = _last_json(
        "benchmarks.speed.train_speed",
        *("--sides", "hadpo", "--runs", "1", "--steps", "1", "--warmup", "1", "--batch-size", "2"),
        *("--dtype", "bfloat16", "--peak-tflops", "1"),
    )
    assert result["hadpo_pairs_per_s"] > 0 and result["hadpo_peak_rss_mb"] > 0
    assert 0 < result["hadpo_mfu"] < 1 and result["hadpo_loss"] > 0
    assert result["settings"]["prompt_tokens"] >= 144 + 1


def test_train_epochs_times_a_whole_run_with_the_reference_pass(capsys):
    # One run, in this process (the parent's runs-in-children path is train_speed's, tested above).
    argv = ["--pairs", "4", "--epochs", "2", "--batch-size", "2", "--child", "hadpo-precomputed"]
    assert train_epochs.main(argv) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert run["optimizer_steps"] == 4  # 2 epochs of 4 pairs, 2 per step
    assert 0 < run["setup_s"] < run["seconds"] and run["pairs_per_s"] == 8 / run["seconds"]


def test_eval_speed_reports_both_modes_and_their_agreement():
    result = _last_json("benchmarks.speed.eval_speed", "--model", "tiny", "--images", "2", "--runs", "1")
    assert result["forward_q_per_s"] > 0 and result["generate_q_per_s"] > 0 and result["questions"] == 12
    assert result["compared"] > 0 and result["agreement"] >= 0.99
