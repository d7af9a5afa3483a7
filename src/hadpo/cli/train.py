"""`hadpo train CONFIG.yaml [key=value ...] [--resume]`: parse, then call `hadpo.train.run.run_training`."""

from __future__ import annotations

from hadpo.config import load_config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="HA-DPO training (DPO + auxiliary SFT) of a VLM on preference pairs",
        description="Train with a YAML recipe; key=value overrides any config key (see docs/training.md).",
    )
    parser.add_argument("config", nargs="?", help="YAML training config (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. learning_rate=1e-5 max_steps=10")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in output_dir")
    parser.add_argument("--help-config", action="store_true", help="list every HA-DPO config key and exit")
    parser.set_defaults(func=run)


def run(args) -> int:
    # Deferred: TrainingArguments and the trainer import transformers' training code and PEFT (seconds), which
    # the parser, built on every `hadpo` call, does not need.
    from hadpo.train.config import HADPOConfig

    if args.help_config:
        print("\n".join(HADPOConfig.help_lines()))
        return 0
    if args.config is None:
        raise ValueError("hadpo train needs a CONFIG.yaml (or --help-config)")
    from hadpo.train.run import run_training

    run_training(load_config(HADPOConfig, args.config, args.overrides), resume=args.resume)
    return 0
