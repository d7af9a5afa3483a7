"""Whole training runs, setup included: hadpo with `reference: precomputed` against TRL's DPOTrainer over several
epochs (default 3).

TRL refuses precomputed reference log-probs for image datasets (`precompute_ref_log_probs=True` raises on
vision data), so its reference forward runs in every step of every epoch. hadpo's `reference: precomputed`
scores every pair once with the reference before training and reuses those log-probs in every epoch. A third
side, `hadpo` (reference: adapters, the default, as in train_speed), tells the reference pass's share of the gain
from the packed pair forward's.

Each side runs as its users run it: hadpo through `hadpo.train.run.build_trainer` (what `hadpo train` runs: data
checks, model load, the reference pass, LoRA), TRL with the model loaded by `from_pretrained` and a DPOTrainer
built around it; the clock runs from the model load to the end of `train()`, so setup and the reference pass
count. Same model, pairs (token sequences alike, BOS included: trainers.py), LoRA, batch, precision and threads as
train_speed; every run a fresh process, runs interleaved. The figure: pairs trained per second over the whole run
(pairs x epochs / seconds), the median over runs with min-max, and per CPU second of the run's process.

    python -m benchmarks.speed.train_epochs     # CPU, tiny, 3 epochs of 32 pairs; ~5 min at load 7 on 2 cores
    python -m benchmarks.speed.train_epochs --sides hadpo-precomputed trl --epochs 5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks.speed.harness import (
    add_run_arguments,
    build_model,
    report,
    run_sides,
    set_threads,
    shape_defaults,
    spread,
)
from benchmarks.speed.trainers import hadpo_config, make_pairs, trl_trainer

SIDES = ("hadpo-precomputed", "hadpo", "trl")


class TrainBegin(TrainerCallback):
    """When training proper begins: the end of setup."""

    def __init__(self):
        self.at: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.at = time.perf_counter()


def build_side(side: str, model_dir: Path, processor, pairs: Path, args, out: str, callbacks: list):
    if side == "trl":
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
        return trl_trainer(model, processor, pairs, args, out, callbacks, num_train_epochs=args.epochs)
    from hadpo.train.run import build_trainer

    config = hadpo_config(
        pairs,
        args,
        out,
        str(model_dir),
        num_train_epochs=args.epochs,
        reference="precomputed" if side == "hadpo-precomputed" else "adapters",
        model_dtype=args.dtype,
    )
    return build_trainer(config, callbacks, processor)


def child_run(args) -> dict:
    """One whole run of `args.child`: the model saved first (not timed), then loaded, set up and trained."""
    set_threads(args.threads)
    model, processor = build_model(args.model, "cpu", getattr(torch, args.dtype))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model.save_pretrained(folder / "model")
        (folder / "data").mkdir()
        image_size = model.config.vision_config.image_size
        pairs = make_pairs(folder / "data", processor, args.pairs, image_size, args.response_tokens)
        del model
        begin = TrainBegin()
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer = build_side(args.child, folder / "model", processor, pairs, args, str(folder / "out"), [begin])
        trainer.train()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    trained = args.pairs * args.epochs
    return {
        "side": args.child,
        "seconds": seconds,
        "setup_s": begin.at - started,
        "pairs_per_s": trained / seconds,
        "pairs_per_cpu_s": trained / cpu_seconds,
        "optimizer_steps": trainer.state.global_step,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, SIDES, list(SIDES), runs=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=32, help="pairs in the data set")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape_defaults(args)
    if args.child:
        report(child_run(args))
        return 0
    results = run_sides(parser, args, argv, __spec__.name)
    summary = summarise(args, results)
    print_table(summary)
    if args.json:
        print(json.dumps(summary))
    return 0


def summarise(args, results: dict[str, list[dict]]) -> dict:
    sides = {}
    for side, runs in results.items():
        rate = spread([r["pairs_per_s"] for r in runs])
        sides[side] = {
            "pairs_per_s": rate[0],
            "pairs_per_s_min_max": [rate[1], rate[2]],
            "pairs_per_cpu_s": spread([r["pairs_per_cpu_s"] for r in runs])[0],
            "setup_s": spread([r["setup_s"] for r in runs])[0],
            "optimizer_steps": runs[0]["optimizer_steps"],
        }
    ratios = {}
    if "trl" in results:
        for side in (s for s in results if s != "trl"):
            paired = [h["pairs_per_s"] / t["pairs_per_s"] for h, t in zip(results[side], results["trl"])]
            ratios[side] = {
                "ratio": sides[side]["pairs_per_s"] / sides["trl"]["pairs_per_s"],
                "ratio_per_run": paired,
                "cpu_ratio": sides[side]["pairs_per_cpu_s"] / sides["trl"]["pairs_per_cpu_s"],
            }
    settings = {
        key: getattr(args, key)
        for key in ("model", "device", "dtype", "runs", "epochs", "pairs", "batch_size", "lora_r", "threads")
    }
    return {"sides": sides, "against_trl": ratios, "settings": settings | {"response_tokens": args.response_tokens}}


def print_table(summary: dict) -> None:
    s = summary["settings"]
    print(
        f"model {s['model']} ({s['dtype']}, {s['device']}, {s['threads']} thread(s)): {s['pairs']} pairs x "
        f"{s['epochs']} epochs, {s['batch_size']} pairs/step, responses ~{s['response_tokens']} tokens, LoRA r "
        f"{s['lora_r']}; {s['runs']} runs per side; the clock runs from the model load to the end of training"
    )
    print(f"{'side':<20} {'pairs/s':>8} {'(min-max)':>16} {'per CPU s':>10} {'setup s':>8} {'steps':>6}")
    for side, row in summary["sides"].items():
        low, high = row["pairs_per_s_min_max"]
        print(
            f"{side:<20} {row['pairs_per_s']:>8.2f} {f'({low:.2f}-{high:.2f})':>16} "
            f"{row['pairs_per_cpu_s']:>10.2f} {row['setup_s']:>8.1f} {row['optimizer_steps']:>6}"
        )
    for side, ratio in summary["against_trl"].items():
        runs = ", ".join(f"{r:.2f}" for r in ratio["ratio_per_run"])
        print(
            f"{side} / trl pairs/s over the whole run: {ratio['ratio']:.2f}x (run by run: {runs}); "
            f"per CPU second {ratio['cpu_ratio']:.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
