import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor


def test_tiny_llava_loads_like_a_hub_model_and_generates(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.startswith("USER: <image>\n") and prompt.endswith("ASSISTANT:")
    image = Image.new("RGB", (48, 48), (0, 0, 0))
    batch = processor(images=[image, image], text=[prompt, prompt + " yes"], return_tensors="pt", padding=True)
    # One image token per 16-pixel patch of a 48x48 image: 9, CLS dropped.
    assert (batch["input_ids"] == model.config.image_token_index).sum(dim=1).tolist() == [9, 9]
    assert batch["attention_mask"][0, 0] == 0  # left padding
    with torch.no_grad():
        logits = model(**batch).logits
        generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert logits.shape[:2] == batch["input_ids"].shape
    assert generated.shape[1] <= batch["input_ids"].shape[1] + 4
