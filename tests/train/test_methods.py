"""The preference methods after HA-DPO in HADPOTrainer, on the tiny LLaVA: token weights (dense DPO), severity
weights (HSA-DPO), mDPO's conditional and anchor terms, MPO's loss list and OPA-DPO's warm start, each against an
independent computation or an invariant, under every reference mode."""

import pytest
import torch
import torch.nn.functional as F

from hadpo.records import PreferencePair, read_jsonl, write_jsonl
from hadpo.train.collate import PreferenceCollator
from hadpo.train.logps import response_logps
from hadpo.train.run import build_trainer
from hadpo.train.weights import diff_token_masks


@pytest.fixture(scope="module")
def marked_pairs(pairs_file, tmp_path_factory):
    """The training pairs with what `hadpo pairs build` adds: the judge's spans and sentence labels."""
    rows = []
    for pair in read_jsonl(pairs_file, PreferencePair):
        if pair.kind == "desc":
            dog = pair.rejected.index("dog")
            pair.rejected_spans, pair.chosen_spans = [(dog, dog + 3)], [(0, len(pair.chosen))]
            pair.labels = ["hallucination"]
        else:
            pair.chosen_spans, pair.rejected_spans = [(0, len(pair.chosen))], [(0, len(pair.rejected))]
        pair.images = [str(pairs_file.parent / image) for image in pair.images]
        rows.append(pair)
    path = tmp_path_factory.mktemp("marked") / "pairs.jsonl"
    write_jsonl(path, rows)
    return path


def _move_lora(trainer, scale=0.05, seed=2):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(scale * torch.randn(param.shape, generator=generator))


def _batch_loss(trainer, indices=(0, 1, 2, 3)):
    trainer.model.eval()
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in indices]))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    return loss, {k.removeprefix("eval_"): v[-1] for k, v in trainer._metrics.items()}


@pytest.mark.parametrize("weighting", ["diff", "labels"])
def test_token_weighted_loss_equals_an_independent_weighted_sum(make_config, marked_pairs, weighting):
    trainer = build_trainer(
        make_config(pairs=str(marked_pairs), token_weighting=weighting, token_weight=3.0, beta=0.5, reference="copy")
    )
    _move_lora(trainer)
    examples = [trainer.train_dataset[i] for i in range(4)]
    loss, _ = _batch_loss(trainer)
    collator = trainer.data_collator
    # Independently: each response scored alone in the two-sequence layout, its per-token log-probs weighted by the
    # masks worked out here (RLHF-V's diff on the token ids, or the tokens inside the spans), then summed.
    plain = PreferenceCollator(collator.processor, collator.family, shared_prefix=False)([e for e in examples])
    with torch.no_grad():
        logits = {
            m: model(**{k: plain[k] for k in ("input_ids", "attention_mask", "pixel_values")}).logits
            for m, model in (("policy", trainer.model), ("ref", trainer.ref_model))
        }
    weighted = {}
    for name, values in logits.items():
        logps = torch.gather(values[:, :-1].log_softmax(-1), 2, plain["labels"][:, 1:].clamp(min=0)[..., None])[..., 0]
        sums = []
        for row in range(8):
            pair = examples[row % 4]["pair"]
            mask = plain["labels"][row, 1:] != -100
            if weighting == "diff":
                chosen_ids, rejected_ids = (collator.response(t).tolist() for t in (pair.chosen, pair.rejected))
                marks = diff_token_masks(chosen_ids, rejected_ids)[row // 4]
            else:
                text, spans = (pair.chosen, pair.chosen_spans) if row < 4 else (pair.rejected, pair.rejected_spans)
                _, offsets = collator.response_offsets(text)
                marks = [any(s < b and a < e for s, e in spans) for a, b in offsets]
            weights = torch.ones(mask.shape)
            weights[mask] = 1 + 2.0 * torch.tensor(marks, dtype=torch.float32)
            sums.append((logps[row] * weights * mask).sum())
            assert any(marks) and not all(marks) or pair.kind == "qa"
        weighted[name] = torch.stack(sums)
    h = (weighted["policy"][:4] - weighted["ref"][:4]) - (weighted["policy"][4:] - weighted["ref"][4:])
    assert loss == pytest.approx(-F.logsigmoid(0.5 * h).mean().item(), abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"token_weighting": "diff"},
        {"token_weighting": "labels", "pair_weighting": "severity"},
        {"image_conditional_weight": 1.0, "anchor_weight": 1.0, "anchor_delta": 0.1},
        {
            "image_conditional_weight": 0.5,
            "image_corruption": "noise",
            "loss_type": ["sigmoid", "bco_pair", "sft"],
            "loss_weights": [0.8, 0.2, 1.0],
        },
    ],
)
def test_every_reference_mode_gives_the_same_loss_with_the_new_options(make_config, marked_pairs, tmp_path, options):
    """adapters (LoRA off), copy and precomputed references are the same base model, so with the policy's LoRA moved off
    zero the three losses, and every term, agree: the weights and corrupted images reach the reference the same way."""
    results = {}
    for mode in ("adapters", "copy", "precomputed"):
        config = make_config(pairs=str(marked_pairs), reference=mode, output_dir=str(tmp_path / mode), **options)
        trainer = build_trainer(config)
        _move_lora(trainer)
        results[mode] = _batch_loss(trainer)
    loss, metrics = results["adapters"]
    assert abs(loss - 0.693147) > 1e-3
    for mode in ("copy", "precomputed"):
        assert results[mode][0] == pytest.approx(loss, abs=1e-5), mode
        for name, value in metrics.items():
            assert results[mode][1][name] == pytest.approx(value, abs=1e-5), (mode, name)
    if "image_conditional_weight" in options:
        assert "loss/image_conditional" in metrics and "rewards/corrupted_chosen" in metrics
    if "anchor_weight" in options:
        assert "loss/anchor" in metrics
    if isinstance(options.get("loss_type"), list):
        assert {"loss/sigmoid", "loss/bco_pair", "loss/sft"} <= set(metrics)


