"""HADPOTrainer on a tiny LLaVA: the loss against an independent computation, the three reference modes,
what trains and what stays frozen, the auxiliary SFT term, saving and loading."""

import json

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForImageTextToText

from hadpo.config import load_config
from hadpo.train.collate import PreferenceCollator
from hadpo.train.config import HADPOConfig
from hadpo.train.run import build_trainer, run_training


def _perturb(module, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def _independent_logps(model, batch, row):
    """log pi(response | prompt, image) for one sequence, run alone without padding, token by token."""
    keep = batch["attention_mask"][row].bool()
    ids, labels = batch["input_ids"][row][keep], batch["labels"][row][keep]
    with torch.no_grad():
        logits = model(input_ids=ids[None], pixel_values=batch["pixel_values"][row : row + 1]).logits[0]
    total = 0.0
    for t in range(1, len(ids)):
        if labels[t] != -100:
            total += torch.log_softmax(logits[t - 1].double(), dim=-1)[labels[t]].item()
    return total, int((labels != -100).sum())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_batch_loss_rewards_and_logps_equal_an_independent_computation(make_config, reduction):
    trainer = build_trainer(make_config(reference="copy", beta=0.3, logps_reduction=reduction))
    # The reference differs from the policy both ways: a perturbed copy, and LoRA B matrices moved off zero.
    _perturb(trainer.ref_model, 0.02, seed=1)
    _perturb(torch.nn.ModuleList([m for n, m in trainer.model.named_modules() if n.endswith("lora_B")]), 0.05, 2)
    trainer.model.eval()
    dataset = trainer.train_dataset
    examples = [dataset[0], dataset[1], dataset[2]]
    assert trainer.hadpo_info["pair_forward"] == "shared prefix" and "branch_ids" in trainer.data_collator(examples)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(examples)).item()

    n = 3
    # Each of the 2n sequences (prompt + one response) scored alone, from the two-sequence layout's rows.
    collator = trainer.data_collator
    sequences = PreferenceCollator(collator.processor, collator.family, shared_prefix=False)(examples)
    policy, ref = [], []
    for row in range(2 * n):
        for model, out in ((trainer.model, policy), (trainer.ref_model, ref)):
            total, count = _independent_logps(model, sequences, row)
            out.append(total / count if reduction == "mean" else total)
    pc, pr, rc, rr = (torch.tensor(x, dtype=torch.float64) for x in (policy[:n], policy[n:], ref[:n], ref[n:]))
    expected_losses = -F.logsigmoid(0.3 * ((pc - rc) - (pr - rr)))
    assert abs(loss - expected_losses.mean().item()) <= 1e-5
    assert abs(expected_losses.mean().item() - 0.693147) > 1e-3  # the check is not the trivial ln 2
    metrics = {k: v[-1] for k, v in trainer._metrics.items()}
    expected = {
        "rewards/chosen": (0.3 * (pc - rc)).mean(),
        "rewards/rejected": (0.3 * (pr - rr)).mean(),
        "rewards/margins": (0.3 * ((pc - rc) - (pr - rr))).mean(),
        "rewards/accuracies": ((pc - rc) > (pr - rr)).double().mean(),
        "logps/chosen": pc.mean(),
        "logps/rejected": pr.mean(),
        "logps/ref_chosen": rc.mean(),
        "logps/ref_rejected": rr.mean(),
    }
    for name, value in expected.items():
        assert abs(metrics[f"eval_{name}"] - value.item()) <= 1e-5, name


def _history(trainer, keys=("loss", "rewards/chosen", "rewards/rejected")):
    return [[entry[k] for k in keys] for entry in trainer.state.log_history if "loss" in entry]


def test_three_reference_modes_agree_over_three_steps(make_config, tmp_path):
    histories = {}
    for mode in ("adapters", "copy", "precomputed"):
        config = make_config(reference=mode, output_dir=str(tmp_path / mode), learning_rate=2e-2)
        trainer = build_trainer(config)
        trainer.train()
        histories[mode] = _history(trainer)
    assert len(histories["adapters"]) == 3
    assert abs(histories["adapters"][-1][1]) > 1e-3  # the policy has moved away from the reference
    for mode in ("copy", "precomputed"):
        for a, b in zip(histories["adapters"], histories[mode]):
            assert a == pytest.approx(b, abs=1e-5), mode
    assert list((tmp_path / "precomputed").glob("reference_logps-*.json"))


