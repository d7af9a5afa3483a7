"""`hadpo train`: bad input ends in one line before training, and a killed run resumes with --resume (to the same
steps and losses as a run that was never killed)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from hadpo.cli import main
from train_helpers import make_pairs


def _recipe(path, **values):
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def recipe(tiny_model_dir, pairs_file, tmp_path):
    base = dict(
        model_name_or_path=str(tiny_model_dir),
        pairs=str(pairs_file),
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        lora_r=8,
        max_steps=4,
        save_steps=2,
        disable_tqdm=True,
    )
    return lambda **changes: _recipe(tmp_path / "recipe.yaml", **{**base, **changes})


@pytest.mark.parametrize(
    "changes, overrides, message",
    [
        ({"betaa": 0.1}, [], "unknown config key 'betaa' (did you mean 'beta'?)"),
        ({}, ["loss_type=kto"], "config key 'loss_type': 'kto' is not one of"),
        ({"finetuning": "full"}, [], "adapters needs LoRA"),
        ({"gamma": 0.5}, [], "config key 'sft_data' is required"),
        pytest.param(
            {"finetuning": "qlora"},
            [],
            "finetuning=qlora needs bitsandbytes and a CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU may run QLoRA"),
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(recipe, capsys, changes, overrides, message):
    assert main(["train", str(recipe(**changes)), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hadpo: error:") and message in err and "\n" not in err


def test_bad_pair_stops_before_training(recipe, tmp_path, capsys):
    make_pairs(tmp_path / "bad", n_images=1, rewrites=0)
    (tmp_path / "bad" / "images" / "0.png").unlink()
    assert main(["train", str(recipe(pairs=str(tmp_path / "bad" / "pairs.jsonl")))]) == 2
    err = capsys.readouterr().err
    assert "pair 'd0-0': image not found" in err and not (tmp_path / "run").exists()


KILLER = """
import os, signal, sys
from transformers import TrainerCallback
from hadpo.config import load_config
from hadpo.train.config import HADPOConfig
from hadpo.train.run import run_training

class KillAfter(TrainerCallback):  # a hard kill, as if the machine went away after checkpoint-2
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            os.kill(os.getpid(), signal.SIGKILL)

run_training(load_config(HADPOConfig, sys.argv[1]), callbacks=[KillAfter()])
"""


def test_killed_run_resumes_to_the_same_steps_and_losses(recipe, tmp_path, image_records):
    # With an auxiliary SFT batch every other step: its position must continue after the resume too.
    config = recipe(gamma=0.5, sft_data=str(image_records), sft_ratio=0.5)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), str(config)], capture_output=True, text=True, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "checkpoint-2").is_dir() and not (run / "checkpoint-4").exists()

    assert main(["train", str(config), "--resume"]) == 0
    resumed = json.loads((run / "trainer_state.json").read_text())
    assert resumed["global_step"] == 4

    assert main(["train", str(config), f"output_dir={tmp_path / 'straight'}"]) == 0
    straight = json.loads((tmp_path / "straight" / "trainer_state.json").read_text())

    def losses(state):
        return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}

    assert [e["step"] for e in resumed["log_history"] if "loss/sft" in e] == [2, 4]

    assert sorted(losses(resumed)) == [1, 2, 3, 4]
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-5)
