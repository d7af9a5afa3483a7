"""Whether this checkout trains bit for bit like an earlier commit: the same short trainings of a tiny LLaVA (4 steps
each: LoRA with the adapters / copy reference, full fine-tuning with precomputed reference log-probs, and LoRA with
the auxiliary SFT term, an SFT term on the chosen answers and averaged log-probs), run once with each version's
code, their logged losses, rewards and log-probs compared exactly. Issue 19's promise: with every new option off,
the losses are the trainer's of before the options existed.

    python -m benchmarks.bit_for_bit --against 3090560
    python -m benchmarks.bit_for_bit --against 3094372 --methods   # the methods' options on, against a later commit

The earlier commit is checked out in a temporary git worktree; both runs use this environment's packages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = {
    "adapters": {},
    "copy": {"reference": "copy"},
    "precomputed_full": {"reference": "precomputed", "finetuning": "full"},
    "aux": {"gamma": 0.5, "chosen_sft_weight": 0.3, "logps_reduction": "mean"},
}
# With --methods (against a commit that has issue 19's options): the options on that need no extra columns in the
# pairs (severity weights and label spans do)
METHOD_RUNS = {
    "methods": {
        "token_weighting": "diff",
        "image_conditional_weight": 1.0,
        "anchor_weight": 1.0,
        "loss_type": ["sigmoid", "bco_pair", "sft"],
        "loss_weights": [0.8, 0.2, 1.0],
    },
    "methods_precomputed": {"reference": "precomputed", "image_conditional_weight": 1.0, "warmup_sft_steps": 2},
}
LOGGED = ("loss", "loss/dpo", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")

# Run in a child process whose PYTHONPATH puts one version's src/ first: the same data, model and configs.
CHILD = r"""
import json, sys, torch
from pathlib import Path
from PIL import Image
from hadpo.config import load_config
from hadpo.records import PreferencePair, SFTExample, write_jsonl
from hadpo.train.config import HADPOConfig
from hadpo.train.run import run_training
from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer

out, runs, logged = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
corpus = ["USER: Describe this image in detail. ASSISTANT: There is a red square on the left.",
          "Is there a dog in the image? Yes, there is a dog. No, there is no cat."] * 40
tokenizer = train_tokenizer(corpus, vocab_size=300)
model, processor = build_tiny_llava(tokenizer, TinyLlavaSpec(text_layers=2, text_hidden=64))
model.save_pretrained(out / "model"); processor.save_pretrained(out / "model")
pairs = []
for i, (colour, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 60, 220)), ("green", (30, 200, 60))]):
    Image.new("RGB", (48, 48), rgb).save(out / f"{i}.png")
    for kind, prompt, chosen, rejected in [
        ("desc", "Describe this image in detail.", f"There is a {colour} square.", "There is a dog and a cat."),
        ("qa", "Is there a dog in the image?", "No, there is no dog.", "Yes, there is a dog."),
    ]:
        pairs.append(PreferencePair(images=[f"{i}.png"], prompt=prompt, chosen=chosen, rejected=rejected, kind=kind,
                                    image_id=str(i), pair_id=f"{kind}{i}"))
write_jsonl(out / "pairs.jsonl", pairs)
write_jsonl(out / "sft.jsonl", [SFTExample(images=[str(out / "0.png")], prompt="Describe.", response="A red square.")])
results = {}
for name, extra in runs.items():
    values = dict(model_name_or_path=str(out / "model"), pairs=str(out / "pairs.jsonl"), output_dir=str(out / name),
                  use_cpu=True, report_to="none", save_strategy="no", per_device_train_batch_size=2,
                  per_device_eval_batch_size=4, learning_rate=5e-3, lora_r=8, lora_alpha=16, max_steps=4, seed=0,
                  disable_tqdm=True, logging_steps=1, sft_data=str(out / "sft.jsonl"))
    values.update(extra)
    trainer = run_training(load_config(HADPOConfig, None, values))
    results[name] = [[entry.get(key) for key in logged] for entry in trainer.state.log_history if "loss" in entry]
print(json.dumps(results))
"""


def run_version(src: Path, folder: Path, runs: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, str(folder), json.dumps(runs), json.dumps(LOGGED)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"the run with {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the earlier commit")
    parser.add_argument("--methods", action="store_true", help="also runs with the methods' options on")
    args = parser.parse_args()
    runs = RUNS | (METHOD_RUNS if args.methods else {})
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as scratch:
        earlier = Path(scratch) / "earlier"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(earlier), args.against],
            check=True,
            capture_output=True,
        )
        try:
            before = run_version(earlier / "src", Path(scratch) / "before", runs)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(earlier)], check=True)
        now = run_version(root / "src", Path(scratch) / "now", runs)
    for name in runs:
        same = before[name] == now[name]
        print(
            f"{name}: {'identical' if same else 'DIFFERENT'} over {len(now[name])} logged steps "
            f"(last loss {now[name][-1][0]!r} now, {before[name][-1][0]!r} at {args.against})"
        )
    print(json.dumps({"against": args.against, "identical": all(before[n] == now[n] for n in runs)}))


if __name__ == "__main__":
    main()
