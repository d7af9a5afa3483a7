"""A first, small measurement of a model on world images: does it see, and does it hallucinate?

  recall          share of annotated objects that its greedy description names;
  hallucinating   share of descriptions that name at least one absent object;
  existence       "Is there a/an X in the image?" with present X ("yes") and absent X ("no"), the absent one
                  drawn at random (random) or from a present object's family (adversarial); answered by
                  comparing P(" Yes") with P(" No") after the prompt; accuracy and *predicted* yes-ratio.
The full evaluation suite (POPE, CHAIR, SHR, MME) lives in `hadpo.evaluate`; this probe is the foundation's
quick check, small and replaceable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from hadpo.records import ImageRecord, resolve_image_path
from hadpo.text import ObjectVocabulary
from hadpo.world.config import WorldConfig
from hadpo.world.data import existence_question


def chat_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def load_images(images: list[ImageRecord], records_file: Path) -> list[Image.Image]:
    return [Image.open(resolve_image_path(r, records_file)).convert("RGB") for r in images]


@torch.no_grad()
def describe_images(model, processor, pictures, prompt: str, max_new_tokens: int = 96, batch_size: int = 32):
    """Greedy descriptions, one per picture."""
    text = chat_prompt(processor, prompt)
    outputs = []
    for start in range(0, len(pictures), batch_size):
        chunk = pictures[start : start + batch_size]
        batch = processor(images=chunk, text=[text] * len(chunk), return_tensors="pt", padding=True).to(model.device)
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        outputs += [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs


@torch.no_grad()
def yes_probabilities(model, processor, pictures, questions, batch_size: int = 64) -> list[float]:
    """P(yes) over {yes, no} for the first answer token after each (picture, question)."""
    tokenizer = processor.tokenizer
    yes_id = tokenizer(" Yes", add_special_tokens=False)["input_ids"][0]
    no_id = tokenizer(" No", add_special_tokens=False)["input_ids"][0]
    probabilities = []
    for start in range(0, len(questions), batch_size):
        texts = [chat_prompt(processor, q) for q in questions[start : start + batch_size]]
        batch = processor(images=pictures[start : start + batch_size], text=texts, return_tensors="pt", padding=True)
        batch = batch.to(model.device)
        logits = model(**batch).logits[:, -1, [yes_id, no_id]]  # left padding: the last position is the prompt's
        probabilities += logits.softmax(-1)[:, 0].tolist()
    return probabilities


@dataclass
class ProbeResult:
    recall: float
    hallucinating: float
    existence: dict[str, dict[str, float]]
    examples: list[dict] = field(default_factory=list)


def existence_questions(images: list[ImageRecord], world: WorldConfig, seed: int) -> list[tuple[int, str, str, bool]]:
    """(image index, negative kind, object, is present) for each image: its present categories, one random
    absent category and one absent partner of a present object (the adversarial negative)."""
    rng = random.Random(seed)
    questions = []
    for index, image in enumerate(images):
        present = sorted({o.name for o in image.objects})
        absent = [c for c in world.categories if c not in present]
        partners = sorted({p for n in present for p in world.partners(n) if p not in present})
        for name in present:
            questions.append((index, "positive", name, True))
        if absent:
            questions.append((index, "random", rng.choice(absent), False))
        if partners:
            questions.append((index, "adversarial", rng.choice(partners), False))
    return questions


def existence_metrics(answers: list[bool], questions) -> dict[str, dict[str, float]]:
    """Accuracy and predicted yes-ratio for each negative kind, scored with all positives of the same images
    (images hold 1-4 objects, so positives outnumber negatives), and the balanced accuracy, the mean of the
    positive and negative accuracies: what a POPE-style set with as many negatives as positives measures."""
    result = {}
    for kind in ("random", "adversarial"):
        images = {q[0] for q in questions if q[1] == kind}
        chosen = [(a, q) for a, q in zip(answers, questions) if q[0] in images and q[1] in ("positive", kind)]
        correct = sum(a == q[3] for a, q in chosen)
        positive = [a for a, q in chosen if q[3]]
        negative = [not a for a, q in chosen if not q[3]]
        result[kind] = {
            "accuracy": correct / len(chosen),
            "balanced_accuracy": (sum(positive) / max(1, len(positive)) + sum(negative) / max(1, len(negative))) / 2,
            "yes_ratio": sum(a for a, _ in chosen) / len(chosen),
            "questions": len(chosen),
        }
    return result


def probe(model_dir: str | Path, images: list[ImageRecord], records_file: Path, world: WorldConfig,
          seed: int = 0, examples: int = 3, device: str = "cpu") -> ProbeResult:
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval().to(device)
    processor = AutoProcessor.from_pretrained(model_dir)
    pictures = load_images(images, records_file)
    descriptions = describe_images(model, processor, pictures, "Describe this image in detail.")
    vocabulary = ObjectVocabulary.from_names(world.categories)
    named_total = found = hallucinating = 0
    for image, text in zip(images, descriptions):
        truth = {o.name for o in image.objects}
        mentioned = {m.name for m in vocabulary.find(text)}
        named_total += len(truth)
        found += len(truth & mentioned)
        hallucinating += bool(mentioned - truth)
    questions = existence_questions(images, world, seed)
    probabilities = yes_probabilities(
        model, processor, [pictures[q[0]] for q in questions], [existence_question(q[2]) for q in questions]
    )
    answers = [p > 0.5 for p in probabilities]
    shown = [
        {"image_id": image.image_id, "truth": image.captions[0] if image.captions else "", "model": text}
        for image, text in list(zip(images, descriptions))[:examples]
    ]
    return ProbeResult(
        recall=found / max(1, named_total),
        hallucinating=hallucinating / max(1, len(images)),
        existence=existence_metrics(answers, questions),
        examples=shown,
    )
