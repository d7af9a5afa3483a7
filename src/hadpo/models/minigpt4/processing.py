"""MiniGPT-4's processor: BLIP-2's image preprocessing, the release's prompt formats as chat templates, and its
tokenisation, segment by segment around the image.

Prompt formats (the release's `prompt_template`s, which HA-DPO trained with; one turn, image first):
- Vicuna: `###Human: <Img><ImageHere></Img> {prompt} ###Assistant: ` and the answer ends with `###`;
- Llama-2: `[INST] <Img><ImageHere></Img> {prompt} [/INST] ` and the answer ends with `</s>`.

The release tokenises the text before and after `<ImageHere>` separately (a beginning-of-sequence token on the
first piece only) and puts the image features between them; so does this processor, writing `num_image_tokens`
image tokens where the features go, so that token ids match the release's even where a tokenizer would merge
text across the placeholder. Answers are tokenised on their own as well (the release's `answer + end_sym`),
which is what hadpo's collators do for every family.
"""

from __future__ import annotations

from transformers import BatchFeature
from transformers.models.blip import BlipImageProcessorPil
from transformers.processing_utils import ProcessorMixin

IMAGE_PLACEHOLDER = "<ImageHere>"
# BLIP-2's evaluation transform: 224 x 224 bicubic, CLIP's mean and std.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_TURN_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<Img><ImageHere></Img> {% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
)
CHAT_TEMPLATES = {
    "vicuna": "{% for message in messages %}{% if message['role'] == 'user' %}###Human: "
    + _TURN_CONTENT
    + " ###Assistant: {% else %}"
    + _TURN_CONTENT
    + "###{% endif %}{% endfor %}",
    "llama2": "{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
    + _TURN_CONTENT
    + " [/INST] {% else %}"
    + _TURN_CONTENT
    + "</s>{% endif %}{% endfor %}",
}
END_SYMBOLS = {"vicuna": "###", "llama2": "</s>"}


class MiniGPT4Processor(ProcessorMixin):
    """Images -> `pixel_values`; text -> `input_ids` with `num_image_tokens` image tokens per `<ImageHere>`.
    `batch_decode` cuts an answer at the variant's end symbol, as the release's chat does."""

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        num_image_tokens: int = 32,
        end_symbol: str = "###",
        **kwargs,
    ):
        self.num_image_tokens = num_image_tokens
        self.end_symbol = end_symbol
        self.image_token = IMAGE_PLACEHOLDER
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        if self.image_token_id in (None, tokenizer.unk_token_id):
            raise ValueError(f"MiniGPT4Processor: the tokenizer has no '{IMAGE_PLACEHOLDER}' token")

    def __call__(self, images=None, text=None, return_tensors=None, **kwargs) -> BatchFeature:
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            placeholders = sum(t.count(IMAGE_PLACEHOLDER) for t in texts)
            if images is not None and placeholders != len(_as_list(images)):
                count = len(_as_list(images))
                raise ValueError(f"MiniGPT-4: {placeholders} '{IMAGE_PLACEHOLDER}' placeholder(s) for {count} image(s)")
            rows = {"input_ids": [self._token_ids(t) for t in texts]}
            data.update(self.tokenizer.pad(rows, padding=True, return_tensors=return_tensors))
        if images is not None:
            data["pixel_values"] = self.image_processor(images, return_tensors=return_tensors)["pixel_values"]
        return BatchFeature(data, tensor_type=return_tensors)

    def _token_ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for index, segment in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if index:
                ids += [self.image_token_id] * self.num_image_tokens
            if segment or index == 0:
                ids += self.tokenizer(segment, add_special_tokens=index == 0)["input_ids"]
        return ids

    def batch_decode(self, *args, **kwargs) -> list[str]:
        texts = self.tokenizer.batch_decode(*args, **kwargs)
        return [text.split(self.end_symbol)[0] for text in texts]

    def decode(self, *args, **kwargs) -> str:
        return self.tokenizer.decode(*args, **kwargs).split(self.end_symbol)[0]


def _as_list(images) -> list:
    return list(images) if isinstance(images, list | tuple) else [images]


def minigpt4_processor(tokenizer, variant: str, num_image_tokens: int, image_size: int = 224) -> MiniGPT4Processor:
    """The processor of a MiniGPT-4 variant around a language model's tokenizer: adds the image placeholder as a
    special token and a padding token when the tokenizer has none (the release pads with an unused string)."""
    if variant not in CHAT_TEMPLATES:
        raise ValueError(f"unknown MiniGPT-4 variant '{variant}'; expected one of {', '.join(CHAT_TEMPLATES)}")
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    # The PIL backend resizes as the release's torchvision transform of a PIL image does (PIL bicubic).
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    return MiniGPT4Processor(
        image_processor,
        tokenizer,
        chat_template=CHAT_TEMPLATES[variant],
        num_image_tokens=num_image_tokens,
        end_symbol=END_SYMBOLS[variant],
    )
