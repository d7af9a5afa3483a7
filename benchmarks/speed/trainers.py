"""The two trainers the training benchmarks compare, on the same model, pairs and settings: hadpo's `HADPOTrainer`
and TRL's `DPOTrainer`; and the pairs they train on.

Both sides see the same tokens. The benchmark models' tokenizer adds a BOS token when it encodes text (as Llama's
and Vicuna's do) and their chat template does not write one. hadpo encodes the prompt with the tokenizer's own
special tokens, as inference does and as LLaVA-1.5 was trained, so its sequences start with BOS. TRL's vision
collator encodes with `add_special_tokens=False` (it expects the chat template to write any BOS), so the TRL
side's prompt text gets the BOS written in front (`prompt_with_bos`); without it TRL scores every pair in a
context one token shorter and the two losses differ (docs/training.md, "Comparing with TRL").
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.speed.harness import PROMPT, words, write_images
from hadpo.models import get_family
from hadpo.records import PreferencePair, write_jsonl

FAMILY = get_family("llava15")


def make_pairs(folder: Path, processor, n: int, image_size: int, response_tokens: int) -> Path:
    """n pairs on n random-noise images, chosen and rejected of `response_tokens` tokens; their JSONL path."""
    generator = torch.Generator().manual_seed(0)
    pairs = [
        PreferencePair(
            images=[path.name],
            prompt=PROMPT,
            chosen=words(processor.tokenizer, response_tokens, generator),
            rejected=words(processor.tokenizer, response_tokens, generator),
            kind="desc",
            image_id=str(i),
            pair_id=str(i),
        )
        for i, path in enumerate(write_images(folder, n, image_size))
    ]
    write_jsonl(folder / "pairs.jsonl", pairs)
    return folder / "pairs.jsonl"


def training_args(args, out: str, **more) -> dict:
    """The TrainingArguments both sides share; `more`: the schedule (max_steps or num_train_epochs) and any
    other key of the side's config."""
    return dict(
        output_dir=out,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-5,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=not args.device.startswith("cuda"),
        bf16=args.dtype == "bfloat16",
        gradient_checkpointing=args.gradient_checkpointing,  # TRL's own default is True: set for both
        dataloader_num_workers=0,
        seed=0,
        beta=0.1,
        **more,
    )


def hadpo_config(pairs_path: Path, args, out: str, model_path: str = "random-init", **changes):
    """hadpo's config for these runs: LoRA rank r, alpha 2r, on the family's targets; `changes` on top."""
    from hadpo.train.config import HADPOConfig

    return HADPOConfig(
        model_name_or_path=model_path,
        pairs=str(pairs_path),
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        **training_args(args, out, **changes),
    )


def hadpo_trainer(model, processor, pairs_path, args, out, callbacks=(), shared_prefix=True, **schedule):
    """HADPOTrainer around a model already in memory (the reference: the policy with adapters disabled)."""
    from hadpo.train.collate import PreferenceCollator
    from hadpo.train.data import PreferenceDataset, group_rewrites, load_pairs
    from hadpo.train.model import prepare_policy
    from hadpo.train.trainer import HADPOTrainer

    config = hadpo_config(pairs_path, args, out, shared_prefix=shared_prefix, **schedule)
    return HADPOTrainer(
        model=prepare_policy(model, config, FAMILY),
        args=config,
        train_dataset=PreferenceDataset(group_rewrites(load_pairs(pairs_path)), seed=0),
        data_collator=PreferenceCollator(processor, FAMILY, shared_prefix=shared_prefix),
        processing_class=processor,
        callbacks=list(callbacks),
    )


def prompt_with_bos(tokenizer, text: str) -> str:
    """`text` with the BOS token written in front where the tokenizer adds one on its own and the text (the chat
    template's output) does not start with it: what TRL's `add_special_tokens=False` encoding then needs to see
    the sequence hadpo and inference see."""
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]
    return bos + text if adds_bos and not text.startswith(bos) else text


def trl_trainer(model, processor, pairs_path, args, out, callbacks=(), **schedule):
    """TRL's DPOTrainer on the same pairs as chat-templated strings and images, with `peft_config` (so the
    reference is the policy with adapters disabled, as hadpo's default)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from hadpo.train.collate import load_image
    from hadpo.train.data import load_pairs

    rows = [
        {
            "images": [load_image(pair.images[0])],
            "prompt": prompt_with_bos(processor.tokenizer, FAMILY.prompt_text(processor, pair.prompt, 1)),
            "chosen": FAMILY.response_text(processor, pair.chosen),
            "rejected": FAMILY.response_text(processor, pair.rejected),
        }
        for pair in load_pairs(pairs_path)
    ]
    lora = LoraConfig(
        r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, target_modules=FAMILY.lora_target_regex
    )
    return DPOTrainer(
        model=model,
        args=DPOConfig(max_length=None, **training_args(args, out, **schedule)),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=lora,
        callbacks=list(callbacks),
    )
