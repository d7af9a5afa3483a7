"""Response log-probs: shifted gather, masking and reduction, on hand-made logits."""

import copy
import math

import pytest
import torch

from hadpo.train.logps import ResponseLogps, response_logps, token_logps


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


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, pairs_file):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hadpo.models import get_family
    from hadpo.train.data import load_pairs

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir), get_family("llava15"), load_pairs(pairs_file)


def test_response_logps_keeps_only_the_logits_it_needs(tiny):
    from hadpo.train.collate import PreferenceCollator
    from hadpo.train.logps import model_inputs, response_logps

    model, processor, family, pairs = tiny
    batch = PreferenceCollator(processor, family, shared_prefix=False)([{"pair": pair} for pair in pairs[2:5]])
    with torch.no_grad():
        full, mask = token_logps(model(**model_inputs(batch)).logits, batch["labels"])
        out = response_logps(model, batch)
    assert torch.allclose(out.sums, full.sum(-1), atol=1e-5)
    assert out.counts.tolist() == mask.sum(-1).tolist()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_prefix_gives_the_log_probs_and_gradients_of_two_sequences(tiny, attention):
    """fp32, LoRA policy moved off its initialisation: log-probs within 1e-5 per token, gradients within 1e-4 relative
    (pairs of different prompt and response lengths, so rows are padded differently in the two layouts)."""
    from peft import LoraConfig, get_peft_model

    from hadpo.inference.packing import attention_implementation
    from hadpo.train.collate import PreferenceCollator

    model, processor, family, pairs = tiny
    base = copy.deepcopy(model)
    base.set_attn_implementation(attention)
    policy = get_peft_model(base, LoraConfig(r=4, target_modules=family.lora_target_regex))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    assert attention_implementation(policy) == attention
    examples = [{"pair": pair} for pair in (pairs[0], pairs[3], pairs[6])]
    packed, sequences = (
        PreferenceCollator(processor, family, shared_prefix=shared)(examples) for shared in (True, False)
    )
    results = []
    for batch in (packed, sequences):
        policy.zero_grad()
        out = response_logps(policy, batch)
        (out.sums * torch.tensor([1.0, -0.5, 2.0, 0.3, -1.0, 0.7])).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad])
        results.append((out, grads))
    (shared_out, shared_grads), (plain_out, plain_grads) = results
    assert shared_out.counts.tolist() == plain_out.counts.tolist()
    assert ((shared_out.sums - plain_out.sums).abs() / plain_out.counts <= 1e-5).all()  # per token
    assert ((shared_grads - plain_grads).norm() / plain_grads.norm()).item() <= 1e-4
    assert plain_grads.norm() > 0
