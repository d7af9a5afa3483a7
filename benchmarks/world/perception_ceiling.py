"""What the base model can tell apart before it learns the co-occurrence "yes": the same base pretrained without its
last instruction stage (the web-like stage that teaches the "yes"; every stage before it identical, same seeds),
evaluated with the demo's suite beside the base itself. A preference method that undoes the web stage perfectly
returns at best to the first model's POPE figures: its adversarial accuracy and its recall bound what HA-DPO and
the methods after it can reach on this world (issue 19, docs/methods.md).

    python -m benchmarks.world.perception_ceiling --seeds 0 1 2 --jobs 2

Prints one JSON line per seed and a table. The base without the web stage is cached under runs/base like any
base (its config differs in the web stage's steps: 0).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hadpo.world.demo import load_demo_config
from hadpo.world.pretrain import pretrain_base
from hadpo.world.report import format_cell, lookup
from hadpo.world.scenes import build_world
from hadpo.world.suite import eval_sets, evaluate_model

FIGURES = [
    ("POPE adversarial accuracy", "pope.adversarial.accuracy"),
    ("POPE adversarial yes-ratio", "pope.adversarial.yes_ratio"),
    ("POPE random accuracy", "pope.random.accuracy"),
    ("POPE 3/image adversarial accuracy", "pope_3.adversarial.accuracy"),
    ("POPE 3/image recall", "pope_3.adversarial.recall"),
    ("held-out count accuracy", "heldout.count"),
]


def measure(seed: int, config: str, runs_dir: str, out: str) -> dict:
    torch.set_num_threads(1)  # the pool forks after torch is imported, too late for OMP_NUM_THREADS to count
    demo = load_demo_config(config, seed)
    without_web = demo.pretrain.model_copy(deep=True)
    last = without_web.stages[-1]
    last.steps, last.until_existence = 0, None
    files = build_world(demo.world, runs_dir)
    sets = eval_sets(files, demo.world, demo.eval, Path(out) / f"seed{seed}" / "questions")
    row = {"seed": seed, "last_stage": last.name}
    for name, pretrain in (("base", demo.pretrain), (f"base without {last.name}", without_web)):
        model_dir = pretrain_base(demo.world, files, pretrain, runs_dir)
        row[name] = evaluate_model(model_dir, Path(out) / f"seed{seed}" / name.replace(" ", "_"), sets, demo.eval)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", default="runs/perception_ceiling", help="answers and descriptions go here")
    parser.add_argument("--jobs", type=int, default=1, help="seeds side by side, one torch thread each")
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(
            pool.map(
                measure, args.seeds, *([value] * len(args.seeds) for value in (args.config, args.runs_dir, args.out))
            )
        )
    names = [name for name in rows[0] if name not in ("seed", "last_stage")]
    print("\n| figure | " + " | ".join(f"seed {r['seed']}: {' / '.join(names)}" for r in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for label, path in FIGURES:
        cells = [" / ".join(format_cell(lookup(r[name], path), True) for name in names) for r in rows]
        print(f"| {label} (%) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
