"""Catalogue, `hadpo train`: numbers that cannot train (NaN, infinite, out of range), models, folders and data
that cannot be read, a run that diverges, --resume without a checkpoint (docs/errors.md, "hadpo train"); a kill
inside a checkpoint save resumes from the last complete checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from train_helpers import make_pairs

from catalogue import Case, Context, check_documented, run_case, truncated_png
from hadpo.cli import main
from hadpo.errors import RunFailed
from hadpo.records import PreferencePair, read_jsonl, write_jsonl


def _recipe(ctx: Context, *overrides: str, resume: bool = False, **changes) -> list[str]:
    values = dict(
        model_name_or_path=str(ctx.model),
        pairs=str(ctx.pairs),
        output_dir=str(ctx.path("out", "run")),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        lora_r=8,
        max_steps=2,
        save_steps=2,
        disable_tqdm=True,
    )
    config = ctx.write("config", "recipe.yaml", yaml.safe_dump({**values, **changes}))
    return ["train", str(config), *overrides, *(["--resume"] if resume else [])]


def _pairs(ctx: Context, edit=None, rewrites: int = 0) -> str:
    """A pairs file of its own (placeholder {pairs}) with `edit(pairs)` applied; {image} is the first pair's."""
    pairs = make_pairs(ctx.tmp / "data", n_images=2, rewrites=rewrites)
    if edit is not None:
        pairs = edit(pairs) or pairs
    write_jsonl(ctx.path("pairs", "data/pairs.jsonl"), pairs)
    ctx.names["image"] = str(ctx.tmp / "data" / pairs[0].images[0])
    return ctx.names["pairs"]


def _set(**fields):
    def edit(pairs: list[PreferencePair]):
        for name, value in fields.items():
            setattr(pairs[0], name, value(pairs) if callable(value) else value)

    return edit


def _with_pairs(edit=None, **changes):
    def setup(ctx: Context) -> list[str]:
        return _recipe(ctx, pairs=_pairs(ctx, edit), **changes)

    return setup


def _truncated_pair_image(ctx: Context) -> list[str]:
    path = _pairs(ctx)
    truncated_png(ctx.tmp / "data" / "images" / "0.png")
    return _recipe(ctx, pairs=path)


def _truncated_sft_image(ctx: Context) -> list[str]:
    image = truncated_png(ctx.path("image", "sft/0.png"))
    sft = ctx.write("sft", "sft.jsonl", json.dumps({"images": [str(image)], "prompt": "Describe.", "response": "A."}))
    return _recipe(ctx, gamma=0.5, sft_data=str(sft))


def _model_missing(ctx: Context) -> list[str]:
    return _recipe(ctx, model_name_or_path=str(ctx.path("model", "runs/base/model")))


def _output_dir_under_a_file(ctx: Context) -> list[str]:
    ctx.write("file", "taken", "a file\n")
    argv = _recipe(ctx)
    ctx.names["out"] = f"{ctx.names['file']}/run"
    return [*argv, f"output_dir={ctx.names['out']}"]


def _pairs_folder(ctx: Context) -> list[str]:
    ctx.path("pairs", "pairs_folder").mkdir()
    return _recipe(ctx, pairs=ctx.names["pairs"])


def _pairs_text(text: str):
    return lambda ctx: _recipe(ctx, pairs=str(ctx.write("pairs", "data/pairs.jsonl", text)))


