"""`hadpo rounds --config rounds.yaml [key=value ...]`: parse, then call `hadpo.rounds.driver.run_rounds`."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rounds",
        help="iterative on-policy rounds: describe with the last model, judge, build pairs, train, evaluate",
        description="Run (or continue: rerun the same command after a kill) a chain of HA-DPO rounds; each "
        "round describes with the model the previous round trained (see docs/rounds.md).",
    )
    parser.add_argument("--config", required=True, help="rounds YAML (see docs/rounds.md)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. rounds=3 reference=base train.learning_rate=1e-5"
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from hadpo.rounds.config import load_rounds_config
    from hadpo.rounds.driver import run_rounds

    config = load_rounds_config(args.config, args.overrides)
    run_rounds(config, source=args.config)
    print(f"{config.out_dir}/rounds.md")
    return 0
