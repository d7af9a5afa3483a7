"""Training speed: hadpo's HADPOTrainer in its default configuration against TRL's DPOTrainer, side by side.

Both train the same random-init LLaVA (harness.py: LLaVA-1.5's proportions, image tokens 5x the response
tokens) with the same LoRA (rank r, alpha 2r, every language-model linear layer), the reference as the policy
with its adapters disabled, the same pairs and token sequences (trainers.py: the BOS on both sides), batch,
steps, precision and threads. Every run is a fresh process (so peak memory is its own); runs alternate between
the sides (hadpo, trl, trl, hadpo, ...). A step is timed whole, from one optimizer step's end to the next
(loading and collating the batch, both forwards, backward, optimizer, logging); the first `--warmup` steps of a
run are left out. The figure per run is its
median step; the table gives the median over runs and the min-max spread. A last process computes both losses
on one batch with LoRA weights moved off zero (so the reference differs from the policy).

    python -m benchmarks.speed.train_speed              # CPU, tiny; ~6 min on a 2-core machine at load 7
    python -m benchmarks.speed.train_speed --sides hadpo hadpo-two-sequences trl
    python -m benchmarks.speed.train_speed --model llava15-7b --device cuda --dtype bfloat16 --batch-size 4

Absolute times depend on the machine and its load; the ratio of one invocation is the figure. With `--json` the
last line is one JSON object. On a GPU (or with --peak-tflops) it also gives model FLOPs utilisation: the FLOPs
one step executes (counted by torch's FlopCounterMode, forward and backward) / median step time / peak.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks.speed.harness import (
    PROMPT,
    add_run_arguments,
    build_model,
    child_argv,
    has_trl,
    parameter_shares,
    peak_memory_mb,
    peak_tflops,
    report,
    run_child,
    run_sides,
    set_threads,
    shape_defaults,
    spread,
)
from benchmarks.speed.trainers import FAMILY, hadpo_trainer, make_pairs, trl_trainer

SIDES = ("hadpo", "hadpo-two-sequences", "trl")


class StepTimer(TrainerCallback):
    """Times whole optimizer steps: the time between consecutive step ends."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.marks: list[tuple[float, float]] = []  # (wall, this process's CPU time)

    def _mark(self):
        if self.cuda:
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), time.process_time()))

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark()

    def on_step_end(self, args, state, control, **kwargs):
        self._mark()

    @property
    def steps(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])]

    @property
    def cpu_steps(self) -> list[float]:
        """CPU seconds per step: on a loaded machine a steadier measure of the work than the wall clock."""
        return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])]


def make_trainer(side: str, model, processor, pairs_path, args, out, callbacks=()):
    max_steps = args.warmup + args.steps
    if side == "trl":
        return trl_trainer(model, processor, pairs_path, args, out, callbacks, max_steps=max_steps)
    return hadpo_trainer(model, processor, pairs_path, args, out, callbacks, side == "hadpo", max_steps=max_steps)


def step_flops(trainer) -> float:
    """FLOPs of one training step (forwards and backward; the optimizer's are negligible), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with FlopCounterMode(display=False) as counter:
        trainer.training_step(trainer.model, batch)
    return float(counter.get_total_flops())


def child_timing(args) -> dict:
    set_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model, processor = build_model(args.model, args.device, dtype)
    timer = StepTimer(args.device)
    with tempfile.TemporaryDirectory() as folder:
        image_size = model.config.vision_config.image_size
        pairs = make_pairs(
            Path(folder), processor, args.batch_size * (args.warmup + args.steps), image_size, args.response_tokens
        )
        trainer = make_trainer(args.child, model, processor, pairs, args, str(Path(folder) / "out"), [timer])
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        flops = step_flops(trainer) if args.peak_tflops or args.device.startswith("cuda") else None
    steps, cpu_steps = timer.steps[args.warmup :], timer.cpu_steps[args.warmup :]
    step_s, cpu_step_s = statistics.median(steps), statistics.median(cpu_steps)
    return {
        "side": args.child,
        "step_s": step_s,
        "pairs_per_s": args.batch_size / step_s,
        "pairs_per_cpu_s": args.batch_size / cpu_step_s,
        "peak_mb": peak_memory_mb(args.device),
        "step_flops": flops,
        "steps": steps,
    }


def child_loss(args) -> dict:
    """Each side's loss on one batch of the same pairs, with the same LoRA weights moved off zero (hadpo alone
    when TRL is not installed)."""
    from hadpo.train.collate import load_image

    set_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    losses, shapes = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        model, processor = build_model(args.model, args.device, dtype)
        shares = parameter_shares(model)
        pairs_path = make_pairs(
            Path(folder), processor, args.batch_size, model.config.vision_config.image_size, args.response_tokens
        )
        prompt = processor(
            images=[load_image(str(Path(folder) / "0.png"))],
            text=[FAMILY.prompt_text(processor, PROMPT, 1)],
            return_tensors="pt",
        )
        prompt_tokens = prompt["input_ids"].shape[1]
        for side in ("hadpo", "trl") if has_trl() else ("hadpo",):
            model, processor = build_model(args.model, args.device, dtype)
            trainer = make_trainer(side, model, processor, pairs_path, args, str(Path(folder) / side))
            _set_lora(trainer.model)
            trainer.model.eval()
            if side == "trl":
                examples = [trainer.train_dataset[i] for i in range(args.batch_size)]
            else:
                examples = [{"pair": pair} for pair in sorted(trainer.train_dataset.plan, key=_pair_number)]
            inputs = on_device(trainer.data_collator(examples), args.device)
            with torch.no_grad():
                losses[side] = float(trainer.compute_loss(trainer.model, inputs))
            shapes[side] = list(inputs["input_ids"].shape)
    return {"losses": losses, "input_shapes": shapes, "parameter_shares": shares, "prompt_tokens": prompt_tokens}


def on_device(batch: dict, device: str) -> dict:
    """The collated batch's tensors on `device` (what the Trainer does to a batch before compute_loss)."""
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}


