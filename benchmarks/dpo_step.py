"""DPO step time, peak memory and pairs per second: hadpo's HADPOTrainer against TRL's DPOTrainer.

Both train the same random-init LLaVA (built from config, no download) with the same LoRA (every
language-model linear layer), the same pairs (one image each), the same batch size and the reference as the
policy with its adapters disabled. Each implementation runs in its own subprocess, so peak memory is its own.

    # CPU, tiny model (about a minute):
    python benchmarks/dpo_step.py --model tiny --device cpu --steps 6
    # GPU, LLaVA-1.5-7B shape (CLIP ViT-L/14-336 + Llama-7B, 576 image tokens), bf16:
    python benchmarks/dpo_step.py --model llava15-7b --device cuda --steps 8 --batch-size 4

TRL is optional (`pip install trl`, plain, never `trl[vlm]`); without it only hadpo is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    TrainerCallback,
)

from hadpo.models import get_family
from hadpo.records import PreferencePair, write_jsonl
from hadpo.world.tiny import IMAGE_TOKEN, TinyLlavaSpec, build_processor, build_tiny_llava, train_tokenizer

WORDS = (
    "there is a red square blue circle green knife on the table left right top of the image and a dog".split()
)


def build(size: str, device: str, dtype: torch.dtype):
    """(model, processor) with random weights; llava15-7b has LLaVA-1.5-7B's shapes."""
    tokenizer = train_tokenizer([" ".join(WORDS)] * 50, vocab_size=300)
    if size == "tiny":
        model, processor = build_tiny_llava(tokenizer, TinyLlavaSpec())
        return model.to(device=device, dtype=dtype), processor
    spec = TinyLlavaSpec(image_size=336, patch_size=14)
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    text = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=spec.num_patches,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config)
    torch.set_default_dtype(default)
    return model, build_processor(tokenizer, spec)


def make_pairs(folder: Path, n: int, image_size: int, words: int) -> Path:
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for i in range(n):
        colour = tuple(int(c) for c in torch.randint(0, 255, (3,), generator=generator))
        Image.new("RGB", (image_size, image_size), colour).save(folder / f"{i}.png")

        def text(offset):
            picks = torch.randint(0, len(WORDS), (words,), generator=generator).tolist()
            return " ".join(WORDS[(p + offset) % len(WORDS)] for p in picks) + "."

        pairs.append(
            PreferencePair(
                images=[f"{i}.png"],
                prompt="Describe this image in detail.",
                chosen=text(0),
                rejected=text(1),
                kind="desc",
                image_id=str(i),
                pair_id=str(i),
            )
        )
    write_jsonl(folder / "pairs.jsonl", pairs)
    return folder / "pairs.jsonl"


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def common_args(args, out: str) -> dict:
    cuda = args.device == "cuda"
    return dict(
        output_dir=out,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-5,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda,
        gradient_checkpointing=args.gradient_checkpointing,
        dataloader_num_workers=0,
        seed=0,
        beta=0.1,
    )


def lora_config(family, rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=family.lora_target_regex)


def run_hadpo(model, processor, pairs_path, args, out) -> StepTimer:
    from hadpo.train.config import HADPOConfig
    from hadpo.train.data import PreferenceCollator, PreferenceDataset, group_rewrites, load_pairs
    from hadpo.train.run import prepare_policy
    from hadpo.train.trainer import HADPOTrainer

    family = get_family("llava15")
    config = HADPOConfig(
        model_name_or_path="random-init",
        pairs=str(pairs_path),
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        **common_args(args, out),
    )
    dataset = PreferenceDataset(group_rewrites(load_pairs(pairs_path)), seed=0)
    timer = StepTimer()
    trainer = HADPOTrainer(
        model=prepare_policy(model, config, family),
        args=config,
        train_dataset=dataset,
        data_collator=PreferenceCollator(processor, family),
        processing_class=processor,
        callbacks=[timer],
    )
    trainer.train()
    return timer