def test_shared_prefix_and_two_sequences_train_the_same(make_config, tmp_path):
    histories = {}
    for shared in (True, False):
        trainer = build_trainer(make_config(shared_prefix=shared, output_dir=str(tmp_path / str(shared))))
        assert trainer.data_collator.shared_prefix is shared
        assert trainer.hadpo_info["pair_forward"] == ("shared prefix" if shared else "two sequences")
        trainer.train()
        histories[shared] = _history(trainer)
    assert abs(histories[True][-1][1]) > 1e-3  # the policy has moved away from the reference
    for a, b in zip(histories[True], histories[False]):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_model_without_block_masks_falls_back_to_two_sequences_and_says_so(make_config, caplog):
    from hadpo.train import run

    model = AutoModelForImageTextToText.from_pretrained(make_config().model_name_or_path)
    assert run._shared_prefix(make_config(), model, None)
    model.config.get_text_config()._attn_implementation = "flash_attention_2"
    with caplog.at_level("WARNING", logger="hadpo.train.run"):
        assert not run._shared_prefix(make_config(), model, None)
    assert (
        "two sequences per pair (the model cannot share the prefix: its attention implementation "
        "'flash_attention_2' takes no block mask" in caplog.text
    )


def _snapshot(model):
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@pytest.mark.parametrize(
    "finetuning, overrides",
    [("lora", {}), ("lora", {"freeze_projector": False}), ("full", {"reference": "copy"})],
)
def test_trainable_parameters_change_and_frozen_ones_do_not(make_config, finetuning, overrides):
    trainer = build_trainer(make_config(finetuning=finetuning, max_steps=2, **overrides))
    before = _snapshot(trainer.model)
    trainer.train()
    changed = {name for name, param in trainer.model.named_parameters() if not torch.equal(param, before[name])}
    trainable = {name for name, param in trainer.model.named_parameters() if param.requires_grad}
    assert changed and changed <= trainable
    assert not any("vision_tower" in name for name in changed)
    projector = {name for name in changed if "multi_modal_projector" in name}
    assert bool(projector) == (overrides.get("freeze_projector") is False)
    if finetuning == "lora":
        assert all("lora_" in name or "modules_to_save" in name for name in changed)
        assert any("language_model" in name and "lora_A" in name for name in changed)
    else:
        assert any("language_model.layers.0.self_attn.q_proj" in name for name in changed)


def test_auxiliary_sft_loss_is_added_per_ratio(make_config, image_records):
    trainer = build_trainer(make_config(gamma=0.5, sft_data=str(image_records), sft_ratio=0.5, max_steps=4))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    with_sft = [entry["step"] for entry in logs if "loss/sft" in entry]
    assert with_sft == [2, 4]  # one auxiliary batch every other DPO batch
    for entry in logs:
        expected = entry["loss/dpo"] + 0.5 * entry.get("loss/sft", 0.0)
        assert entry["loss"] == pytest.approx(expected, abs=1e-5)
    assert all(entry["speed/pairs_per_second"] > 0 and entry["speed/tokens_per_second"] > 0 for entry in logs)


def test_save_and_load_roundtrip(make_config, tiny_model_dir, tmp_path):
    config = make_config(max_steps=2, merge_adapter=True, chosen_sft_weight=0.1)
    trainer = run_training(config)
    out = tmp_path / "run"
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(**inputs).logits
        base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
        loaded = PeftModel.from_pretrained(base, out).eval()(**inputs).logits
        merged = AutoModelForImageTextToText.from_pretrained(out / "merged").eval()(**inputs).logits
    assert torch.allclose(trained, loaded, atol=1e-5) and torch.allclose(trained, merged, atol=1e-4)
    card = (out / "README.md").read_text()
    assert f"base_model: {tiny_model_dir}" in card and "beta 0.1" in card and '"pairs": 16' in card
    resolved = load_config(HADPOConfig, out / "hadpo_config.yaml")
    assert resolved.chosen_sft_weight == 0.1 and resolved.max_steps == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert any("loss/chosen_sft" in entry for entry in state["log_history"])


def test_held_out_pairs_are_evaluated_with_metrics(make_config, pairs_file):
    trainer = build_trainer(
        make_config(eval_pairs=str(pairs_file), eval_strategy="steps", eval_steps=2, reference="precomputed")
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in evals][0] == 2
    assert {"eval_rewards/accuracies", "eval_logps/ref_chosen", "eval_loss/dpo"} <= set(evals[0])
    assert evals[0]["eval_loss"] == pytest.approx(evals[0]["eval_loss/dpo"], abs=1e-6)


def test_gradient_accumulation_matches_the_larger_batch(make_config, image_records, tmp_path):
    common = dict(gamma=0.5, sft_data=str(image_records), learning_rate=2e-2)
    histories = []
    for batch, accumulation in ((4, 1), (2, 2)):
        config = make_config(
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            output_dir=str(tmp_path / f"b{batch}"),
            **common,
        )
        trainer = build_trainer(config)
        trainer.train()
        histories.append(_history(trainer, ("loss", "loss/sft", "rewards/margins")))
    assert len(histories[0]) == 3
    for a, b in zip(*histories):
        assert a == pytest.approx(b, abs=1e-5)
