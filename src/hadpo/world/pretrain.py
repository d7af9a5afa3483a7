"""Pretrain the world's tiny base LLaVA on the CPU, the way real VLMs are built.

Vision stage (the role CLIP plays): the vision tower alone learns, per patch, the category, colour and size of
the object in that grid cell and which cell the patch is (patches are aligned with cells); then it is frozen.
Instruction stages (LLaVA's alignment and instruction tuning): projector + language model learn conversations
from `hadpo.world.data`, one stage after another, each with a fresh AdamW, warm-up and cosine decay. The default
curriculum (docs/world.md has the measurements behind each choice):
  captions   brief captions (with the caption noise), or one yes/no question, most of them "yes";
  grounded   four yes/no questions per image answered from the image, half the existence ones "no" about a
             random absent object; it goes on until held-out existence questions are answered (the lookup
             "is this word among the image tokens?" is learned in a sudden drop of the loss whose timing varies);
  hard       the same, with half the "no" questions about an absent member of a present object's family;
  web        detailed descriptions (with the caption noise), or four questions written from a noisy caption,
             most of them about objects the caption names; answers weigh double.
The last stage is where the co-occurrence hallucination comes from: a caption naming an absent family member
yields "Yes." to it, and descriptions learn to name one after a family member.

The result is cached under runs/base/<digest>/ as an ordinary hub-style folder (model + processor), with
pretrain.json: per stage its steps, seconds, losses, until_existence checks, and the held-out existence accuracy
after it for each probe kind (a present object, a random absent one, an absent member of a present family).

The recipe is `pretrain_config.PretrainConfig`; conversations become tensors in `batches`; the held-out existence
questions are `probes`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from hadpo.progress import progress_bar
from hadpo.records import ImageRecord, read_jsonl, resolve_image_path
from hadpo.world.batches import collate, encode_conversation, weighted_loss
from hadpo.world.config import WorldConfig
from hadpo.world.data import caption_turn, corpus, question_turns
from hadpo.world.pretrain_config import InstructionStage, PretrainConfig
from hadpo.world.probes import PROBE_KINDS, existence_accuracy, until_measure
from hadpo.world.scenes import WorldFiles
from hadpo.world.tiny import build_tiny_llava, train_tokenizer

HELD_OUT = 256  # pretrain images the language stages never train on: they check existence answers


def cosine_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to a tenth of `peak` at step `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# --- the vision stage -----------------------------------------------------------------------------------------


def pixel_tensor(images: list[ImageRecord], records_file: Path) -> torch.Tensor:
    """All images as normalised pixel values (N, 3, H, W), exactly as the LLaVA processor normalises them
    (rescale to [0, 1], mean 0.5, std 0.5) — checked against the processor in the tests."""
    arrays = [np.asarray(Image.open(resolve_image_path(r, records_file)).convert("RGB")) for r in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return (pixels / 255.0 - 0.5) / 0.5


def patch_targets(images: list[ImageRecord], world: WorldConfig) -> torch.Tensor:
    """(N, patches, 4) targets: category (0 = empty), colour and size index of each grid cell's object, and the
    cell's own index."""
    categories, colours, sizes = world.categories, world.colours, world.sizes
    grid = world.grid
    targets = torch.zeros(len(images), grid * grid, 4, dtype=torch.long)
    targets[..., 3] = torch.arange(grid * grid)
    for i, image in enumerate(images):
        for obj in image.objects:
            x, y, w, h = obj.box
            cell = int((y + h / 2) // world.patch_size) * grid + int((x + w / 2) // world.patch_size)
            colour, size = obj.attributes[0], obj.attributes[1]
            targets[i, cell, :3] = torch.tensor(
                [categories.index(obj.name) + 1, colours.index(colour) + 1, sizes.index(size) + 1]
            )
    return targets


def train_vision(model, pixels, targets, world: WorldConfig, config: PretrainConfig) -> dict:
    """Per-patch linear heads on the vision tower's last hidden layer (the layer LLaVA reads): category, colour,
    size and the patch's cell (so that the features keep where each patch is). Returns the loss and the
    per-patch accuracy of the category, colour and size heads together on held-back images."""
    vision = model.model.vision_tower
    hidden = vision.config.hidden_size
    classes = [len(world.categories) + 1, len(world.colours) + 1, len(world.sizes) + 1, world.grid**2]
    heads = nn.ModuleList([nn.Linear(hidden, n) for n in classes]).to(pixels.device)
    targets = targets.to(pixels.device)
    held_back = min(512, len(pixels) // 10)
    train_count = len(pixels) - held_back
    optimizer = torch.optim.AdamW([*vision.parameters(), *heads.parameters()], lr=config.vision_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(config.seed)
    vision.train()
    loss = torch.tensor(float("nan"))
    for step in progress_bar(range(config.vision_steps), desc="base: vision stage", leave=False):
        for group in optimizer.param_groups:
            group["lr"] = cosine_rate(step, config.vision_steps, config.vision_lr, max(1, config.vision_steps // 10))
        index = torch.randint(train_count, (config.vision_batch,), generator=generator).to(pixels.device)
        features = vision(pixels[index], output_hidden_states=True).hidden_states[-1][:, 1:]
        loss = sum(
            nn.functional.cross_entropy(head(features).flatten(0, 1), targets[index][..., k].flatten())
            for k, head in enumerate(heads)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vision.eval()
    with torch.no_grad():
        index = torch.arange(train_count, len(pixels), device=pixels.device)
        features = vision(pixels[index], output_hidden_states=True).hidden_states[-1][:, 1:]
        predicted = torch.stack([head(features).argmax(-1) for head in heads[:3]], dim=-1)
        patch_accuracy = (predicted == targets[index][..., :3]).all(-1).float().mean().item()
    return {"vision_loss": round(loss.item(), 4), "patch_accuracy": patch_accuracy}


# --- the language stages -------------------------------------------------------------------------------------


def stage_conversation(
    image: ImageRecord, world: WorldConfig, stage: InstructionStage, rng: random.Random
) -> tuple[list[tuple[str, str]], float]:
    """One training conversation of `stage` and the weight of its answers."""
    if rng.random() < stage.describe_probability:
        return [caption_turn(image, world, rng, brief=rng.random() < stage.brief_share)], 1.0
    from_caption = stage.from_caption and world.bias.qa_from_captions
    default_bias = world.bias.yes_bias if stage.from_caption else 0.5
    yes_bias = stage.yes_bias if stage.yes_bias is not None else default_bias
    turns = question_turns(
        image, world, rng, stage.qa_turns, from_caption, yes_bias, stage.existence_share, stage.partner_share
    )
    return turns, stage.answer_weight


def run_stage(
    model,
    trainable,
    make_batch,
    stage: InstructionStage,
    config: PretrainConfig,
    accuracy: Callable[[str], float | None],
) -> dict:
    """The stage's optimizer steps on batches from `make_batch()` -> (batch, pixel values), with a fresh AdamW,
    warm-up and cosine decay (over max_steps when the stage waits for its existence criterion). `accuracy(kind)`
    is the held-out existence accuracy of a probe kind; the report has each kind's after the stage."""
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lm_lr, betas=config.lm_betas, weight_decay=config.lm_weight_decay
    )
    waits = stage.until_existence is not None
    total = max(stage.steps, stage.max_steps or 0) if waits else stage.steps
    losses, checks = [], []
    started = time.perf_counter()
    progress = progress_bar(range(total), desc=f"base: {stage.name} stage", leave=False)
    for step in progress:
        if waits and step >= stage.steps and step % 100 == 0:
            measured = until_measure(accuracy, stage.until_kind)
            checks.append((step, None if measured is None else round(measured, 3)))
            if measured is not None and measured >= stage.until_existence:
                break
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = cosine_rate(step, total, config.lm_lr, config.warmup_steps)
        batch, pixel_values = make_batch()
        loss = weighted_loss(model, batch, pixel_values)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(round(loss.item(), 4))
        progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()
    model.eval()
    after = {kind: accuracy(kind) for kind in PROBE_KINDS}
    return {
        "steps": len(losses),
        "seconds": round(time.perf_counter() - started, 1),
        "losses": losses,
        "existence_checks": checks,
        "existence_after": {kind: None if a is None else round(a, 3) for kind, a in after.items()},
    }


def train_language(model, tokenizer, images, pixels, world: WorldConfig, config: PretrainConfig) -> dict:
    """The instruction stages in order: projector + language model, vision tower frozen. The last HELD_OUT
    images only check existence answers."""
    model.model.vision_tower.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    rng = random.Random(config.seed)
    held_out, held_out_pixels = images[-HELD_OUT:], pixels[-HELD_OUT:]
    images = images[:-HELD_OUT]

    def accuracy(kind: str) -> float | None:
        return existence_accuracy(model, tokenizer, held_out, held_out_pixels, world, config.seed, kind)

    report = {}
    for stage in config.stages:

        def make_batch(stage=stage):
            index = [rng.randrange(len(images)) for _ in range(config.lm_batch)]
            encoded = []
            for i in index:
                turns, weight = stage_conversation(images[i], world, stage, rng)
                encoded.append(encode_conversation(turns, tokenizer, world.grid**2, weight))
            batch = {k: v.to(pixels.device) for k, v in collate(encoded, tokenizer.pad_token_id).items()}
            return batch, pixels[torch.tensor(index, device=pixels.device)]

        report[stage.name] = run_stage(model, trainable, make_batch, stage, config, accuracy)
    return {"stages": report}


def pretrain_base(world: WorldConfig, files: WorldFiles, config: PretrainConfig, runs_dir="runs") -> Path:
    """Train (or reuse) the base model; returns its folder (load with AutoModelForImageTextToText)."""
    out = Path(runs_dir) / "base" / config.digest(world)
    if (out / "pretrain.json").exists():
        return out
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    if len(images) <= 2 * HELD_OUT:
        raise ValueError(f"the pretrain split has {len(images)} images; pretraining needs more than {2 * HELD_OUT}")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    tokenizer = train_tokenizer(corpus(images[:2000], world, config.seed), vocab_size=config.vocab_size)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    model, processor = build_tiny_llava(tokenizer, config.spec(world))
    model.to(device)
    pixels = pixel_tensor(images, files.images("pretrain")).to(device)
    vision_report = train_vision(model, pixels, patch_targets(images, world), world, config)
    vision_seconds = time.perf_counter() - started
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
        **language_report,
    }
    (out / "pretrain.json").write_text(json.dumps(report, indent=2))
    return out
