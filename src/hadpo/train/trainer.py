"""`HADPOTrainer`: a thin `transformers.Trainer` subclass for the HA-DPO objective.

    total = L_dpo + chosen_sft_weight * L_lm(chosen) + gamma * L_sft(auxiliary batch)      (HA-DPO eq. 4-5)

The Trainer brings accelerate, DDP, DeepSpeed ZeRO, FSDP, mixed precision, gradient accumulation,
checkpointing, resume and `report_to`; this class only computes the loss, reads the reference, feeds the
auxiliary stream and logs TRL's metric names (`rewards/*`, `logps/*`) plus `loss/dpo`, `loss/sft` and
throughput.

A non-finite loss, reward or log-prob, or a non-finite gradient, stops the run (`RunFailed`, exit 1) before the
optimizer step, naming the step and the pairs of the batch, so no checkpoint is ever written from NaN weights
(transformers' `logging_nan_inf_filter` would otherwise log a plausible loss over NaN adapters).

Reference modes (issue 5): `adapters` runs the policy with its LoRA adapters disabled (no second copy), `copy`
runs a frozen `ref_model`, `precomputed` reads log-probs the collator put in the batch (`ref_sums`,
`ref_counts`), computed once before training by `hadpo.train.reference`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback

from hadpo.errors import RunFailed
from hadpo.train.collate import SFTCollator
from hadpo.train.config import HADPOConfig
from hadpo.train.data import AuxStream
from hadpo.train.distributed import prepare_reference
from hadpo.train.engines import Engine
from hadpo.train.logps import LogpsFn, ResponseLogps, response_logps
from hadpo.train.loss import anchor_loss, image_conditional_loss, preference_losses

PAIR_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "logps/ref_chosen",
    "logps/ref_rejected",
)


class _EpochPlan(TrainerCallback):
    """Re-plan the dataset (mix, order, rewrite per group) at each epoch start; resume-safe."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state.epoch or 0))