def _pair_number(pair) -> int:
    return int(pair.pair_id)


def _set_lora(model) -> None:
    """LoRA A and B from a generator seeded by each parameter's name: the same weights on both sides."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                param.copy_(0.05 * torch.randn(param.shape, generator=generator).to(param.dtype))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, SIDES, ["hadpo", "trl"], runs=5)
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps per run left out first")
    parser.add_argument("--peak-tflops", type=float, help="accelerator peak for MFU (default: by GPU name)")
    parser.add_argument("--child", choices=[*SIDES, "loss"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape_defaults(args)
    if args.child:
        report(child_loss(args) if args.child == "loss" else child_timing(args))
        return 0
    results = run_sides(parser, args, argv, __spec__.name)
    loss = run_child(__spec__.name, [*child_argv(argv), "--child", "loss"])
    summary = summarise(args, results, loss)
    print_table(args, summary, loss)
    if args.json:
        print(json.dumps(summary))
    return 0


def summarise(args, results: dict[str, list[dict]], loss: dict) -> dict:
    peak = peak_tflops(args.device, args.peak_tflops)
    summary: dict = {}
    for side, runs in results.items():
        key = side.replace("-", "_")
        pairs_per_s = spread([r["pairs_per_s"] for r in runs])
        summary[f"{key}_pairs_per_s"] = pairs_per_s[0]
        summary[f"{key}_pairs_per_cpu_s"] = spread([r["pairs_per_cpu_s"] for r in runs])[0]
        summary[f"{key}_pairs_per_s_min_max"] = [pairs_per_s[1], pairs_per_s[2]]
        summary[f"{key}_peak_rss_mb" if not args.device.startswith("cuda") else f"{key}_peak_gpu_mb"] = spread(
            [r["peak_mb"] for r in runs]
        )[0]
        if peak and runs[0]["step_flops"]:
            summary[f"{key}_mfu"] = runs[0]["step_flops"] / spread([r["step_s"] for r in runs])[0] / (peak * 1e12)
    for side in ("hadpo", "trl"):
        summary[f"{side}_loss"] = loss["losses"].get(side)
    if "hadpo" in results and "trl" in results:
        summary["ratio"] = summary["hadpo_pairs_per_s"] / summary["trl_pairs_per_s"]
        paired = [h["pairs_per_s"] / t["pairs_per_s"] for h, t in zip(results["hadpo"], results["trl"])]
        summary["ratio_per_run"] = paired
        summary["cpu_ratio"] = summary["hadpo_pairs_per_cpu_s"] / summary["trl_pairs_per_cpu_s"]
    summary["settings"] = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch_pairs": args.batch_size,
        "runs": args.runs,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "lora_r": args.lora_r,
        "gradient_checkpointing": args.gradient_checkpointing,
        "prompt_tokens": loss["prompt_tokens"],
        "response_tokens": args.response_tokens,
    }
    return summary


def print_table(args, summary: dict, loss: dict) -> None:
    s = summary["settings"]
    shares = loss["parameter_shares"]
    print(
        f"model {s['model']} ({s['dtype']}, {s['device']}, {s['threads']} thread(s)): prompt {s['prompt_tokens']} "
        f"tokens with image, responses ~{s['response_tokens']} tokens; vision tower {100 * shares['vision']:.1f} % "
        f"and LM head {100 * shares['head']:.1f} % of the LM's parameters; LoRA r {s['lora_r']}; "
        f"{s['batch_pairs']} pairs/step; {s['runs']} runs x {s['steps']} timed steps per side"
    )
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"{'side':<22} {'pairs/s':>8} {'(min-max)':>16} {'per CPU s':>10} {memory:>12} {'MFU %':>6}")
    for side in args.sides:
        key = side.replace("-", "_")
        low, high = summary[f"{key}_pairs_per_s_min_max"]
        rss = summary.get(f"{key}_peak_rss_mb", summary.get(f"{key}_peak_gpu_mb"))
        mfu = summary.get(f"{key}_mfu")
        print(
            f"{side:<22} {summary[f'{key}_pairs_per_s']:>8.2f} {f'({low:.2f}-{high:.2f})':>16} "
            f"{summary[f'{key}_pairs_per_cpu_s']:>10.2f} {rss:>12.0f} "
            f"{100 * mfu if mfu else float('nan'):>6.1f}"
        )
    if "ratio" in summary:
        runs = ", ".join(f"{r:.2f}" for r in summary["ratio_per_run"])
        print(
            f"hadpo / trl pairs/s: {summary['ratio']:.2f}x (run by run: {runs}); per CPU second "
            f"{summary['cpu_ratio']:.2f}x"
        )
    if summary["trl_loss"] is not None:
        print(
            f"loss on one batch, LoRA moved off zero: hadpo {summary['hadpo_loss']:.6f}, "
            f"trl {summary['trl_loss']:.6f} (|diff| {abs(summary['hadpo_loss'] - summary['trl_loss']):.1e})"
        )


if __name__ == "__main__":
    sys.exit(main())
