"""Two CPU processes (accelerate launch, gloo) follow the same loss trajectory as one process with the same
global batch, auxiliary SFT term included."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from hadpo.train.run import build_trainer
from launch import free_port

RUNNER = "import sys\nfrom hadpo.cli import main\nsys.exit(main(['train', *sys.argv[1:]]))\n"


@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None, reason="no accelerate")
@pytest.mark.parametrize(
    "reference", ["adapters", pytest.param("precomputed", marks=pytest.mark.slow, id="precomputed")]
)
def test_two_processes_match_one_process_with_the_same_global_batch(make_config, image_records, tmp_path, reference):
    # precomputed: each process scores half of the pairs and rank 0 merges the cache (slow: -m slow).
    common = dict(max_steps=3, learning_rate=2e-2, gamma=0.5, sft_data=str(image_records), reference=reference)
    single = build_trainer(make_config(per_device_train_batch_size=4, output_dir=str(tmp_path / "one"), **common))
    single.train()

    recipe = tmp_path / "two.yaml"
    two_values = dict(
        model_name_or_path=single.args.model_name_or_path,
        pairs=single.args.pairs,
        output_dir=str(tmp_path / "two"),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=2,
        lora_r=8,
        lora_alpha=16,
        seed=0,
        disable_tqdm=True,
        ddp_backend="gloo",
        **common,
    )
    recipe.write_text(yaml.safe_dump(two_values))
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, str(runner), str(recipe)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    state = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    two = [e for e in state["log_history"] if "loss" in e]
    one = [e for e in single.state.log_history if "loss" in e]
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in ("loss", "loss/dpo", "loss/sft", "rewards/margins", "logps/chosen"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    assert one[-1]["loss"] < one[0]["loss"]
