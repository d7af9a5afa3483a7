"""The tiny LLaVA (hadpo.world.tiny) behaves like a hub LLaVA once saved: its chat template, one image token per
patch, left padding that changes no row's answer, images that reach the language model, and greedy decoding that
follows the logits."""

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor


def _load(tiny_model_dir):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval(), AutoProcessor.from_pretrained(
        tiny_model_dir
    )


def _prompt(processor, text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


@torch.no_grad()
def test_tiny_llava_answers_like_a_hub_llava(tiny_model_dir):
    model, processor = _load(tiny_model_dir)
    prompt = _prompt(processor, "Describe this image.")
    assert prompt.startswith("USER: <image>\n") and prompt.endswith("ASSISTANT:")
    dark, red = Image.new("RGB", (48, 48), (0, 0, 0)), Image.new("RGB", (48, 48), (220, 30, 30))

    alone = processor(images=[dark], text=[prompt], return_tensors="pt")
    batch = processor(images=[dark, dark], text=[prompt, prompt + " yes yes"], return_tensors="pt", padding=True)
    # One image token per 16-pixel patch of a 48x48 image: 9, CLS dropped.
    assert (batch["input_ids"] == model.config.image_token_index).sum(dim=1).tolist() == [9, 9]
    # Left padding: the shorter row's next-token distribution is the one it has alone.
    assert batch["attention_mask"][0, 0] == 0
    torch.testing.assert_close(model(**batch).logits[0, -1], model(**alone).logits[0, -1], atol=1e-5, rtol=1e-4)

    # The image reaches the language model: another image, another next-token distribution.
    other = processor(images=[red], text=[prompt], return_tensors="pt")
    assert not torch.allclose(model(**other).logits[0, -1], model(**alone).logits[0, -1], atol=1e-4)

    # Greedy decoding takes the most likely token each step.
    generated = model.generate(**alone, max_new_tokens=3, do_sample=False)
    first = generated[0, alone["input_ids"].shape[1]]
    assert first == model(**alone).logits[0, -1].argmax()
    extended = {**alone, "input_ids": generated[:, :-1], "attention_mask": torch.ones_like(generated[:, :-1])}
    assert torch.equal(model(**extended).logits[0, -2:].argmax(-1), generated[0, -2:])
