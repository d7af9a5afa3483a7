"""`hadpo demo`: the embedded demo on the synthetic scene world (what `make demo` runs)."""

from __future__ import annotations

from hadpo.demo import run_demo


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="HA-DPO end to end on the synthetic scene world, with a report")
    demo.add_argument("--config", help="demo YAML (world, pretrain, pairs, train, eval sections); default: built-in")
    demo.add_argument("--seed", type=int, help="seed of the world and of training")
    demo.add_argument("--runs-dir", default="runs", help="where worlds, models and reports go")
    demo.add_argument("--ablate", action="store_true",
                      help="also train without the auxiliary SFT loss, without QA pairs and without rewrites")
    demo.set_defaults(func=lambda args: run_demo(args.config, args.seed, args.runs_dir, args.ablate) and 0)
