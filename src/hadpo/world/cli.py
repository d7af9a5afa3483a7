"""The world's verbs, `hadpo world build | pretrain` and `hadpo demo`, found by `hadpo.cli` through the
`hadpo.cli` entry-point group (pyproject.toml), so that the toolkit's command line never imports the world.

`hadpo` builds its parser, and so calls `register` here, on every call: the world's modules (the tiny LLaVA's
transformers classes, the demo's stages) are imported when a world verb runs, not by every other verb.
"""

from __future__ import annotations


def register(subparsers) -> None:
    register_world(subparsers)
    register_demo(subparsers)


def register_demo(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="HA-DPO end to end on the synthetic scene world, with a report")
    demo.add_argument(
        "--config",
        help="demo YAML, e.g. configs/demo.yaml (default: the defaults, whose recipes are "
        "configs/pairs/world.yaml and configs/world_hadpo.yaml under the working folder)",
    )
    demo.add_argument("--seed", type=int, help="seed of the world and of training")
    demo.add_argument("--runs-dir", default="runs", help="where worlds, models and reports go")
    demo.add_argument(
        "--ablate",
        action="store_true",
        help="also train without the auxiliary SFT loss, without QA pairs and without rewrites",
    )
    demo.add_argument(
        "--methods",
        nargs="+",
        default=[],
        metavar="NAME",
        help="also train these methods of the config's `methods` section (or `all`) from the same base and pairs, "
        "each evaluated (docs/methods.md)",
    )
    demo.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="HA-DPO as N on-policy rounds, each describing with the model the round before trained, against "
        "the same-steps baseline (runs/demo/seed<N>-rounds/; docs/rounds.md)",
    )
    demo.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="demo config keys on top of --config, e.g. train.logps_reduction=sum eval.pope_images=200",
    )
    demo.set_defaults(func=_demo)


def register_world(subparsers) -> None:
    world = subparsers.add_parser("world", help="build the scene world and pretrain its base model")
    verbs = world.add_subparsers(dest="world_command", required=True)
    for name, func, help_text in [
        ("build", _build, "render the world's splits (images, images JSONL, COCO instances)"),
        ("pretrain", _pretrain, "train (or reuse) the tiny base LLaVA on the pretrain split"),
    ]:
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument("--config", help="YAML with `world:` and `pretrain:` sections (default: built-in)")
        verb.add_argument("--seed", type=int, help="world and training seed (overrides the config)")
        verb.add_argument("--runs-dir", default="runs", help="where worlds and models are cached")
        verb.set_defaults(func=func)


def _demo(args) -> int:
    if args.rounds is None:
        from hadpo.world.demo import run_demo  # deferred: see the module docstring

        run_demo(args.config, args.seed, args.runs_dir, args.ablate, args.overrides, args.methods)
        return 0
    if args.ablate or args.methods or args.rounds < 1:
        raise ValueError(
            "--rounds N needs N >= 1 and runs without --ablate or --methods (those train one-round variants)"
        )
    from hadpo.world.rounds import run_demo_rounds  # deferred: see the module docstring

    run_demo_rounds(args.config, args.seed, args.runs_dir, args.rounds, args.overrides)
    return 0


def _build(args) -> int:
    from hadpo.world.demo import load_demo_config  # deferred: see the module docstring
    from hadpo.world.scenes import build_world

    files = build_world(load_demo_config(args.config, args.seed).world, args.runs_dir)
    print(files.root)
    return 0


def _pretrain(args) -> int:
    from hadpo.world.demo import load_demo_config  # deferred: see the module docstring
    from hadpo.world.pretrain import pretrain_base
    from hadpo.world.scenes import build_world

    demo = load_demo_config(args.config, args.seed)
    model_dir = pretrain_base(demo.world, build_world(demo.world, args.runs_dir), demo.pretrain, args.runs_dir)
    print(model_dir)
    return 0
