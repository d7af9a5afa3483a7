"""Precomputed reference log-probs: keyed by example (images included) and reference model, reused, and a
separate reference checkpoint gives the same training as a frozen copy of it."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from hadpo.models import get_family
from hadpo.train.collate import PreferenceCollator
from hadpo.train.data import load_pairs
from hadpo.train.reference import example_key, model_fingerprint, precompute_reference
from hadpo.train.run import build_trainer


class Refuses(torch.nn.Module):
    def forward(self, **kwargs):
        raise AssertionError("the cache should have answered")


def test_cache_is_reused_and_keyed_by_image_content(tiny_model_dir, pairs_file, tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    collator = PreferenceCollator(AutoProcessor.from_pretrained(tiny_model_dir), get_family("llava15"))
    pairs = load_pairs(pairs_file)[:5]
    fingerprint = model_fingerprint(model, "tiny")
    first = precompute_reference(model, pairs, collator, tmp_path, fingerprint=fingerprint, batch_size=2)
    again = precompute_reference(Refuses(), pairs, collator, tmp_path, fingerprint=fingerprint)
    assert again == first and len(first) == 5
    stored = json.loads(next(tmp_path.glob("reference_logps-*.json")).read_text())
    assert stored["model"] == fingerprint and len(stored["entries"]) == 5
    chosen_sum, chosen_tokens, rejected_sum, rejected_tokens = first[pairs[0].pair_id]
    assert chosen_sum < 0 and rejected_sum < 0 and chosen_tokens > 0 and rejected_tokens > 0

    key = example_key(pairs[0], collator)
    copy = tmp_path / "other.png"
    Image.new("RGB", (48, 48), (1, 2, 3)).save(copy)
    moved = pairs[0].model_copy(update={"images": [str(copy)]})
    assert example_key(moved, collator) != key  # same text, different image: a different example
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    assert model_fingerprint(model, "tiny") != fingerprint


def test_separate_reference_checkpoint_copy_and_precomputed_agree(make_config, tiny_model_dir, tmp_path):
    reference = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))
    reference.save_pretrained(tmp_path / "reference")
    histories = {}
    for mode in ("copy", "precomputed"):
        config = make_config(
            reference=mode,
            ref_model_name_or_path=str(tmp_path / "reference"),
            output_dir=str(tmp_path / mode),
        )
        trainer = build_trainer(config)
        trainer.train()
        histories[mode] = [(e["loss"], e["logps/ref_chosen"]) for e in trainer.state.log_history if "loss" in e]
    assert abs(histories["copy"][0][0] - 0.693147) > 1e-3  # the reference differs from the policy at step 1
    for a, b in zip(histories["copy"], histories["precomputed"]):
        assert a == pytest.approx(b, abs=1e-5)


def test_two_ranks_share_the_scoring_and_merge_one_cache(tiny_model_dir, pairs_file, tmp_path):
    import threading

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    collator = PreferenceCollator(AutoProcessor.from_pretrained(tiny_model_dir), get_family("llava15"))
    pairs = load_pairs(pairs_file)[:7]
    fingerprint = model_fingerprint(model, "tiny")
    single = precompute_reference(model, pairs, collator, tmp_path / "one", fingerprint=fingerprint)

    # A timeout: a rank that fails must not leave the other waiting at the barrier for ever.
    barrier = threading.Barrier(2, timeout=120)
    results = {}
    # One processor per rank, as each process has its own: a Rust tokenizer shared by two threads is not safe.
    collators = [
        PreferenceCollator(AutoProcessor.from_pretrained(tiny_model_dir), get_family("llava15")) for _ in (0, 1)
    ]

    def rank(index):
        results[index] = precompute_reference(
            model,
            pairs,
            collators[index],
            tmp_path / "two",
            fingerprint=fingerprint,
            rank=index,
            world_size=2,
            barrier=barrier.wait,
        )

    threads = [threading.Thread(target=rank, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == results[1]
    for pair_id, values in single.items():
        assert results[0][pair_id] == pytest.approx(values, abs=1e-4)
    assert [p.name for p in (tmp_path / "two").iterdir()] == [f"reference_logps-{fingerprint[:16]}.json"]
