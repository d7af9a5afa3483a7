"""Yes/no evaluation speed: POPE-shaped questions answered from next-token probabilities (`--mode logits`, each
image encoded once, its questions continued from that encoding) against generate mode, on the same model.

The model is harness.py's random-init LLaVA with LLaVA-1.5's proportions, its head made to answer: the rows
of " yes" and " no" point along the main direction of the last hidden states over the questions, with a bias
that splits them about in half, so greedy decoding starts with yes or no for some questions and the other for
the rest (a random head would answer neither, and agreement would be vacuous). Generate mode decodes
`--max-new-tokens` tokens (default 2: what a model answering one word and an end token costs, as LLaVA-1.5 does
with POPE's "Answer the question using a single word or phrase."). Both modes answer the same questions with
the same batch size and threads, through `hadpo.inference.run_queries`, in runs that alternate between them;
the figure is questions per second, median over runs with min-max. Agreement: the share of questions whose
generated answer starts with yes/no where the logits mode gives the same word (`hadpo.inference.mode_agreement`).

    python -m benchmarks.speed.eval_speed                    # CPU, tiny-576; ~3 min at load 7 on 2 cores
    python -m benchmarks.speed.eval_speed --images 80 --runs 5 --json

Absolute times depend on the machine and its load; the ratio of one invocation is the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.speed.harness import SHAPES, build_model, interleaved, set_threads, spread, write_images
from hadpo.inference import DecodingConfig, Query, answer_token_ids, chat_prompt, mode_agreement, run_queries
from hadpo.records import Answer, read_jsonl

OBJECTS = ["square", "circle", "knife", "table", "dog", "image"]
QUESTIONS_PER_IMAGE = 6  # POPE: three present objects, each followed by an absent one
# LLaVA-1.5 asks POPE with this instruction after the question (its model_vqa_loader / eval scripts).
INSTRUCTION = " Answer the question using a single word or phrase."


def pope_queries(images: list[Path], seed: int = 0) -> list[Query]:
    generator = torch.Generator().manual_seed(seed)
    queries = []
    for index, image in enumerate(images):
        for k in range(QUESTIONS_PER_IMAGE):
            name = OBJECTS[int(torch.randint(len(OBJECTS), (1,), generator=generator))]
            queries.append(
                Query(f"{index}-{k}", image, f"Is there a {name} in the image?{INSTRUCTION}", image_id=str(index))
            )
    return queries


def bias_head(model, processor, queries: list[Query], margin: float = 5.0) -> None:
    """Give " yes" and " no" head rows +-s*w (w the main direction of the last hidden states over the queries)
    and biases splitting the queries at the median, scaled so the median |log P(yes) - log P(no)| is `margin`."""
    from hadpo.train.collate import load_image

    [yes_id], [no_id] = answer_token_ids(processor, ["yes", "no"])
    processor.tokenizer.padding_side = "left"
    hidden = []
    for start in range(0, len(queries), 16):
        part = queries[start : start + 16]
        inputs = processor(
            images=[load_image(str(q.image)) for q in part],
            text=[chat_prompt(processor, q.prompt) for q in part],
            return_tensors="pt",
            padding=True,
        )
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            out = model(**inputs, position_ids=positions, output_hidden_states=True)
        hidden.append(out.hidden_states[-1][:, -1])
    hidden = torch.cat(hidden)
    direction = torch.linalg.svd(hidden - hidden.mean(0), full_matrices=False).Vh[0]
    projection = hidden @ direction
    threshold = projection.median()
    scale = margin / (2 * (projection - threshold).abs().median())
    old = model.lm_head
    head = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.weight[yes_id], head.weight[no_id] = scale * direction, -scale * direction
        head.bias[yes_id], head.bias[no_id] = -scale * threshold, scale * threshold
    model.lm_head = head


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", choices=list(SHAPES), default="tiny-576", help="tiny-576: LLaVA-1.5's 576 image tokens; tiny: 144"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=40, help="images, 6 questions each")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode, interleaved")
    parser.add_argument("--batch-size", type=int, default=24, help="questions per batch, both modes")
    parser.add_argument("--max-new-tokens", type=int, default=2, help="generate mode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    model, processor = build_model(args.model, args.device)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        queries = pope_queries(write_images(folder, args.images, model.config.vision_config.image_size))
        bias_head(model, processor, queries)
        model.to(args.device)
        seconds: dict[str, list[float]] = {"logits": [], "generate": []}
        cpu_seconds: dict[str, list[float]] = {"logits": [], "generate": []}
        outputs = {}
        for number, mode in enumerate(interleaved(["logits", "generate"], args.runs)):
            config = DecodingConfig(
                mode=mode, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, device=args.device
            )
            outputs[mode] = folder / f"{mode}{number}.jsonl"
            started, cpu_started = time.perf_counter(), time.process_time()
            run_queries(model, processor, queries, outputs[mode], config, progress=False)
            seconds[mode].append(time.perf_counter() - started)
            cpu_seconds[mode].append(time.process_time() - cpu_started)
        generated, logits = read_jsonl(outputs["generate"], Answer), read_jsonl(outputs["logits"], Answer)
    agreement = mode_agreement(generated, logits)
    rates = {mode: [len(queries) / s for s in runs] for mode, runs in seconds.items()}
    forward, generate = spread(rates["logits"]), spread(rates["generate"])
    cpu_rates = {mode: spread([len(queries) / s for s in runs]) for mode, runs in cpu_seconds.items()}
    yes_share = sum(a.text == "yes" for a in logits) / len(logits)
    image_tokens = model.config.image_seq_length
    print(
        f"model {args.model} ({args.device}, {args.threads} thread(s)): {image_tokens} image tokens, "
        f"{len(queries)} questions on {args.images} images, batch {args.batch_size}; generate decodes "
        f"{args.max_new_tokens} tokens; logits-mode answers yes on {100 * yes_share:.0f} %"
    )
    print(f"{'mode':<10} {'questions/s':>12} {'(min-max)':>18} {'per CPU second':>15}")
    for name, (median, low, high) in (("logits", forward), ("generate", generate)):
        print(f"{name:<10} {median:>12.1f} {f'({low:.1f}-{high:.1f})':>18} {cpu_rates[name][0]:>15.1f}")
    print(
        f"logits / generate: {forward[0] / generate[0]:.2f}x wall, "
        f"{cpu_rates['logits'][0] / cpu_rates['generate'][0]:.2f}x CPU time; agreement {agreement['agreed']}/"
        f"{agreement['compared']} generated answers starting with yes/no"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "forward_q_per_s": forward[0],
                    "generate_q_per_s": generate[0],
                    "agreement": agreement["rate"],
                    "ratio": forward[0] / generate[0],
                    "compared": agreement["compared"],
                    "questions": len(queries),
                    "cpu_ratio": cpu_rates["logits"][0] / cpu_rates["generate"][0],
                    "forward_q_per_s_min_max": list(forward[1:]),
                    "generate_q_per_s_min_max": list(generate[1:]),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