def test_mdpo_terms_equal_the_formula_on_the_corrupted_images(make_config, marked_pairs):
    trainer = build_trainer(
        make_config(
            pairs=str(marked_pairs),
            reference="copy",
            image_conditional_weight=1.0,
            anchor_weight=0.5,
            beta=0.5,
            image_corruption="noise",  # the test images are solid colours: a crop of one is the same image
        )
    )
    _move_lora(trainer)
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    corrupted = batch["corrupted"]
    assert not torch.equal(corrupted["pixel_values"], batch["pixel_values"])
    assert torch.equal(trainer.data_collator(examples)["corrupted"]["pixel_values"], corrupted["pixel_values"])
    loss, metrics = _batch_loss(trainer)
    trainer.model.eval()
    with torch.no_grad():
        policy, ref = (response_logps(m, batch).reduce("sum") for m in (trainer.model, trainer.ref_model))
        policy_c, ref_c = (response_logps(m, corrupted).reduce("sum") for m in (trainer.model, trainer.ref_model))
    chosen = policy[:4] - ref[:4]
    dpo = -F.logsigmoid(0.5 * (chosen - (policy[4:] - ref[4:]))).mean()
    conditional = -F.logsigmoid(0.5 * (chosen - (policy_c - ref_c))).mean()
    anchor = -F.logsigmoid(0.5 * chosen).mean()
    assert metrics["loss/image_conditional"] == pytest.approx(conditional.item(), abs=1e-5)
    assert metrics["loss/anchor"] == pytest.approx(anchor.item(), abs=1e-5)
    assert loss == pytest.approx((dpo + conditional + 0.5 * anchor).item(), abs=1e-5)


def test_severity_weights_follow_the_labels(make_config, marked_pairs):
    trainer = build_trainer(make_config(pairs=str(marked_pairs), pair_weighting="severity", reference="copy"))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    pairs = [trainer.train_dataset[i]["pair"] for i in range(4)]
    assert batch["pair_severity"].tolist() == [1.0] * 4  # one hallucinated sentence of one; QA pairs: 1
    pairs[0].labels = ["hallucination", "correct", "correct", "correct"]
    assert trainer.data_collator([{"pair": p, "ref": None} for p in pairs])["pair_severity"][0] == 0.25


def test_neutral_settings_train_bit_for_bit_like_the_plain_run(make_config, tmp_path):
    histories = []
    for name, options in {
        "plain": {},
        "diff_at_1": {"token_weighting": "diff", "token_weight": 1.0},
        "list": {"loss_type": ["sigmoid"], "loss_weights": [1.0]},
    }.items():
        trainer = build_trainer(make_config(output_dir=str(tmp_path / name), learning_rate=2e-2, **options))
        trainer.train()
        histories.append([[e["loss"], e["rewards/margins"]] for e in trainer.state.log_history if "loss" in e])
    assert histories[0][-1][1] != 0 and histories[0] == histories[1] == histories[2]


@pytest.mark.parametrize("finetuning, reference", [("lora", "adapters"), ("full", "precomputed")])
def test_warm_start_makes_the_warmed_model_the_reference(make_config, finetuning, reference, tmp_path):
    common = dict(finetuning=finetuning, reference=reference, learning_rate=2e-2)
    plain = build_trainer(make_config(output_dir=str(tmp_path / "plain"), **common))
    warm = build_trainer(make_config(output_dir=str(tmp_path / "warm"), warmup_sft_steps=4, **common))
    info = warm.hadpo_info["warmup"]
    assert info["steps"] == 4 and info["examples"] == 16 and info["loss_last"] < info["loss_first"]
    _, plain_metrics = _batch_loss(plain)
    loss, warm_metrics = _batch_loss(warm)
    # the policy starts as its reference (fresh adapter / the same weights): no reward yet, loss ln 2
    assert loss == pytest.approx(0.693147, abs=1e-5) and warm_metrics["rewards/chosen"] == pytest.approx(0, abs=1e-6)
    # the reference is the warmed model: it gives the chosen answers more probability than the base did
    assert warm_metrics["logps/ref_chosen"] > plain_metrics["logps/ref_chosen"] + 1.0
