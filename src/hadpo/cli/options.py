"""Options the `hadpo eval` verbs share, and the readers that turn them into configs: the model and its decoding
(one option per `DecodingConfig` key), the scoring protocol, the export layouts, and SHR's judge (a
`JudgeConfig`: `--judge-config`, the `--judge-*` flags, `--judge-set key=value`).

The judge and export modules are imported where they are used: the parser is built on every `hadpo` call, which
then need not import the openai SDK or the export layouts (the parser itself needs `DecodingConfig`, so
`hadpo.inference` and torch are imported anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing

from hadpo.config import load_config, validate_config
from hadpo.files import check_dir
from hadpo.inference import DecodingConfig

# SHR's judge flags, kept from the releases before --judge-config: each sets one key of the judge config.
JUDGE_FLAGS = {
    "--judge": ("kind", "annotations: offline, for complete annotations (the world); llm: a chat endpoint"),
    "--base-url": ("llm.base_url", "OpenAI-compatible endpoint (default https://api.openai.com/v1)"),
    "--judge-model": ("llm.model", "the endpoint's model (default gpt-4o)"),
    "--api-key-env": ("llm.api_key_env", "environment variable holding the API key (default OPENAI_API_KEY)"),
    "--judge-prompt": ("template", "prompt template name or file (default judge_v1)"),
    "--judge-temperature": ("llm.temperature", "sampling temperature (default 0)"),
    "--judge-cache": ("llm.cache_dir", "folder caching the judge's answers (default: no cache)"),
    "--judge-concurrency": ("llm.max_concurrency", "requests in flight at once (default 4)"),
}


def export_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        nargs="+",
        choices=["lmms-eval", "vlmevalkit"],
        default=[],
        help="also write the results in lmms-eval's and/or VLMEvalKit's result layout under --out",
    )


def export(args) -> None:
    if args.export:
        from hadpo.evaluate.export import write_exports

        for path in write_exports(args.out, args.export):
            print(f"exported {path}", file=sys.stderr)  # stdout may be JSON


def protocol_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--protocol",
        choices=["reference", "hadpo"],
        default="reference",
        help=f"scoring rules (default reference, comparable with published numbers); {help_text}",
    )


def model_arguments(parser: argparse.ArgumentParser, max_new_tokens: int, num_beams: int, required=True) -> None:
    """--model, --out, and one option per `DecodingConfig` key (its help text and default, or this verb's)."""
    parser.add_argument("--model", required=required, help="model folder or hub id (AutoModelForImageTextToText)")
    parser.add_argument("--out", required=True, help="output folder: answers, detail, results.json, results.md")
    defaults = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}
    for name, field in DecodingConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action="store_true", help=field.description)
            continue
        choices = typing.get_args(field.annotation) or None
        parser.add_argument(
            flag,
            type=None if choices else field.annotation,
            choices=choices,
            default=defaults.get(name, field.default),
            help=field.description,
        )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def decoding(args):
    """The `DecodingConfig` of the model options."""
    return validate_config(
        DecodingConfig, {name: getattr(args, name) for name in DecodingConfig.model_fields}, "command line"
    )


def judge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge-config",
        help="the judge (docs/evaluation.md): a YAML of judge config keys, or a pair build's config (its judge: "
        "section), so that SHR judges as the pairs were judged; without it, the llm judge",
    )
    for flag, (key, help_text) in JUDGE_FLAGS.items():
        choices = ["annotations", "llm"] if key == "kind" else None
        parser.add_argument(flag, choices=choices, help=f"{help_text}; sets the judge config's {key}")
    parser.add_argument(
        "--judge-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="judge config keys set last, e.g. llm.json_mode=true llm.requests_per_minute=60",
    )


def judge_config(args):
    """The `JudgeConfig` of the judge options: --judge-config (or the llm judge with SHR's prompt, judge_v1),
    then the flags, then --judge-set; a bad key or value is one line naming it."""
    from hadpo.judge.config import JudgeConfig

    # Without a config: the LLM judge with judge_v1, the prompt SHR's published numbers were judged with.
    flags: dict = {} if args.judge_config else {"kind": "llm", "template": "judge_v1"}
    for flag, (key, _) in JUDGE_FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            *sections, leaf = key.split(".")
            node = flags
            for section in sections:
                node = node.setdefault(section, {})
            node[leaf] = value
    source = args.judge_config or "the --judge options"
    return load_config(JudgeConfig, args.judge_config, flags, args.judge_set, section="judge", source=source)


def check_out(args) -> None:
    check_dir(args.out, "--out")  # a file in its place fails now, not after the model has run


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))
