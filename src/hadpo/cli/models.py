"""`hadpo models convert-minigpt4`: the MiniGPT-4 release's files -> a model folder hadpo (and transformers, once
hadpo is imported) loads like any checkpoint. Parses arguments and calls `hadpo.models.minigpt4.convert`."""

from __future__ import annotations

import json

from hadpo.files import check_dir, read_json
from hadpo.records import RecordError


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="model conversion: MiniGPT-4's release files")
    verbs = parser.add_subparsers(dest="models_verb", required=True)
    convert = verbs.add_parser(
        "convert-minigpt4",
        help="convert the MiniGPT-4 release (checkpoint, EVA ViT-g, BLIP-2 Q-Former, LLM) to a hadpo model folder",
        description="Every key of every file must map (docs/models.md lists the layout); an unknown or missing "
        "key stops the conversion with its name.",
    )
    convert.add_argument(
        "--variant",
        required=True,
        choices=["vicuna", "llama2"],
        help="vicuna: Q-Former + Vicuna v0; llama2: 4 patches per token + Llama-2-chat",
    )
    convert.add_argument(
        "--checkpoint",
        required=True,
        help="MiniGPT-4 checkpoint with llama_proj (prerained_minigpt4_7b.pth, pretrained_minigpt4_llama2_7b.pth)",
    )
    convert.add_argument("--vision", required=True, help="EVA ViT-g weights (LAVIS's eva_vit_g.pth)")
    convert.add_argument(
        "--qformer", help="vicuna: BLIP-2 checkpoint with the Q-Former (blip2_pretrained_flant5xxl.pth)"
    )
    convert.add_argument(
        "--language-model",
        required=True,
        help="the LLM as a transformers folder: Vicuna v0 (vicuna) or Llama-2-7b-chat (llama2)",
    )
    convert.add_argument("--out", required=True, help="output folder")
    convert.add_argument(
        "--dtype",
        default="float16",
        choices=["float16", "bfloat16", "float32"],
        help="dtype of the saved weights (the release runs in float16)",
    )
    convert.add_argument(
        "--config",
        help="JSON of MiniGPT4Config keys replacing the release architecture's "
        "(vision_config, qformer_config, num_query_tokens, ...); for other sizes",
    )
    convert.set_defaults(func=_convert_minigpt4)


def _convert_minigpt4(args) -> int:
    from hadpo.models.minigpt4.convert import convert_minigpt4  # deferred: the model families load transformers

    overrides = read_json(args.config) if args.config else None
    if overrides is not None and not isinstance(overrides, dict):
        raise RecordError(f"--config {args.config}: expected a JSON object of MiniGPT4Config keys")
    check_dir(args.out, "--out")
    report = convert_minigpt4(
        args.variant,
        args.checkpoint,
        args.vision,
        args.language_model,
        args.out,
        qformer=args.qformer,
        dtype=args.dtype,
        config_overrides=overrides,
    )
    print(json.dumps(report.as_dict(), indent=2))
    return 0