class _WithPairIds:
    """The pair collator, plus the batch's pair ids (popped before the forward), to name a batch that fails."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        return {**self.collator(examples), "pair_ids": [example["pair"].pair_id for example in examples]}

    def __getattr__(self, name: str):  # the wrapped collator's layout and processor (e.g. shared_prefix)
        if name == "collator":  # not set yet (unpickling in a data-loader worker): no recursion
            raise AttributeError(name)
        return getattr(self.collator, name)


class _StopOnNonFiniteGradients(TrainerCallback):
    """Before each optimizer step: a NaN or infinite gradient stops the run instead of writing NaN weights. Under
    fp16 the gradient scaler skips such steps itself (overflow is its normal signal), so nothing is checked."""

    def __init__(self, trainer: HADPOTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        names = [
            name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        flag = torch.tensor([float(len(names))], device=args.device)
        if self.trainer.accelerator.reduce(flag, reduction="sum").item():  # every process stops together
            where = f"e.g. {names[0]}" if names else "on another process"
            raise RunFailed(
                f"step {state.global_step + 1}: non-finite gradients ({len(names)} parameters here, "
                f"{where}) on pairs {self.trainer.step_pair_ids()}; stopped before the optimizer step "
                "(lower learning_rate, set max_grad_norm, or check these pairs)"
            )

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.pair_ids_this_step.clear()


class HADPOTrainer(Trainer):
    def __init__(
        self,
        *args,
        ref_model: torch.nn.Module | None = None,
        sft_stream: AuxStream | None = None,
        sft_collator: SFTCollator | None = None,
        logps_fn: LogpsFn = response_logps,
        engine: Engine | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, HADPOConfig):
            raise TypeError("HADPOTrainer needs a HADPOConfig as args (beta, loss_type, reference, ...)")
        if self.args.reference == "copy" and ref_model is None:
            raise ValueError("reference=copy needs a ref_model")
        # Our loss is a per-batch mean; the Trainer then divides it by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self.logps_fn = logps_fn
        self.engine = engine  # hadpo.train.engines: set by run.build_trainer; None = unsharded
        # Sharded by the same engine as the policy under FSDP2 / DeepSpeed, else whole on the device (issue 21).
        self.ref_model = None if ref_model is None else prepare_reference(self, ref_model, engine)
        self.sft_stream, self.sft_collator = sft_stream, sft_collator
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._seen = {"pairs": 0.0, "tokens": 0.0, "since": time.perf_counter()}
        self._micro_step: int | None = None
        self.pair_ids_this_step: list[str] = []  # pairs of the micro-batches since the last optimizer step
        if self.data_collator is not None and not isinstance(self.data_collator, _WithPairIds):
            self.data_collator = _WithPairIds(self.data_collator)
        if self.train_dataset is not None:
            self.add_callback(_EpochPlan(self.train_dataset))
        self.add_callback(_StopOnNonFiniteGradients(self))

    def _get_train_sampler(self, train_dataset=None):
        # The dataset shuffles itself per epoch (seeded), identically on every process.
        return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    def train(self, *args, **kwargs):
        self._micro_step = None  # re-derived from the (possibly resumed) global step
        self._seen["since"] = time.perf_counter()
        return super().train(*args, **kwargs)

    # --- the objective --------------------------------------------------------------------------------------

    def reference_logps(self, model, inputs: dict) -> ResponseLogps:
        if self.args.reference == "precomputed":
            if "ref_sums" not in inputs:
                raise ValueError("reference=precomputed but the batch has no reference log-probs")
            return ResponseLogps(inputs["ref_sums"], inputs["ref_counts"])
        with torch.no_grad():
            if self.args.reference == "copy":
                return self.logps_fn(self.ref_model, inputs)
            policy = self.accelerator.unwrap_model(model)
            with policy.disable_adapter():
                return self.logps_fn(policy, inputs)

    def step_pair_ids(self, shown: int = 8) -> str:
        ids = self.pair_ids_this_step
        return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "") or "?"

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        inputs = dict(inputs)
        pair_ids = inputs.pop("pair_ids", [])
        if model.training:
            self.pair_ids_this_step.extend(pair_ids)
        else:
            self.pair_ids_this_step = list(pair_ids)
        policy = self.logps_fn(model, inputs)
        ref = self.reference_logps(model, inputs)
        policy_logps = policy.reduce(args.logps_reduction)
        ref_logps = ref.reduce(args.logps_reduction).to(policy_logps.dtype)
        n = policy_logps.shape[0] // 2  # rows 0..n-1 chosen, n..2n-1 rejected
        types = args.loss_types
        preference = preference_losses(
            policy_logps[:n],
            policy_logps[n:],
            ref_logps[:n],
            ref_logps[n:],
            beta=args.beta,
            loss_type=types,
            loss_weights=args.loss_weights,
            label_smoothing=args.label_smoothing,
            rejected_weights=inputs.get("pair_severity"),
            sft_loss=self.chosen_token_nll(policy, n) if "sft" in types else None,
        )
        loss = preference.losses.mean()
        terms = {"loss/dpo": loss.detach()}
        if len(types) > 1:
            terms |= {f"loss/{name}": values.mean().detach() for name, values in preference.terms.items()}
        loss = loss + self.multimodal_terms(model, inputs, policy_logps[:n], ref_logps[:n], terms)
        if args.chosen_sft_weight > 0:
            chosen_nll = policy.nll()[:n].mean()
            loss = loss + args.chosen_sft_weight * chosen_nll
            terms["loss/chosen_sft"] = chosen_nll.detach()
        if args.gamma > 0 and self.sft_stream is not None and model.training:
            sft_loss = self.auxiliary_loss(model)
            if sft_loss is not None:
                loss = loss + args.gamma * sft_loss
                terms["loss/sft"] = sft_loss.detach()
        chosen_rewards, rejected_rewards = preference.chosen_rewards, preference.rejected_rewards
        pair_values = [
            chosen_rewards,
            rejected_rewards,
            chosen_rewards - rejected_rewards,
            (chosen_rewards > rejected_rewards).float(),
            policy_logps[:n].detach(),
            policy_logps[n:].detach(),
            ref_logps[:n],
            ref_logps[n:],
        ]
        self._record(model.training, terms, torch.stack(pair_values, dim=1), n, inputs["attention_mask"].sum())
        if return_outputs:
            return loss, {"chosen_rewards": chosen_rewards, "rejected_rewards": rejected_rewards}
        return loss

    def chosen_token_nll(self, policy: ResponseLogps, n: int) -> torch.Tensor:
        """MPO's `sft` term as TRL defines it: the NLL of every chosen token of the batch, averaged over tokens.
        Over several processes the tokens are counted globally (the gradient is averaged over processes), so the
        term does not depend on how the batch is split."""
        tokens = policy.counts[:n].sum().float()
        if self.args.world_size > 1:
            tokens = self.accelerator.reduce(tokens.detach().clone(), reduction="sum") / self.args.world_size
        return -policy.sums[:n].sum() / tokens.clamp(min=1)

    def multimodal_terms(self, model, inputs: dict, policy_chosen, ref_chosen, terms: dict) -> torch.Tensor | float:
        """mDPO's terms (arXiv 2406.11839): image_conditional_weight * L_conditional (one more forward of the
        chosen answers after the corrupted images, policy and reference) + anchor_weight * L_anchor."""
        args, total = self.args, 0.0
        if args.image_conditional_weight > 0:
            corrupted = inputs["corrupted"]
            policy_corrupted = self.logps_fn(model, corrupted).reduce(args.logps_reduction)
            ref_corrupted = self.reference_logps(model, corrupted).reduce(args.logps_reduction)
            ref_corrupted = ref_corrupted.to(policy_corrupted.dtype)
            conditional = image_conditional_loss(
                policy_chosen, ref_chosen, policy_corrupted, ref_corrupted, beta=args.beta
            ).mean()
            total = total + args.image_conditional_weight * conditional
            terms["loss/image_conditional"] = conditional.detach()
            terms["rewards/corrupted_chosen"] = (args.beta * (policy_corrupted - ref_corrupted)).mean().detach()
        if args.anchor_weight > 0:
            anchor = anchor_loss(policy_chosen, ref_chosen, beta=args.beta, delta=args.anchor_delta).mean()
            total = total + args.anchor_weight * anchor
            terms["loss/anchor"] = anchor.detach()
        return total

    def auxiliary_loss(self, model) -> torch.Tensor | None:
        """Mean per-example token NLL on this micro-step's auxiliary batches (sft_ratio of them per DPO
        batch). The forward goes through the unwrapped module, so DDP sees a single forward per backward;
        gradients still reach its hooks, which fire once per parameter."""
        gas = self.args.gradient_accumulation_steps
        if self._micro_step is None:
            self._micro_step = self.state.global_step * gas
        ratio, stream = self.args.sft_ratio, self.sft_stream
        first, last = (
            stream.batches_before(self._micro_step, ratio),
            stream.batches_before(self._micro_step + 1, ratio),
        )
        self._micro_step += 1
        losses = []
        for counter in range(first, last):
            examples = stream.batch(counter, self.args.process_index, self.args.world_size)
            batch = self._prepare_inputs(self.sft_collator(examples))
            out = self.logps_fn(self.accelerator.unwrap_model(model), batch)
            losses.append(out.nll().mean())
        return torch.stack(losses).mean() if losses else None

    # --- metrics --------------------------------------------------------------------------------------------

    def _record(self, training: bool, terms: dict, pair_values: torch.Tensor, n_pairs: int, n_tokens) -> None:
        prefix = "" if training else "eval_"
        gathered = self.accelerator.gather(pair_values.float()).mean(dim=0).tolist()
        scalars = torch.stack([t.float() for t in terms.values()]).unsqueeze(0)
        values = dict(zip(terms, self.accelerator.gather(scalars).mean(dim=0).tolist()))
        values |= dict(zip(PAIR_METRICS, gathered))
        bad = [f"{name} = {value}" for name, value in values.items() if not math.isfinite(value)]
        if bad:  # gathered: every process sees the same values and stops together, before any backward
            what = "training step" if training else "evaluation at step"
            raise RunFailed(
                f"{what} {self.state.global_step + int(training)}: non-finite {', '.join(bad[:3])} on "
                f"pairs {self.step_pair_ids()}; stopped before the update (lower learning_rate, or check "
                "these pairs)"
            )
        for name, value in values.items():
            self._metrics[prefix + name].append(value)
        if training:
            counts = torch.tensor([float(n_pairs), float(n_tokens)], device=pair_values.device)
            pairs, tokens = self.accelerator.gather(counts.unsqueeze(0)).sum(dim=0).tolist()
            self._seen["pairs"] += pairs
            self._seen["tokens"] += tokens

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        evaluating = any(key.startswith("eval_") for key in logs)
        for key in [k for k in self._metrics if k.startswith("eval_") == evaluating]:
            values = self._metrics.pop(key)
            logs[key] = sum(values) / len(values)
        if "loss" in logs:
            elapsed = max(time.perf_counter() - self._seen["since"], 1e-9)
            logs["speed/pairs_per_second"] = self._seen["pairs"] / elapsed
            logs["speed/tokens_per_second"] = self._seen["tokens"] / elapsed
            self._seen = {"pairs": 0.0, "tokens": 0.0, "since": time.perf_counter()}
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
