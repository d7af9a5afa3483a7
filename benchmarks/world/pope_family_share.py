"""How many POPE negatives ask about an absent member of a present object's family, per split and questions per
image, on the world's eval split (no model needed): why the demo asks one question pair per image.

    python -m benchmarks.world.pope_family_share --seeds 0 1 2 --per-image 1 2 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hadpo.evaluate.pope import build_pope_files
from hadpo.world.demo import load_demo_config
from hadpo.world.scenes import build_world
from hadpo.world.suite import family_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-image", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args()
    print("| seed | questions per image | random | popular | adversarial |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            demo = load_demo_config(args.config, seed)
            eval_file = build_world(demo.world, args.runs_dir).images("eval")
            for per_image in args.per_image:
                files = build_pope_files(
                    eval_file,
                    Path(scratch) / f"{seed}-{per_image}",
                    num_images=demo.eval.pope_images,
                    per_image=per_image,
                    seed=seed,
                    protocol="hadpo",
                )
                shares = {split: family_share(path, eval_file, demo.world)["share"] for split, path in files.items()}
                print(
                    f"| {seed} | {per_image} | "
                    + " | ".join(f"{100 * shares[s]:.1f} %" for s in ("random", "popular", "adversarial"))
                    + " |"
                )


if __name__ == "__main__":
    main()