CASES = [
    Case(
        "train-beta-nan",
        "`beta: .nan`",
        lambda ctx: _recipe(ctx, beta=float("nan")),
        "{config}: config key 'beta' must be a finite number, got nan",
    ),
    Case(
        "train-learning-rate-inf",
        "`learning_rate=inf` on the command line",
        lambda ctx: _recipe(ctx, "learning_rate=inf"),
        "{config}: config key 'learning_rate' must be a finite number, got inf",
    ),
    Case(
        "train-gamma-nan",
        "`gamma: .nan` (would silently turn the SFT term off)",
        lambda ctx: _recipe(ctx, gamma=float("nan"), sft_data="sft.jsonl"),
        "{config}: config key 'gamma' must be a finite number, got nan",
    ),
    Case(
        "train-learning-rate-negative",
        "`learning_rate: -0.001`",
        lambda ctx: _recipe(ctx, learning_rate=-0.001),
        "{config}: config key 'learning_rate' must be > 0, got -0.001",
    ),
    Case(
        "train-lora-dropout",
        "`lora_dropout: 1.5`",
        lambda ctx: _recipe(ctx, lora_dropout=1.5),
        "{config}: config key 'lora_dropout' must be in [0, 1), got 1.5",
    ),
    Case(
        "train-lora-r-zero",
        "`lora_r: 0`",
        lambda ctx: _recipe(ctx, lora_r=0),
        "{config}: config key 'lora_r' must be >= 1, got 0",
    ),
    Case(
        "train-unknown-key",
        "a misspelt key",
        lambda ctx: _recipe(ctx, betaa=0.1),
        "{config}: unknown config key 'betaa' (did you mean 'beta'?)",
    ),
    Case(
        "train-pairs-required",
        "no `pairs`",
        lambda ctx: _recipe(ctx, pairs=""),
        "{config}: config key 'pairs' is required",
    ),
    Case(
        "train-model-missing",
        "`model_name_or_path` naming a folder that does not exist",
        _model_missing,
        "config key 'model_name_or_path': {model}: no such model folder (nor a hub id 'org/name')",
        absent=("run",),
    ),
    Case(
        "train-output-dir-under-a-file",
        "`output_dir` inside a path that is a file",
        _output_dir_under_a_file,
        "output_dir {out}: {file} exists and is not a folder",
    ),
    Case(
        "train-pairs-missing",
        "a pairs file that does not exist",
        lambda ctx: _recipe(ctx, pairs=str(ctx.path("pairs", "nope.jsonl"))),
        "{pairs}: no such file or directory",
    ),
    Case("train-pairs-folder", "a folder given as the pairs file", _pairs_folder, "{pairs}: is a directory"),
    Case("train-pairs-empty", "an empty pairs file", _pairs_text(""), "{pairs}: no preference pairs", absent=("run",)),
    Case(
        "train-pairs-not-json",
        "a pairs line that is not JSON",
        _pairs_text("{'chosen': 'A.'}\n"),
        "{pairs}:1: not valid JSON (Expecting property name enclosed in double quotes)",
    ),
    Case(
        "train-pairs-missing-field",
        "a pair without its rejected text",
        _pairs_text(
            json.dumps(
                {"images": ["a.png"], "prompt": "Q?", "chosen": "A.", "kind": "qa", "image_id": "0", "pair_id": "q0"}
            )
            + "\n"
        ),
        "{pairs}:1: field 'rejected': Field required",
    ),
    Case(
        "train-pairs-duplicate-id",
        "two pairs under one pair_id",
        _with_pairs(_set(pair_id="q0")),
        "{pairs}: pair 'q0': duplicate pair_id",
    ),
    Case(
        "train-pairs-identical",
        "a pair whose chosen equals its rejected",
        _with_pairs(_set(rejected=lambda pairs: pairs[0].chosen)),
        "{pairs}: pair 'd0-0': chosen and rejected are identical",
    ),
    Case(
        "train-pairs-image-missing",
        "a pair whose image does not exist",
        _with_pairs(_set(images=["gone.png"])),
        "{pairs}: pair 'd0-0': image not found: {tmp}/data/gone.png",
    ),
    Case(
        "train-pairs-image-truncated",
        "a truncated PNG (found when the pairs load, not mid-training)",
        _truncated_pair_image,
        "{pairs}: pair 'd0-0': unreadable image (OSError: …): {image}",
        absent=("run",),
    ),
    Case(
        "train-sft-image-truncated",
        "a truncated PNG in the auxiliary SFT data",
        _truncated_sft_image,
        "{sft}: SFT example 1: unreadable image (OSError: …): {image}",
    ),
    Case(
        "train-too-long",
        "`max_length` below a pair's length with `too_long: error`",
        _with_pairs(max_length=8, too_long="error"),
        "{pairs}: pair 'd0-0': … tokens (prompt … with image tokens) exceed max_length 8; raise max_length or set "
        "too_long=drop",
    ),
    Case(
        "train-resume-without-checkpoint",
        "`--resume` with no checkpoint in output_dir",
        lambda ctx: _recipe(ctx, resume=True),
        "--resume: no complete checkpoint in output_dir {out}; run without --resume to start over",
    ),
    Case(
        "train-loss-type-unknown",
        "a loss type hadpo does not have in the `loss_type` list",
        lambda ctx: _recipe(ctx, "loss_type=[sigmoid,kto]"),
        "{config}: config key 'loss_type': 'kto' is not one of sigmoid, ipo, hinge, robust, exo_pair, nca_pair, "
        "bco_pair, sppo_hard, apo_zero, apo_down, sft",
    ),
    Case(
        "train-loss-weights-count",
        "`loss_weights` with another length than `loss_type`",
        lambda ctx: _recipe(ctx, loss_type=["sigmoid", "bco_pair", "sft"], loss_weights=[0.8, 0.2]),
        "{config}: config key 'loss_weights': [0.8, 0.2] must be a list of 3 numbers, one per loss_type "
        "['sigmoid', 'bco_pair', 'sft']",
    ),
    Case(
        "train-token-weighting-unknown",
        "`token_weighting: dense` (not a mode)",
        lambda ctx: _recipe(ctx, token_weighting="dense"),
        "{config}: config key 'token_weighting': 'dense' is not one of none, diff, labels",
    ),
    Case(
        "train-token-weighting-labels-without-spans",
        "`token_weighting: labels` on pairs without the judge's spans",
        _with_pairs(token_weighting="labels"),
        "{pairs}: pair 'd0-0': no chosen_spans or rejected_spans; token_weighting=labels needs the spans the judge "
        "marked (`hadpo pairs build` writes them), or use token_weighting=diff",
        absent=("run",),
    ),
    Case(
        "train-severity-without-labels",
        "`pair_weighting: severity` on description pairs without labels or severity",
        _with_pairs(pair_weighting="severity"),
        "{pairs}: pair 'd0-0' has neither `severity` nor sentence `labels`; pair_weighting=severity needs one (pairs "
        "from `hadpo pairs build` carry labels)",
        absent=("run",),
    ),
    Case(
        "train-corruption-scale",
        "`image_corruption_scale: [0.5, 0.2]` (low above high)",
        lambda ctx: _recipe(ctx, image_conditional_weight=1.0, image_corruption_scale=[0.5, 0.2]),
        "{config}: config key 'image_corruption_scale': [0.5, 0.2] must be [low, high] with 0 < low <= high <= 1",
    ),
    Case(
        "train-warmup-with-reference-weights",
        "`warmup_sft_steps` with a `ref_model_name_or_path` (the reference is the warmed model)",
        lambda ctx: _recipe(ctx, warmup_sft_steps=5, reference="copy", ref_model_name_or_path=str(ctx.model)),
        "{config}: config key 'ref_model_name_or_path': with warmup_sft_steps the reference is the warmed model; "
        "unset it",
    ),
    Case(
        "train-rejected-images-missing",
        "an image-contrast pair whose `rejected_images` file does not exist",
        _with_pairs(_set(rejected_images=lambda pairs: ["gone.png"])),
        "{pairs}: pair 'd0-0': image not found: {tmp}/data/gone.png",
    ),
    Case(
        "train-diverges",
        "a learning rate that makes the loss NaN (`learning_rate: 1e30`)",
        lambda ctx: _recipe(ctx, learning_rate=1e30, max_steps=4),
        "training step 2: non-finite loss/dpo = nan, rewards/chosen = nan, rewards/rejected = nan on pairs …; "
        "stopped before the update (lower learning_rate, or check these pairs)",
        code=1,
        absent=("run/checkpoint-2", "run/adapter_model.safetensors"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_training_input_is_one_line(case, tmp_path, monkeypatch, tiny_model_dir, pairs_file, capsys):
    ctx = Context(tmp_path, monkeypatch)
    ctx.model, ctx.pairs = tiny_model_dir, pairs_file
    ctx.names["tmp"] = str(tmp_path)
    run_case(case, ctx, capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)


def test_a_non_finite_gradient_stops_before_the_optimizer_step():
    from accelerate import Accelerator
    from transformers import TrainingArguments

    from hadpo.train.trainer import _StopOnNonFiniteGradients

    class Trainer:
        accelerator = Accelerator(cpu=True)
        pair_ids_this_step = ["d0-1", "q3"]

        def step_pair_ids(self):
            return ", ".join(self.pair_ids_this_step)

    model = torch.nn.Linear(2, 2)
    model(torch.ones(1, 2)).sum().backward()
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    state = type("State", (), {"global_step": 6})()
    callback = _StopOnNonFiniteGradients(Trainer())
    callback.on_pre_optimizer_step(args, state, None, model=model)  # finite: goes on
    model.bias.grad[0] = float("inf")
    with pytest.raises(
        RunFailed,
        match=r"^step 7: non-finite gradients \(1 parameters here, e.g. bias\) on pairs "
        r"d0-1, q3; stopped before the optimizer step",
    ):
        callback.on_pre_optimizer_step(args, state, None, model=model)


KILL_IN_SAVE = """
import json, os, signal, sys
from transformers import Trainer, TrainerCallback
from hadpo.config import load_config
from hadpo.train.config import HADPOConfig
from hadpo.train.run import run_training

save_rng_state = Trainer._save_rng_state

def killed_in_the_save(self, output_dir):  # weights and optimizer written, trainer_state.json not yet
    if self.state.global_step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return save_rng_state(self, output_dir)

class Losses(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            print("LOSS", json.dumps({"step": state.global_step, "loss": logs["loss"]}), flush=True)

Trainer._save_rng_state = killed_in_the_save
run_training(load_config(HADPOConfig, sys.argv[1]), callbacks=[Losses()])
"""


def test_a_kill_inside_a_checkpoint_save_resumes_from_the_last_complete_one(
    tmp_path, tiny_model_dir, pairs_file, caplog
):
    ctx = Context(tmp_path)
    ctx.model, ctx.pairs = tiny_model_dir, pairs_file
    argv = _recipe(ctx, max_steps=6, save_steps=2)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILL_IN_SAVE))
    killed = subprocess.run(
        [sys.executable, str(script), argv[1]],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "checkpoint-4").is_dir() and not (run / "checkpoint-4" / "trainer_state.json").exists()
    logged = [json.loads(line.removeprefix("LOSS ")) for line in killed.stdout.splitlines() if line.startswith("LOSS ")]
    before_kill = {entry["step"]: entry["loss"] for entry in logged}

    assert main([*argv, "--resume"]) == 0
    assert "checkpoint-4: incomplete checkpoint (the save was interrupted)" in caplog.text
    state = json.loads((run / "trainer_state.json").read_text())
    resumed = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert state["global_step"] == 6 and sorted(resumed) == [1, 2, 3, 4, 5, 6]
    # Steps 3 and 4 were trained again from checkpoint-2, as the killed run trained them.
    assert [resumed[step] for step in (3, 4)] == pytest.approx([before_kill[step] for step in (3, 4)], abs=1e-5)
    assert json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4


def test_resume_with_only_a_torn_checkpoint_is_one_line(tmp_path, tiny_model_dir, pairs_file, capsys):
    ctx = Context(tmp_path)
    ctx.model, ctx.pairs = tiny_model_dir, pairs_file
    argv = _recipe(ctx, resume=True)
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "log_hi')
    assert main(argv) == 2
    assert capsys.readouterr().err.endswith(
        f"no complete checkpoint in output_dir {tmp_path / 'run'} (1 incomplete); run without --resume to start over\n"
    )


def test_pairs_with_a_truncated_image_are_refused_when_loaded(tmp_path):
    from hadpo.train.data import load_pairs

    make_pairs(tmp_path, n_images=2, rewrites=0)
    truncated_png(tmp_path / "images" / "1.png")
    with pytest.raises(ValueError, match=r"pair 'd1-0': unreadable image"):
        load_pairs(tmp_path / "pairs.jsonl")
    assert len(read_jsonl(tmp_path / "pairs.jsonl", PreferencePair)) == 4
