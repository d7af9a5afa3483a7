"""Each family the way a user runs it, on its tiny random model: `hadpo pairs build` (the model describes the
images, the offline judge makes pairs), a few DPO steps that lower the loss, `hadpo eval pope run` with the
trained adapter, and the saved adapter reloaded (as the evaluation loads it) giving the trained log-probs. Also:
training turns off every dropout, those the configs hold as plain floats included."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from hadpo.cli import main
from hadpo.config import load_config
from hadpo.inference import load_model
from hadpo.records import Answer, Description, PreferencePair, read_jsonl
from hadpo.train.config import HADPOConfig
from hadpo.train.logps import response_logps
from hadpo.train.run import build_trainer, save_outputs
from hadpo.train.run import load_model as load_for_training


def _train_config(folder, pairs, out, **overrides) -> HADPOConfig:
    values = dict(
        model_name_or_path=str(folder),
        pairs=str(pairs),
        output_dir=str(out),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        lora_r=8,
        lora_alpha=16,
        max_steps=15,
        seed=0,
        disable_tqdm=True,
        beta=0.5,
    )
    return load_config(HADPOConfig, None, values, overrides)


def test_describe_pairs_train_and_eval_with_the_adapter(family_model, image_records, tmp_path, capsys):
    folder = family_model.folder
    build = tmp_path / "build.yaml"
    build.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "pairs"),
                "source": {"kind": "folder", "images": str(image_records)},
                "describe": {"model": str(folder), "per_image": 1, "batch_size": 4, "max_new_tokens": 8},
                "judge": {"extra_names": ["dog", "cup", "circle", "square"]},
                "qa": {"co_occurrence_per_image": 1},
            }
        )
    )
    assert main(["pairs", "build", str(build)]) == 0
    descriptions = read_jsonl(tmp_path / "pairs" / "descriptions.jsonl", Description)
    assert len(descriptions) == 4 and descriptions[0].model == str(folder)
    pairs = read_jsonl(tmp_path / "pairs" / "pairs.jsonl", PreferencePair)
    assert any(pair.kind == "qa" for pair in pairs)

    trainer = build_trainer(_train_config(folder, tmp_path / "pairs" / "pairs.jsonl", tmp_path / "run"))
    before = trainer.evaluate(trainer.train_dataset)["eval_loss"]
    trainer.train()
    after = trainer.evaluate(trainer.train_dataset)["eval_loss"]
    # Steady full-batch steps on six question pairs; the margin is well above float noise (the policy starts
    # equal to its reference, loss ln 2).
    assert before == pytest.approx(0.693147, abs=1e-4) and after < before - 0.02
    save_outputs(trainer)

    assert (
        main(
            [
                "eval",
                "pope",
                "build",
                "--annotations",
                str(image_records),
                "--out",
                str(tmp_path / "pope"),
                "--per-image",
                "1",
                "--splits",
                "random",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for model, out in ((tmp_path / "run", tmp_path / "eval"), (folder, tmp_path / "eval_base")):
        assert (
            main(
                [
                    "eval",
                    "pope",
                    "run",
                    "--questions",
                    str(tmp_path / "pope" / "pope_random.jsonl"),
                    "--model",
                    str(model),
                    "--out",
                    str(out),
                    "--mode",
                    "logits",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "eval",
                "chair",
                "--annotations",
                str(image_records),
                "--model",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "eval"),
                "--max-new-tokens",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["chair"]["captions"] + results["chair"]["skipped"] == 4  # one caption per image
    questions = (tmp_path / "pope" / "pope_random.jsonl").read_text().count("\n")
    assert results["model"] == str(tmp_path / "run") and results["pope"]["splits"]["random"]["n"] == questions
    trained = [a.margin for a in read_jsonl(tmp_path / "eval" / "answers_random_logits.jsonl", Answer)]
    base = [a.margin for a in read_jsonl(tmp_path / "eval_base" / "answers_random_logits.jsonl", Answer)]
    assert trained != pytest.approx(base, abs=1e-4)  # the evaluation really ran the adapter

    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    trainer.model.eval()
    reloaded, _ = load_model(tmp_path / "run")  # adapter folder -> base model + adapter, as `hadpo eval` loads it
    with torch.no_grad():
        assert torch.allclose(
            response_logps(trainer.model, batch).sums, response_logps(reloaded, batch).sums, atol=1e-4
        )


# The tiny InstructBLIP and MiniGPT-4 keep dropout 0.1 in the vision attention, the Q-Former and the language
# model, several of them floats handed to the attention function rather than `nn.Dropout`s.
DROPOUT_CASES = ["instructblip_llama", "instructblip_t5", "minigpt4_vicuna", "minigpt4_llama2"]


@pytest.mark.parametrize("family_model", DROPOUT_CASES, indirect=True)
def test_training_turns_every_dropout_off(family_model, family_pairs, tmp_path):
    build = build_trainer(_train_config(family_model.folder, family_pairs, tmp_path))
    batch = build._prepare_inputs(build.data_collator([build.train_dataset[i] for i in range(4)]))

    def two_forwards(disable: bool) -> tuple[torch.Tensor, torch.Tensor]:
        config = _train_config(family_model.folder, family_pairs, tmp_path, disable_dropout=disable)
        model = load_for_training(str(family_model.folder), config).train()
        with torch.no_grad():
            return response_logps(model, batch).sums, response_logps(model, batch).sums

    first, second = two_forwards(disable=True)
    assert torch.equal(first, second)
    first, second = two_forwards(disable=False)  # the check can fail: dropout on, the forwards differ
    assert not torch.allclose(first, second)
