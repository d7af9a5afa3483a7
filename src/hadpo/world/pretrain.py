"""Pretrain the world's tiny base LLaVA on the CPU, the way real VLMs are built.

Stage 1 (the role CLIP plays): the vision tower alone learns, per patch, the category, colour and size of the
object in that grid cell (patches are aligned with cells), from the scene annotations. Seconds.
Stage 2 (the language model's own pretraining, the role Vicuna/Llama play): text-only reading comprehension:
a description as context, yes/no questions answered from it. This is where the model learns to look a
question's object up in its context, which it then reuses on image tokens (measured: without it, existence
answers stayed at chance).
Stage 3 (LLaVA's instruction tuning): the vision tower is frozen; projector + language model learn the
conversations of `hadpo.world.data`: balanced, image-grounded data first, the biased web-like data last.

The result is cached under runs/base/<digest>/ as an ordinary hub-style folder (model + processor).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm import tqdm

from hadpo.records import ImageRecord, read_jsonl, resolve_image_path
from hadpo.world.config import WorldConfig
from hadpo.world.data import conversation, corpus, reading_conversation
from hadpo.world.scenes import WorldFiles
from hadpo.world.tiny import IMAGE_TOKEN, TinyLlavaSpec, build_tiny_llava, train_tokenizer

IGNORE = -100


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    vocab_size: int = 512
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 8
    text_intermediate: int = 384
    vision_steps: int = Field(1500, ge=0)
    vision_batch: int = 64
    vision_lr: float = 2e-3
    reading_steps: int = Field(1500, ge=0, description="text-only language-model steps before the images")
    reading_lr: float | None = Field(None, description="learning rate of the reading stage (default lm_lr)")
    reading_batch: int = Field(32, ge=1)
    reading_questions: int = Field(1, ge=1, description="questions per reading conversation")
    lm_steps: int = Field(1000, ge=1)
    lm_batch: int = 16
    lm_lr: float = 5e-4
    warmup_steps: int = 50
    balanced_fraction: float = Field(0.6, ge=0.0, le=1.0, description="share of LM steps on balanced data")
    biased_mix: float = Field(1.0, ge=0.0, le=1.0, description="share of biased conversations after the switch")
    projector_init: str = Field("aligned", pattern="^(aligned|random)$",
                                description="'aligned': the projector starts mapping the vision read-out to word embeddings")
    qa_turns: int = Field(4, ge=1, description="yes/no questions per training conversation")
    describe_probability: float = Field(0.5, ge=0.0, le=1.0, description="share of conversations with a description")
    threads: int = Field(0, ge=0, description="torch threads (0 = torch's default)")
    device: str = Field("cpu", description="'cpu', 'cuda' or 'auto'; not part of the cache key")

    def spec(self, world: WorldConfig) -> TinyLlavaSpec:
        shape = self.model_dump(include=set(TinyLlavaSpec.model_fields))  # the widths and depths set here
        return TinyLlavaSpec(image_size=world.image_size, patch_size=world.patch_size, **shape)

    def digest(self, world: WorldConfig) -> str:
        settings = self.model_dump(exclude={"device", "threads"})
        payload = json.dumps({"world": world.digest(), "pretrain": settings}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def pixel_tensor(images: list[ImageRecord], records_file: Path) -> torch.Tensor:
    """All images as normalised pixel values (N, 3, H, W), exactly as the LLaVA processor normalises them
    (rescale to [0, 1], mean 0.5, std 0.5) — checked against the processor in the tests."""
    arrays = [np.asarray(Image.open(resolve_image_path(r, records_file)).convert("RGB")) for r in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return (pixels / 255.0 - 0.5) / 0.5


def patch_targets(images: list[ImageRecord], world: WorldConfig) -> torch.Tensor:
    """(N, patches, 3) targets: category (0 = empty), colour and size index of each grid cell's object."""
    categories, colours, sizes = world.categories, world.colours, world.sizes
    grid = world.grid
    targets = torch.zeros(len(images), grid * grid, 3, dtype=torch.long)
    for i, image in enumerate(images):
        for obj in image.objects:
            x, y, w, h = obj.box
            cell = int((y + h / 2) // world.patch_size) * grid + int((x + w / 2) // world.patch_size)
            colour, size = obj.attributes[0], obj.attributes[1]
            targets[i, cell] = torch.tensor(
                [categories.index(obj.name) + 1, colours.index(colour) + 1, sizes.index(size) + 1]
            )
    return targets


def train_vision(model, pixels, targets, world: WorldConfig, config: PretrainConfig) -> tuple[dict, nn.ModuleList]:
    """Stage 1: per-patch classification heads on the vision tower's last hidden layer (the layer LLaVA uses).
    Returns a report (loss, per-patch accuracy of all three heads on up to 512 training images) and the heads."""
    vision = model.model.vision_tower
    hidden = vision.config.hidden_size
    heads = nn.ModuleList(
        [nn.Linear(hidden, len(world.categories) + 1), nn.Linear(hidden, len(world.colours) + 1),
         nn.Linear(hidden, len(world.sizes) + 1)]
    ).to(pixels.device)
    targets = targets.to(pixels.device)
    optimizer = torch.optim.AdamW([*vision.parameters(), *heads.parameters()], lr=config.vision_lr)
    generator = torch.Generator().manual_seed(config.seed)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.vision_lr, total_steps=max(1, config.vision_steps))
    progress = tqdm(range(config.vision_steps), desc="base: vision stage", leave=False)
    for _ in progress:
        index = torch.randint(len(pixels), (config.vision_batch,), generator=generator).to(pixels.device)
        features = vision(pixels[index], output_hidden_states=True).hidden_states[-1][:, 1:]
        loss = sum(
            nn.functional.cross_entropy(head(features).flatten(0, 1), targets[index][..., k].flatten())
            for k, head in enumerate(heads)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    with torch.no_grad():
        index = torch.arange(min(len(pixels), 512), device=pixels.device)
        features = vision(pixels[index], output_hidden_states=True).hidden_states[-1][:, 1:]
        predicted = torch.stack([head(features).argmax(-1) for head in heads], dim=-1)
        patch_accuracy = (predicted == targets[index]).all(-1).float().mean().item()
    report = {"vision_loss": loss.item() if config.vision_steps else None, "patch_accuracy": patch_accuracy}
    return report, heads


def align_projector(model, heads: nn.ModuleList, pixels: torch.Tensor, tokenizer, world: WorldConfig) -> None:
    """Start the projector aligned with the language model's word embeddings (the role of LLaVA's
    feature-alignment stage): its first layer computes each patch's category, colour and size logits (the vision
    stage's read-out), its second layer maps each class to the embedding of its name, so a patch holding a small
    red star enters the language model near emb(" star") + emb(" red") + emb(" small"), and an empty patch near
    zero. Matching a question's word with an image token is then a match of like embeddings; everything stays
    trainable."""
    projector = model.model.multi_modal_projector
    embeddings = model.get_input_embeddings().weight.detach()
    names = [world.categories, world.colours, world.sizes]
    classes = sum(len(words) + 1 for words in names)
    if classes > projector.linear_1.out_features:
        raise ValueError(f"projector width {projector.linear_1.out_features} < {classes} read-out classes: "
                         "raise text_hidden or use projector_init: random")
    with torch.no_grad():
        features = model.model.vision_tower(pixels[:256], output_hidden_states=True).hidden_states[-1][:, 1:]
        projector.linear_1.weight.zero_()
        projector.linear_1.bias.zero_()
        projector.linear_2.weight.zero_()
        projector.linear_2.bias.zero_()
        row = 0
        for head, words in zip(heads, names):
            logits = head(features)
            typical = logits.max(-1).values.mean().clamp(min=1.0)  # GELU(logit) of the winning class ~ this
            projector.linear_1.weight[row : row + len(words) + 1] = head.weight
            projector.linear_1.bias[row : row + len(words) + 1] = head.bias
            for offset, word in enumerate(words, start=1):  # class 0 (empty) maps to nothing
                ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                projector.linear_2.weight[:, row + offset] = embeddings[ids].mean(0) / typical
            row += len(words) + 1


def encode_conversation(turns: list[tuple[str, str]], tokenizer, image_tokens: int, context: str = ""
                        ) -> tuple[list[int], list[int]]:
    """Token ids and labels of a multi-turn conversation in the processor's chat format; only the assistant's
    answers (with their end-of-turn token) are trained on. The first user turn carries the image tokens, or a
    text `context` in their place (text-only reading)."""
    input_ids: list[int] = []
    labels: list[int] = []
    for turn, (question, answer) in enumerate(turns):
        opening = "USER: " + IMAGE_TOKEN * image_tokens + context + "\n"
        user = (opening if turn == 0 else "USER: ") + question + " ASSISTANT:"
        reply = " " + answer + tokenizer.eos_token
        user_ids = tokenizer(user, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
        input_ids += user_ids + reply_ids
        labels += [IGNORE] * len(user_ids) + reply_ids
    return input_ids, labels


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), length), pad_id)
    labels = torch.full((len(encoded), length), IGNORE)
    attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for row, (ids, target) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(target)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def learning_rate(step: int, config: PretrainConfig, total: int | None = None, peak: float | None = None) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak (default `lm_lr`) over `total` steps (default
    `lm_steps`)."""
    total = config.lm_steps if total is None else total
    peak = config.lm_lr if peak is None else peak
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_step(model, optimizer, trainable, batch: dict, lr: float, pixel_values=None) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(pixel_values=pixel_values, **batch).loss
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    return loss.item()


def train_reading(model, tokenizer, images, world: WorldConfig, config: PretrainConfig, device) -> dict:
    """Stage 2: the language model alone, on text-only reading comprehension about scene descriptions."""
    trainable = list(model.model.language_model.parameters()) + list(model.lm_head.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=config.lm_lr, weight_decay=0.0)
    rng = random.Random(config.seed + 1)
    losses = []
    model.train()
    for step in tqdm(range(config.reading_steps), desc="base: reading stage", leave=False):
        encoded = []
        for _ in range(config.reading_batch):
            context, turns = reading_conversation(images[rng.randrange(len(images))], world, rng,
                                                  config.reading_questions)
            encoded.append(encode_conversation(turns, tokenizer, 0, context))
        batch = {k: v.to(device) for k, v in collate(encoded, tokenizer.pad_token_id).items()}
        losses.append(round(lm_step(model, optimizer, trainable, batch,
                                    learning_rate(step, config, config.reading_steps, config.reading_lr)), 4))
    model.eval()
    return {"reading_losses": losses}


def train_language(model, tokenizer, images, pixels, world: WorldConfig, config: PretrainConfig) -> dict:
    """Stage 3: projector + language model on conversations, vision tower frozen; curriculum balanced -> biased."""
    model.model.vision_tower.requires_grad_(False)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lm_lr, weight_decay=0.0)
    rng = random.Random(config.seed)
    image_tokens = world.grid**2
    switch = int(config.balanced_fraction * config.lm_steps)
    losses = []
    progress = tqdm(range(config.lm_steps), desc="base: language stage", leave=False)
    model.train()
    for step in progress:
        biased = step >= switch
        index = [rng.randrange(len(images)) for _ in range(config.lm_batch)]
        encoded = [
            encode_conversation(
                conversation(images[i], world, rng, biased and rng.random() < config.biased_mix, config.qa_turns,
                             config.describe_probability),
                tokenizer,
                image_tokens,
            )
            for i in index
        ]
        batch = {k: v.to(pixels.device) for k, v in collate(encoded, tokenizer.pad_token_id).items()}
        loss = lm_step(model, optimizer, trainable, batch, learning_rate(step, config),
                       pixels[torch.tensor(index, device=pixels.device)])
        losses.append(round(loss, 4))
        progress.set_postfix(loss=f"{loss:.3f}", phase="biased" if biased else "balanced")
    model.eval()
    return {"lm_losses": losses, "switch_step": switch}


def pretrain_base(world: WorldConfig, files: WorldFiles, config: PretrainConfig, runs_dir="runs") -> Path:
    """Train (or reuse) the base model; returns its folder (load with AutoModelForImageTextToText)."""
    out = Path(runs_dir) / "base" / config.digest(world)
    if (out / "pretrain.json").exists():
        return out
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    tokenizer = train_tokenizer(corpus(images[:2000], world, config.seed), vocab_size=config.vocab_size)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    model, processor = build_tiny_llava(tokenizer, config.spec(world))
    model.to(device)
    pixels = pixel_tensor(images, files.images("pretrain")).to(device)
    vision_report, heads = train_vision(model, pixels, patch_targets(images, world), world, config)
    if config.projector_init == "aligned":
        align_projector(model, heads, pixels, tokenizer, world)
    vision_seconds = time.perf_counter() - started
    reading_report = train_reading(model, tokenizer, images, world, config, device)
    language_report = train_language(model, tokenizer, images, pixels, world, config)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out)
    processor.save_pretrained(out)
    report = {
        "world": world.digest(),
        "knobs": world.knobs(),
        "config": config.model_dump(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vision_seconds": round(vision_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        **vision_report,
        **reading_report,
        **language_report,
    }
    (out / "pretrain.json").write_text(json.dumps(report, indent=2))
    return out
