"""Measure the world's base model across seeds (and recipe variants): pretraining time per stage, what it sees,
and how it hallucinates (the existence questions and description measures of hadpo.world.evalsets, asked
through hadpo.inference; and pretrain.json's held-out existence accuracy per probe kind after each stage).
Prints one JSON line per run, a table of the figures and a table of the stages.

    python -m benchmarks.world.world_recipe --seeds 0 1 2
    python -m benchmarks.world.world_recipe --seeds 0 --variant short stages.web.steps=800 \
        --variant hard stages.hard.partner_share=1.0
    python -m benchmarks.world.world_recipe --device auto --jobs 4      # on a machine with a GPU / more cores

A variant is NAME followed by pretrain (`key=value`, `stages.STAGE.key=value`) or world (`world.key=value`)
overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from hadpo.config import validate_config
from hadpo.evaluate.pope import read_questions
from hadpo.inference import DecodingConfig, Query, describe_images, load_model, run_queries
from hadpo.records import Answer, ImageRecord, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.demo import load_demo_config
from hadpo.world.evalsets import description_metrics, existence_metrics, write_existence_questions
from hadpo.world.pretrain import PretrainConfig, pretrain_base
from hadpo.world.scenes import WorldFiles, build_world


def override(data: dict, dotted: str, value) -> None:
    """Set `dotted` in nested config data; in a list of named items (the stages) a key names an item."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        if isinstance(node, list):
            node = next((item for item in node if item.get("name") == key), None)
            if node is None:
                raise SystemExit(f"{dotted}: no stage named {key!r}")
        else:
            node = node.setdefault(key, {})  # an unknown key is then refused by the config, with its name
    if isinstance(node, list):
        raise SystemExit(f"{dotted}: name a stage and its setting, e.g. stages.web.steps")
    node[leaf] = value


def job_configs(job: dict) -> tuple[WorldConfig, PretrainConfig]:
    demo = load_demo_config(job["config"], job["seed"])
    world_data, pretrain_data = demo.world.model_dump(), demo.pretrain.model_dump()
    for dotted, value in job["world"].items():
        override(world_data, dotted, value)
    for dotted, value in {**job["pretrain"], "device": job["device"]}.items():
        override(pretrain_data, dotted, value)
    return (
        validate_config(WorldConfig, world_data, job["name"]),
        validate_config(PretrainConfig, pretrain_data, job["name"]),
    )


def measure(model_dir: Path, files: WorldFiles, world: WorldConfig, device: str) -> dict:
    """Greedy descriptions of the eval scenes and logits-mode answers to their existence questions."""
    eval_file = files.images("eval")
    images = read_jsonl(eval_file, ImageRecord)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        described = describe_images(
            str(model_dir),
            eval_file,
            out / "descriptions.jsonl",
            DecodingConfig(batch_size=32, max_new_tokens=96, device=device),
            progress=False,
        )
        texts = {a.question_id: a.text for a in read_jsonl(described, Answer)}
        questions, _ = read_questions(
            write_existence_questions(images, eval_file, world, out / "existence.jsonl", world.seed)
        )
        model, processor = load_model(model_dir, device)
        queries = [Query(q.question_id, out / q.image, q.text, image_id=q.image) for q in questions]
        run_queries(
            model,
            processor,
            queries,
            out / "answers.jsonl",
            DecodingConfig(mode="logits", batch_size=64, device=device),
            progress=False,
        )
        said_yes = {a.question_id: a.text == "yes" for a in read_jsonl(out / "answers.jsonl", Answer)}
    return {**description_metrics(images, texts, world), "existence": existence_metrics(questions, said_yes)}


def run(job: dict) -> dict:
    if job["threads"]:
        import torch

        torch.set_num_threads(job["threads"])
    world, pretrain = job_configs(job)
    files = build_world(world, job["runs_dir"])
    started = time.perf_counter()
    model_dir = pretrain_base(world, files, pretrain, job["runs_dir"])
    wall = time.perf_counter() - started
    report = json.loads((model_dir / "pretrain.json").read_text())
    result = measure(model_dir, files, world, job["device"] if job["device"] != "auto" else "cpu")
    return {
        "variant": job["name"],
        "seed": job["seed"],
        "pretrain_seconds": report["total_seconds"],
        "wall_seconds_this_run": round(wall, 1),
        "patch_accuracy": round(report["patch_accuracy"], 4),
        "recall": round(result["recall"], 4),
        "hallucinating": round(result["hallucinating"], 4),
        **{
            f"{kind}_{name}": round(result["existence"][kind][name], 4)
            for kind, name in [
                ("random", "accuracy"),
                ("random", "yes_ratio"),
                ("random", "balanced_accuracy"),
                ("adversarial", "accuracy"),
                ("adversarial", "balanced_accuracy"),
                ("adversarial", "yes_ratio"),
            ]
        },
        # held-out pretrain images, one question each, first answer token (hadpo.world.probes.existence_accuracy)
        "stages": {
            name: {"steps": stage["steps"], "seconds": stage["seconds"], **stage["existence_after"]}
            for name, stage in report["stages"].items()
        },
    }


def print_table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join("-" if cell is None else str(cell) for cell in row) + " |")


def parse_variants(raw: list[list[str]]) -> list[tuple[str, dict, dict]]:
    variants = []
    for name, *settings in raw or [["default"]]:
        pretrain, world = {}, {}
        for setting in settings:
            key, _, value = setting.partition("=")
            target = world if key.startswith("world.") else pretrain
            target[key.removeprefix("world.")] = yaml.safe_load(value)
        variants.append((name, pretrain, world))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variant", nargs="+", action="append", metavar="NAME [KEY=VALUE ...]")
    parser.add_argument("--config", help="demo YAML to start from")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--out", help="append each run's JSON line to this file as it finishes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = default)")
    args = parser.parse_args()
    jobs = [
        {
            "name": name,
            "pretrain": pretrain,
            "world": world,
            "seed": seed,
            "config": args.config,
            "runs_dir": args.runs_dir,
            "device": args.device,
            "threads": args.threads,
        }
        for name, pretrain, world in parse_variants(args.variant)
        for seed in args.seeds
    ]
    os.environ.setdefault("TQDM_DISABLE", "1")
    for job in jobs:  # build each world once, before runs share it
        build_world(job_configs(job)[0], job["runs_dir"])
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for future in as_completed([pool.submit(run, job) for job in jobs]):
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(rows[-1]) + "\n")
    header = [key for key in rows[0] if key != "stages"]
    print_table(header, [[row[key] for key in header] for row in rows])
    print()
    kinds = ["present", "random", "family"]
    print_table(
        ["variant", "seed", "stage", "steps", "seconds", *(f"existence after: {k}" for k in kinds)],
        [
            [row["variant"], row["seed"], name, stage["steps"], stage["seconds"], *(stage[k] for k in kinds)]
            for row in rows
            for name, stage in row["stages"].items()
        ],
    )


if __name__ == "__main__":
    main()
