"""What the speed benchmarks (train_speed, train_epochs, eval_speed) share: random-init LLaVA models with
LLaVA-1.5's proportions, their data, runs in child processes (each side its own process, so its peak memory is
its own), interleaved, and the median / spread summary.

Shapes (built from config, no download):
- `tiny`: 144 image tokens (192-pixel images, 16-pixel patches), a 4-layer Llama of width 256 and a 2-layer CLIP
  tower of width 64: the tower holds ~5 % of the language model's parameters (LLaVA-1.5-7B: 0.3 B / 6.7 B =
  4.5 %), the LM head ~3 % (LLaVA-1.5-7B: 2 %); the prompt text is a dozen tokens (~10 % of the prompt).
- `tiny-576`: the same with 384-pixel images, so LLaVA-1.5's 576 image tokens.
- `llava15-7b`: LLaVA-1.5-7B's shapes (CLIP ViT-L/14-336, 576 image tokens, feature layer -2, 2-layer MLP
  projector, Llama-7B with a 32,064-token head); for a GPU.
The tokenizer is trained on a few words, so responses are word sequences of a set token length.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer

WORDS = "there is a red square blue circle green knife on the table left right top of the image and a dog".split()
PROMPT = "Describe this image in detail."
# The tokenizer's corpus: the response words, the prompt and the chat template's words, so the prompt text is a
# dozen tokens as in LLaVA-1.5 (image tokens ~90 % of the prompt).
CORPUS = [
    " ".join(WORDS),
    PROMPT,
    "USER: ASSISTANT:",
    "Is there a dog in the image? yes no Yes No YES NO",
    "Answer the question using a single word or phrase.",
]
# Dense bf16 peak of common accelerators, TFLOP/s (vendor figures), for model FLOPs utilisation.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


TINY = TinyLlavaSpec(
    image_size=192,
    patch_size=16,
    vision_hidden=64,
    vision_layers=2,
    text_hidden=256,
    text_layers=4,
    text_intermediate=688,
    max_positions=2048,
)
SHAPES = {
    "tiny": TINY,
    "tiny-576": TINY.model_copy(update={"image_size": 384}),  # LLaVA-1.5's 576 image tokens: 24 x 24 patches
    "llava15-7b": TinyLlavaSpec(
        image_size=336,
        patch_size=14,
        vision_hidden=1024,
        vision_layers=24,
        vision_heads=16,
        text_hidden=4096,
        text_layers=32,
        text_heads=32,
        text_intermediate=11008,
        max_positions=4096,
    ),
}
# LLaVA-1.5-7B also reads the penultimate CLIP layer and has a 32,064-token head.
LLAVA15_7B = {"vision_feature_layer": -2, "vocab_size": 32064}


def build_model(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """(model, processor) with random weights, the same for the same seed in every process."""
    tokenizer = train_tokenizer(CORPUS * 50, vocab_size=400)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model, processor = build_tiny_llava(tokenizer, SHAPES[name])
            if name == "llava15-7b":
                model.config.vision_feature_layer = LLAVA15_7B["vision_feature_layer"]
                model.resize_token_embeddings(LLAVA15_7B["vocab_size"], mean_resizing=False)
    finally:
        torch.set_default_dtype(default)
    return model.eval(), processor


def parameter_shares(model) -> dict[str, float]:
    """Vision tower and LM head parameters as fractions of the language model's."""

    def count(module):
        return sum(p.numel() for p in module.parameters())

    language = count(model.model.language_model)
    return {"vision": count(model.model.vision_tower) / language, "head": count(model.lm_head) / language}


def words(tokenizer, n_tokens: int, generator: torch.Generator) -> str:
    """A sentence of random WORDS that tokenizes to `n_tokens` tokens or just over."""
    text: list[str] = []
    while len(tokenizer(" ".join(text) + ".", add_special_tokens=False)["input_ids"]) < n_tokens:
        text.append(WORDS[int(torch.randint(len(WORDS), (1,), generator=generator))])
    return " ".join(text) + "."


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """n random-noise RGB images (PNG), so no two are alike."""
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        pixels = torch.randint(0, 256, (size, size, 3), generator=generator, dtype=torch.uint8)
        paths.append(folder / f"{i}.png")
        Image.fromarray(pixels.numpy()).save(paths[-1])
    return paths


def set_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated by torch (cuda), else this process's peak resident set size."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def peak_tflops(device: str, given: float | None) -> float | None:
    if given is not None or not device.startswith("cuda"):
        return given
    name = torch.cuda.get_device_name()
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def run_child(module: str, argv: list[str]) -> dict:
    """Run `python -m module argv` in a fresh process (same working directory and environment, so `benchmarks`
    imports there as it did here); its last 'RESULT {json}' line."""
    done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, env=os.environ)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def interleaved(sides: list[str], runs: int) -> list[str]:
    """Run order: every side once per round, the order reversed every other round."""
    order = []
    for round_ in range(runs):
        order += sides if round_ % 2 == 0 else sides[::-1]
    return order


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def has_trl() -> bool:
    return importlib.util.find_spec("trl") is not None


def add_run_arguments(parser: argparse.ArgumentParser, sides: list[str], default_sides: list[str], runs: int) -> None:
    """The options the training benchmarks share: the model's shape and device, the sides and their runs, the
    batch, and how each run is set up."""
    parser.add_argument("--model", choices=["tiny", "llava15-7b"], default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--sides", nargs="+", choices=sides, default=default_sides)
    parser.add_argument("--runs", type=int, default=runs, help="runs per side, interleaved")
    parser.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    parser.add_argument("--response-tokens", type=int, help="tokens per chosen / rejected (default image/5)")
    parser.add_argument(
        "--lora-r",
        type=int,
        help="LoRA rank, alpha 2r (default width/32: the paper's r 128 on LLaVA-1.5-7B's 4096; 8 on tiny)",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def shape_defaults(args: argparse.Namespace) -> None:
    """Response length and LoRA rank from the model's shape where the command line leaves them out."""
    shape = SHAPES[args.model]
    args.response_tokens = args.response_tokens or shape.num_patches // 5
    args.lora_r = args.lora_r or shape.text_hidden // 32


def run_sides(parser: argparse.ArgumentParser, args, argv: list[str] | None, module: str) -> dict[str, list[dict]]:
    """Every side's runs, each a child process of `module` with this command line, interleaved."""
    if "trl" in args.sides and not has_trl():
        parser.error("trl is not installed: `make bench` installs it (plain trl, never trl[vlm])")
    results: dict[str, list[dict]] = {side: [] for side in args.sides}
    for side in interleaved(args.sides, args.runs):
        results[side].append(run_child(module, [*child_argv(argv), "--child", side]))
    return results


def child_argv(argv: list[str] | None) -> list[str]:
    """This command line for a child run (its result is read from its RESULT line, not printed as JSON)."""
    return [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
