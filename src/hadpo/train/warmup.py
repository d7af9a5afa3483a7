"""OPA-DPO's warm start (github.com/zhyang2226/OPA-DPO, arXiv 2501.09695): a short SFT on the chosen answers before
the preference phase.

HA-DPO's chosen answers are written by a judge, not sampled from the model: they are off-policy, and DPO on
off-policy chosen answers can lower their likelihood together with the rejected ones. OPA-DPO first fine-tunes the
model on them, so that they become on-policy, and then runs DPO with the warmed model as the reference. Here:
`warmup_sft_steps` steps of token-mean NLL on every distinct (images, prompt, chosen) of the pairs, with the run's
tuning (LoRA adapters merged into the weights afterwards, so that the preference phase starts a fresh adapter whose
disabled state is the warmed model; or the fully fine-tuned weights themselves).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import Trainer

from hadpo.models import VLMFamily
from hadpo.records import PreferencePair, SFTExample
from hadpo.train.collate import SFTCollator
from hadpo.train.config import HADPOConfig
from hadpo.train.logps import response_logps
from hadpo.train.model import prepare_policy

log = logging.getLogger(__name__)


class WarmupTrainer(Trainer):
    """Token-mean NLL of the chosen answers (each example's mean, averaged over the batch)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = response_logps(model, inputs).nll().mean()
        return (loss, None) if return_outputs else loss


def chosen_examples(pairs: Sequence[PreferencePair]) -> list[SFTExample]:
    """One SFT example per distinct (images, prompt, chosen) of the pairs, in their order."""
    seen, examples = set(), []
    for pair in pairs:
        key = (tuple(pair.images), pair.prompt, pair.chosen)
        if key not in seen:
            seen.add(key)
            examples.append(SFTExample(images=pair.images, prompt=pair.prompt, response=pair.chosen))
    return examples


def warm_start(
    model: torch.nn.Module,
    config: HADPOConfig,
    family: VLMFamily,
    collator: SFTCollator,
    pairs: Sequence[PreferencePair],
) -> tuple[torch.nn.Module, dict]:
    """`config.warmup_sft_steps` SFT steps on the pairs' chosen answers; returns the warmed model (adapters merged,
    no PEFT wrapper) and what happened (steps, first and last logged loss, seconds)."""
    examples = chosen_examples(pairs)
    args = dataclasses.replace(
        config,
        output_dir=str(Path(config.output_dir) / "warmup"),
        max_steps=config.warmup_sft_steps,
        learning_rate=config.warmup_sft_learning_rate or config.learning_rate,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
    )
    policy = prepare_policy(model, config, family)
    began = time.perf_counter()
    trainer = WarmupTrainer(model=policy, args=args, train_dataset=examples, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    info = {
        "steps": trainer.state.global_step,
        "examples": len(examples),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "seconds": round(time.perf_counter() - began, 1),
    }
    log.info(
        "warm start: %(steps)d SFT steps on %(examples)d chosen answers, loss %(loss_first)s -> %(loss_last)s", info
    )
    warmed = trainer.accelerator.unwrap_model(trainer.model)
    if config.finetuning != "full":
        warmed = warmed.merge_and_unload()  # the preference phase's adapters start fresh on the warmed weights
    return warmed.train(False).requires_grad_(True), info