def run_trl(model, processor, pairs_path, args, out) -> StepTimer:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from hadpo.train.data import load_pairs

    family = get_family("llava15")
    rows = [
        {
            "images": [Image.open(pair.images[0]).convert("RGB")],
            "prompt": family.prompt_text(processor, pair.prompt, 1),
            "chosen": family.response_text(processor, pair.chosen),
            "rejected": family.response_text(processor, pair.rejected),
        }
        for pair in load_pairs(pairs_path)
    ]
    try:
        dataset = Dataset.from_list(rows)
    except Exception as error:
        # Hand-assembled environments (e.g. wheels unpacked on an offline GPU box) may fail to pickle pyarrow
        # types for the dataset fingerprint, which the benchmark does not need: use a fixed one.
        print(f"datasets fingerprint failed ({type(error).__name__}); using a fixed one", file=sys.stderr)
        import datasets.arrow_dataset as arrow_dataset

        arrow_dataset.generate_fingerprint = lambda _dataset: "hadpo-benchmark"
        dataset = Dataset.from_list(rows)
    config = DPOConfig(
        max_length=None, precompute_ref_log_probs=False, **common_args(args, out) | {"beta": 0.1}
    )
    timer = StepTimer()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(family, args.lora_r),
        callbacks=[timer],
    )
    trainer.train()
    return timer


def child(args) -> dict:
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    started = time.perf_counter()
    model, processor = build(args.model, args.device, dtype)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        image_size = 336 if args.model == "llava15-7b" else 48
        pairs = make_pairs(Path(folder), args.batch_size * (args.steps + 1), image_size, args.words)
        runner = run_hadpo if args.impl == "hadpo" else run_trl
        timer = runner(model, processor, pairs, args, str(Path(folder) / "out"))
    measured = timer.times[args.warmup :] or timer.times
    step = statistics.median(measured)
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "impl": args.impl,
        "model": args.model,
        "device": args.device,
        "batch_pairs": args.batch_size,
        "steps_measured": len(measured),
        "step_s": step,
        "pairs_per_s": args.batch_size / step,
        "peak_gib": peak,
        "peak_kind": "cuda allocated" if args.device == "cuda" else "process RSS",
        "build_s": build_s,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["tiny", "llava15-7b"], default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--impl", choices=["hadpo", "trl", "both"], default="both")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per implementation")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the median")
    parser.add_argument("--batch-size", type=int, default=2, help="pairs per step (per device)")
    parser.add_argument("--words", type=int, default=60, help="words per chosen / rejected response")
    parser.add_argument(
        "--lora-r", type=int, default=128, help="LoRA rank (alpha = 2 r), as the paper's LLaVA run"
    )
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--json", help="also write the results as JSON lines here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    impls = ["hadpo", "trl"] if args.impl == "both" else [args.impl]
    results = []
    for impl in impls:
        if impl == "trl" and not _has_trl():
            print("trl is not installed: skipping the TRL baseline (pip install trl)", file=sys.stderr)
            continue
        command = _replace_impl([sys.executable, __file__, *(argv or sys.argv[1:]), "--child"], impl)
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            print(f"{impl} failed:\n{done.stderr[-4000:]}", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    print(
        f"{'impl':<6} {'model':<11} {'device':<6} {'pairs/step':>10} {'step s':>8} {'pairs/s':>8} "
        f"{'peak GiB':>9}"
    )
    for r in results:
        print(
            f"{r['impl']:<6} {r['model']:<11} {r['device']:<6} {r['batch_pairs']:>10} {r['step_s']:>8.3f} "
            f"{r['pairs_per_s']:>8.2f} {r['peak_gib']:>9.2f}  "
            f"({r['peak_kind']}, median of {r['steps_measured']})"
        )
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in results))
    return 0 if len(results) == len(impls) or results else 1


def _has_trl() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def _replace_impl(command: list[str], impl: str) -> list[str]:
    out, skip = [], False
    for part in command:
        if skip:
            skip = False
            continue
        if part == "--impl":
            skip = True
            continue
        if part.startswith("--impl="):
            continue
        out.append(part)
    return [*out, "--impl", impl]


if __name__ == "__main__":
    sys.exit(main())
