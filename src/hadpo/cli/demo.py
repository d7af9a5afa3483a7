"""`hadpo demo`: the embedded demo on the scene world (what `make demo` runs)."""

from __future__ import annotations

from hadpo.demo import run_demo


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run the embedded demo on the synthetic scene world")
    demo.add_argument("--config", help="demo YAML (`world:` and `pretrain:` sections); default: built-in")
    demo.add_argument("--seed", type=int, help="seed of the world and of training")
    demo.add_argument("--runs-dir", default="runs", help="where worlds, models and reports go")
    demo.set_defaults(func=lambda args: run_demo(args.config, args.seed, args.runs_dir) and 0)
