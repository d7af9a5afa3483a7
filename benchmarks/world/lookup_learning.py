"""How fast does a from-scratch tiny Llama learn to look a question's object up in its context? The skill
existence questions need (docs/world.md, "Lessons from earlier recipes"). Prints accuracy on the yes/no token
every 150 steps; no hadpo code involved, only transformers.

    python -m benchmarks.world.lookup_learning --layout list --heads 8      # objects as a list of tokens
    python -m benchmarks.world.lookup_learning --layout slots --heads 8     # objects in 9 mostly empty slots
    python -m benchmarks.world.lookup_learning --layout list --heads 4 --question-tail 0  # object last, then answer
"""

from __future__ import annotations

import argparse
import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

NAMES, EMPTY, PAD, YES, NO = 10, 10, 11, 12, 13  # token ids 0-9 are object names
FILLER = list(range(14, 20))  # stand-ins for " in the image ? ASSISTANT :"


def sample(rng: random.Random, layout: str, tail: int) -> tuple[list[int], int]:
    objects = rng.sample(range(NAMES), rng.randint(1, 4))
    asked = rng.choice(objects) if rng.random() < 0.5 else rng.choice([n for n in range(NAMES) if n not in objects])
    if layout == "slots":
        context = [EMPTY] * 9
        for name, slot in zip(objects, rng.sample(range(9), len(objects))):
            context[slot] = name
    else:
        context = objects
    return context + FILLER[:2] + [asked] + FILLER[2 : 2 + tail], YES if asked in objects else NO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=["list", "slots"], default="list")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--question-tail", type=int, default=4, help="tokens between the object and the answer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    config = LlamaConfig(
        vocab_size=24,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(args.seed)
    for step in range(args.steps):
        batch = [sample(rng, args.layout, args.question_tail) for _ in range(args.batch)]
        length = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((args.batch, length), PAD)
        mask = torch.zeros_like(input_ids)
        for row, (ids, _) in enumerate(batch):  # left padding: the answer is always predicted at the end
            input_ids[row, length - len(ids) :] = torch.tensor(ids)
            mask[row, length - len(ids) :] = 1
        labels = torch.tensor([answer for _, answer in batch])
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 150 == 0 or step == args.steps - 1:
            accuracy = (logits[:, [YES, NO]].argmax(-1) == (labels == NO).long()).float().mean().item()
            print(f"step {step:5d}  loss {loss.item():.3f}  batch accuracy {accuracy:.2f}", flush=True)


if __name__ == "__main__":
    main()
