"""Response log-probs: shifted gather, masking and reduction, on hand-made logits."""

import math

import pytest
import torch

from hadpo.train.logps import ResponseLogps, token_logps


def test_token_logps_shift_and_mask():
    # Vocabulary of 2; logits at position t predict token t+1. Uniform logits give log(1/2) per token.
    logits = torch.zeros(1, 4, 2)
    logits[0, 2] = torch.tensor([math.log(3.0), 0.0])  # predicts position 3: p(token 0) = 3/4
    labels = torch.tensor([[-100, 1, 0, 0]])  # positions 1..3 are response tokens
    logps, mask = token_logps(logits, labels)
    assert mask.tolist() == [[True, True, True]]
    assert logps[0].tolist() == pytest.approx([math.log(0.5), math.log(0.5), math.log(0.75)])
    labels = torch.tensor([[-100, -100, 0, -100]])
    logps, mask = token_logps(logits, labels)
    assert logps[0].tolist() == pytest.approx([0.0, math.log(0.5), 0.0])


def test_reduction_sum_and_mean():
    out = ResponseLogps(sums=torch.tensor([-6.0, -1.0]), counts=torch.tensor([3, 2]))
    assert out.reduce("sum").tolist() == [-6.0, -1.0]
    assert out.reduce("mean").tolist() == [-2.0, -0.5]
    with pytest.raises(ValueError, match="unknown logps reduction"):
        out.reduce("max")


def test_response_logps_keeps_only_the_logits_it_needs(tiny_model_dir, pairs_file):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hadpo.models import get_family
    from hadpo.train.data import PreferenceCollator, load_pairs
    from hadpo.train.logps import model_inputs, response_logps

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    collator = PreferenceCollator(AutoProcessor.from_pretrained(tiny_model_dir), get_family("llava15"))
    batch = collator([{"pair": pair} for pair in load_pairs(pairs_file)[2:5]])
    with torch.no_grad():
        full, mask = token_logps(model(**model_inputs(batch)).logits, batch["labels"])
        out = response_logps(model, batch)
    assert torch.allclose(out.sums, full.sum(-1), atol=1e-5)
    assert out.counts.tolist() == mask.sum(-1).tolist()
