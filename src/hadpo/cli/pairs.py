"""`hadpo pairs describe | judge | rewrite | qa | build | import`: HA-DPO pair construction (see docs/pairs.md).

Every verb but `import` reads one build config (YAML, see configs/pairs/) and runs its stage into the config's
`out_dir`; `build` runs them all. Stages resume from what is already written.
"""

from __future__ import annotations

import json

from hadpo.config import load_config


def _add_build_arguments(parser) -> None:
    parser.add_argument("config", help="build config (YAML), e.g. configs/pairs/world.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. describe.model=runs/base/<digest>")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--dry-run", action="store_true", help="count calls and tokens; write no stage output")


def _run_stages(args) -> int:
    # Deferred: the stages import torch (describe), the openai SDK (the LLM judge) and the model families.
    from hadpo.pairs.build import STAGES, run_build
    from hadpo.pairs.config import PairsConfig

    out_dir = {"out_dir": args.out_dir} if args.out_dir else {}
    config = load_config(PairsConfig, args.config, args.overrides, out_dir, section="pairs")
    stages = STAGES if args.stage == "build" else (args.stage,)
    stats = run_build(config, stages, dry_run=args.dry_run)
    print(json.dumps(stats, indent=2))
    return 0


def _run_import(args) -> int:
    from hadpo.pairs.importer import import_release  # deferred with the stages (the pairs package imports them)

    stats = import_release(args.output, args.image_dir, args.desc_data, args.pope_data, args.seed)
    print(json.dumps(stats, indent=2))
    return 0


def register(subparsers) -> None:
    pairs = subparsers.add_parser("pairs", help="build HA-DPO preference pairs")
    verbs = pairs.add_subparsers(dest="stage", required=True)
    helps = {
        "describe": "sample descriptions from the target model",
        "judge": "label every description's sentences and correct it",
        "rewrite": "style-consistent rewrites of each pair, re-judged",
        "qa": "question pairs from the judged facts",
        "build": "all stages, then pairs.jsonl + stats.json",
    }
    for verb, text in helps.items():
        parser = verbs.add_parser(verb, help=text)
        _add_build_arguments(parser)
        parser.set_defaults(func=_run_stages)
    importer = verbs.add_parser("import", help="the HA-DPO release's desc_data.json / pope_data.json -> pairs.jsonl")
    importer.add_argument("--desc-data", help="desc_data.json of the release")
    importer.add_argument("--pope-data", help="pope_data.json of the release")
    importer.add_argument("--image-dir", required=True, help="Visual Genome images (<image_id>.jpg)")
    importer.add_argument("--output", default="runs/pairs/imported/pairs.jsonl", help="pairs.jsonl to write")
    importer.add_argument("--seed", type=int, default=0, help="seeds the description prompt chosen per image")
    importer.set_defaults(func=_run_import)
