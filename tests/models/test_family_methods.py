"""The preference methods after HA-DPO (docs/methods.md) on every family's tiny model: every option at once, the
reference mode turning through adapters, copy and precomputed across the families."""

import pytest
import torch

from hadpo.config import load_config
from hadpo.records import PreferencePair, read_jsonl, write_jsonl
from hadpo.text import sentence_spans, split_sentences
from hadpo.train.config import HADPOConfig
from hadpo.train.run import build_trainer

REFERENCE = {
    "llava15": "adapters",
    "llava_next": "copy",
    "qwen2_vl": "precomputed",
    "qwen2_5_vl": "adapters",
    "instructblip_llama": "copy",
    "instructblip_t5": "precomputed",
    "minigpt4_vicuna": "precomputed",
    "minigpt4_llama2": "copy",
}


@pytest.fixture(scope="module")
def judged_pairs(family_pairs, tmp_path_factory):
    """The family pairs with what `hadpo pairs build` adds: sentence labels and the judge's spans."""
    rows = []
    for pair in read_jsonl(family_pairs, PreferencePair):
        pair.images = [str(family_pairs.parent / image) for image in pair.images]
        if pair.kind == "desc":
            sentences = split_sentences(pair.rejected)
            pair.labels = ["hallucination"] * len(sentences)
            pair.rejected_spans = sentence_spans(pair.rejected, sentences, [True] * len(sentences))
            pair.chosen_spans = [(0, len(pair.chosen))]
        else:
            pair.chosen_spans, pair.rejected_spans = [(0, len(pair.chosen))], [(0, len(pair.rejected))]
        rows.append(pair)
    path = tmp_path_factory.mktemp("judged") / "pairs.jsonl"
    write_jsonl(path, rows)
    return path


def test_every_method_option_trains_on_every_family(family_model, judged_pairs, tmp_path):
    reference = REFERENCE[family_model.case]
    values = dict(
        model_name_or_path=str(family_model.folder),
        pairs=str(judged_pairs),
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=3,
        per_device_eval_batch_size=6,
        learning_rate=2e-2,
        lora_r=8,
        lora_alpha=16,
        max_steps=2,
        seed=0,
        disable_tqdm=True,
        beta=0.5,
        reference=reference,
        finetuning="full" if reference == "precomputed" and family_model.case.startswith("minigpt") else "lora",
        token_weighting="labels",
        pair_weighting="severity",
        image_conditional_weight=1.0,
        image_corruption="noise",  # the test images are solid colours: a crop of one is the same image
        anchor_weight=1.0,
        loss_type=["sigmoid", "bco_pair", "sft"],
        loss_weights=[0.8, 0.2, 1.0],
        warmup_sft_steps=1,
    )
    trainer = build_trainer(load_config(HADPOConfig, None, values))
    assert trainer.hadpo_info["warmup"]["steps"] == 1
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    expected = {"loss/sigmoid", "loss/bco_pair", "loss/sft", "loss/image_conditional", "loss/anchor"}
    assert len(logs) == 2 and all(expected <= set(entry) for entry in logs)
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    changed = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed
