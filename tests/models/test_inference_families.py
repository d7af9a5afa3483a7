"""`hadpo.inference` asks every family in its own format: InstructBLIP's plain instruction (no chat template),
MiniGPT-4's template, a FlanT5 answering in its decoder. The yes/no log-probs the evaluation reads are the ones
training computes for the same answer."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from hadpo.inference import ANSWER_VARIANTS, answer_token_ids, chat_prompt
from hadpo.inference import load_model as load_for_inference
from hadpo.inference.yes_no import answer_log_probs, decoder_answer_log_probs
from hadpo.models import decoder_start_token_id
from hadpo.records import SFTExample
from hadpo.train.collate import SFTCollator
from hadpo.train.logps import token_logps


@pytest.mark.parametrize("family_model", ["instructblip_llama", "instructblip_t5"], indirect=True)
def test_instructblip_is_asked_the_plain_instruction(family_model):
    _, processor = load_for_inference(family_model.folder)
    assert getattr(processor, "chat_template", None) is None  # what stopped `hadpo eval` before
    assert chat_prompt(processor, "Is there a dog?", family_model.family) == "Is there a dog?"


def test_yes_no_log_probs_are_the_ones_training_computes(family_model, tmp_path):
    """log P(answer word | image, question) from the evaluation's yes/no path equals the sum of the same
    tokens' log-probs in the training collator's batch (response "yes" / "No" after the prompt)."""
    family = family_model.family
    model, processor = load_for_inference(family_model.folder)
    image = tmp_path / "image.png"
    Image.new("RGB", (48, 48), (200, 40, 40)).save(image)
    question = "Is there a dog in the image?"
    decoder_start = decoder_start_token_id(model.config)
    inputs = processor(
        images=[Image.open(image).convert("RGB")],
        text=[chat_prompt(processor, question, family)],
        return_tensors="pt",
        padding=True,
    )
    for word in ("yes", "No"):
        (sequence,) = answer_token_ids(processor, [word], family)
        with torch.no_grad():
            if decoder_start is None:
                asked = answer_log_probs(model, inputs, [sequence], reuse_cache=not family.mm_token_types)[0, 0]
            else:
                asked = decoder_answer_log_probs(model, inputs, [sequence], decoder_start)[0, 0]
            batch = SFTCollator(processor, family, decoder_start_token_id=decoder_start)(
                [SFTExample(images=[str(image)], prompt=question, response=word)]
            )
            labels = batch.pop("labels")
            logps, mask = token_logps(model(**batch).logits, labels)
        trained = logps[0][mask[0]]  # the response's tokens, the word's first
        assert labels[0][1:][mask[0]][: len(sequence)].tolist() == sequence
        assert asked.item() == pytest.approx(trained[: len(sequence)].sum().item(), abs=1e-4), word


def test_every_answer_variant_is_found(family_model):
    family = family_model.family
    _, processor = load_for_inference(family_model.folder)
    for word, variants in ANSWER_VARIANTS.items():
        sequences = answer_token_ids(processor, variants, family)
        decoded = {processor.tokenizer.decode(sequence).strip() for sequence in sequences}
        assert decoded == set(variants), word
