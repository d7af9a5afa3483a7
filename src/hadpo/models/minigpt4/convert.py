"""`hadpo models convert-minigpt4`: the MiniGPT-4 release's files -> a hadpo MiniGPT-4 folder (config, safetensors
weights, processor, generation config) that `AutoModelForImageTextToText.from_pretrained` loads.

The release assembles its model from four files, which this converter reads with their key names as LAVIS and
MiniGPT-4 write them (`KEY_RULES`, also tabled in docs/models.md):
- the MiniGPT-4 checkpoint (`prerained_minigpt4_7b.pth`, `pretrained_minigpt4_llama2_7b.pth`): `{"model": ...}`
  with the trained projection `llama_proj.*` (a full state dict of the release's model converts too);
- the EVA ViT-g weights (`eva_vit_g.pth`): keys of the ViT alone (`blocks.0.attn.qkv.weight`, ...), read under
  the release's prefix `visual_encoder.`;
- the BLIP-2 checkpoint (`blip2_pretrained_flant5xxl.pth`, Vicuna variant only): `{"model": ...}` with the
  Q-Former (`Qformer.bert.*`), its queries and `ln_vision`, besides parts MiniGPT-4 does not use (`UNUSED_RULES`);
- the language model (Vicuna v0 / Llama-2-chat) as a transformers folder, read under the prefix `llama_model.`.

Every key of every file must match exactly one rule, every weight of the model must come from exactly one key,
and every shape must agree; anything else stops the conversion with the key's name. `.pth` files are read with
`torch.load(weights_only=True)` (no code runs from them). The one weight no file holds is the Llama-2 variant's
`ln_vision`, which the release creates fresh (weight 1, bias 0) and keeps frozen: it is written so, and reported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hadpo.models.base import model_location_problem
from hadpo.models.minigpt4.modeling import VARIANTS, MiniGPT4Config, MiniGPT4ForConditionalGeneration
from hadpo.models.minigpt4.processing import minigpt4_processor

# Placeholders of the key templates below and what each matches.
FIELDS = {
    "layer": r"\d+",
    "kind": r"weight|bias",
    "fc": r"fc1|fc2",
    "block": r"attention|crossattention",
    "qkv": r"query|key|value",
    "part": r"dense|LayerNorm",
    "rest": r".+",
}
# (original key, hadpo key): every key of the release's files that MiniGPT-4 loads. `#q` / `#v` mark a third of
# a fused tensor: EVA has query and value biases but no key bias, transformers one qkv bias [q_bias, 0, v_bias].
KEY_RULES: list[tuple[str, str]] = [
    ("visual_encoder.cls_token", "vision_model.embeddings.class_embedding"),
    ("visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"),
    ("visual_encoder.patch_embed.proj.{kind}", "vision_model.embeddings.patch_embedding.{kind}"),
    ("visual_encoder.blocks.{layer}.norm1.{kind}", "vision_model.encoder.layers.{layer}.layer_norm1.{kind}"),
    ("visual_encoder.blocks.{layer}.attn.qkv.weight", "vision_model.encoder.layers.{layer}.self_attn.qkv.weight"),
    ("visual_encoder.blocks.{layer}.attn.q_bias", "vision_model.encoder.layers.{layer}.self_attn.qkv.bias#q"),
    ("visual_encoder.blocks.{layer}.attn.v_bias", "vision_model.encoder.layers.{layer}.self_attn.qkv.bias#v"),
    (
        "visual_encoder.blocks.{layer}.attn.proj.{kind}",
        "vision_model.encoder.layers.{layer}.self_attn.projection.{kind}",
    ),
    ("visual_encoder.blocks.{layer}.norm2.{kind}", "vision_model.encoder.layers.{layer}.layer_norm2.{kind}"),
    ("visual_encoder.blocks.{layer}.mlp.{fc}.{kind}", "vision_model.encoder.layers.{layer}.mlp.{fc}.{kind}"),
    ("ln_vision.{kind}", "vision_model.post_layernorm.{kind}"),
    ("query_tokens", "query_tokens"),
    ("Qformer.bert.embeddings.LayerNorm.{kind}", "qformer.layernorm.{kind}"),
    (
        "Qformer.bert.encoder.layer.{layer}.{block}.self.{qkv}.{kind}",
        "qformer.encoder.layer.{layer}.{block}.attention.{qkv}.{kind}",
    ),
    (
        "Qformer.bert.encoder.layer.{layer}.{block}.output.{part}.{kind}",
        "qformer.encoder.layer.{layer}.{block}.output.{part}.{kind}",
    ),
    (
        "Qformer.bert.encoder.layer.{layer}.intermediate_query.dense.{kind}",
        "qformer.encoder.layer.{layer}.intermediate_query.dense.{kind}",
    ),
    (
        "Qformer.bert.encoder.layer.{layer}.output_query.{part}.{kind}",
        "qformer.encoder.layer.{layer}.output_query.{part}.{kind}",
    ),
    ("llama_proj.{kind}", "language_projection.{kind}"),
    ("llama_model.{rest}", "language_model.{rest}"),
]
# (original key, why MiniGPT-4 does not use it): counted in the report, never loaded.
UNUSED_RULES: list[tuple[str, str]] = [
    ("Qformer.cls.{rest}", "the Q-Former's masked-LM head (BLIP-2 stage 1)"),
    ("Qformer.bert.embeddings.word_embeddings.{kind}", "the Q-Former's text embeddings: MiniGPT-4 feeds queries only"),
    (
        "Qformer.bert.embeddings.position_embeddings.{kind}",
        "the Q-Former's text embeddings: MiniGPT-4 feeds queries only",
    ),
    ("Qformer.bert.embeddings.position_ids", "the Q-Former's text position buffer"),
    (
        "Qformer.bert.encoder.layer.{layer}.intermediate.dense.{kind}",
        "the Q-Former's text feed-forward (queries use intermediate_query / output_query)",
    ),
    (
        "Qformer.bert.encoder.layer.{layer}.output.{part}.{kind}",
        "the Q-Former's text feed-forward (queries use intermediate_query / output_query)",
    ),
    ("t5_proj.{kind}", "the projection into BLIP-2's own language model (FlanT5)"),
    ("opt_proj.{kind}", "the projection into BLIP-2's own language model (OPT)"),
]


def _pattern(template: str) -> re.Pattern:
    """A key template ("blocks.{layer}.norm1.{kind}") as a full-match regex with one named group per field."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile(
        "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{FIELDS[part]})" for i, part in enumerate(parts))
    )


_FORWARD = [(_pattern(original), target) for original, target in KEY_RULES]
_BACKWARD = [(_pattern(target.partition("#")[0]), original) for original, target in KEY_RULES]
_UNUSED = [(_pattern(original), reason) for original, reason in UNUSED_RULES]


class ConversionError(ValueError):
    """A release file that does not convert: the message names the file and the key."""


@dataclass
class ConversionReport:
    variant: str
    mapped: dict[str, int] = field(default_factory=dict)  # source -> keys loaded
    unused: dict[str, int] = field(default_factory=dict)  # reason -> keys skipped
    initialised: list[str] = field(default_factory=list)  # weights written as the release creates them

    def as_dict(self) -> dict:
        return {"variant": self.variant, "mapped": self.mapped, "unused": self.unused, "initialised": self.initialised}


def map_key(key: str) -> tuple[str | None, str]:
    """(hadpo key, "") for a mapped key, (None, reason) for a key MiniGPT-4 does not use; ConversionError else."""
    for pattern, target in _FORWARD:
        match = pattern.fullmatch(key)
        if match:
            return target.format(**match.groupdict()), ""
    for pattern, reason in _UNUSED:
        if pattern.fullmatch(key):
            return None, reason
    raise ConversionError(f"key '{key}' is not in the MiniGPT-4 release layout hadpo knows (docs/models.md)")


def original_keys(name: str) -> list[str]:
    """The release key(s) a hadpo weight comes from (both EVA biases for a fused qkv bias)."""
    found = []
    for pattern, original in _BACKWARD:
        match = pattern.fullmatch(name)
        if match:
            found.append(original.format(**match.groupdict()))
    return found


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a `.pth` (plain, or under "model" as LAVIS saves) or `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure is one line about the file
            raise ConversionError(f"{path}: not a weights-only torch checkpoint ({error.__class__.__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: expected a state dict of tensors")
    return state


def release_config(variant: str, text_config, image_token_index: int, overrides: dict | None = None) -> MiniGPT4Config:
    """The release's architecture for `variant` (EVA ViT-g at 224 px; BLIP-2's Q-Former with 32 queries for
    Vicuna; 4 patches per token for Llama-2) around `text_config`; `overrides` replaces any of its keys."""
    if variant not in VARIANTS:
        raise ConversionError(f"unknown MiniGPT-4 variant '{variant}'; expected one of {', '.join(VARIANTS)}")
    values = {
        "vision_config": {},
        "qformer_config": {} if variant == "vicuna" else None,
        "num_query_tokens": 32,
        "patches_per_token": 4,
    } | dict(overrides or {})
    if (values["qformer_config"] is None) != (variant == "llama2"):
        raise ConversionError(f"the {variant} variant {'has no' if variant == 'llama2' else 'needs a'} Q-Former")
    return MiniGPT4Config(text_config=text_config.to_dict(), image_token_index=image_token_index, **values)


def convert_minigpt4(
    variant: str,
    checkpoint: str | Path,
    vision: str | Path,
    language_model: str | Path,
    output: str | Path,
    qformer: str | Path | None = None,
    dtype: str = "float16",
    config_overrides: dict | None = None,
) -> ConversionReport:
    """Convert the release's files (see the module docstring) into `output`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if (qformer is None) != (variant == "llama2"):
        raise ConversionError(
            "the Vicuna variant needs the BLIP-2 checkpoint (--qformer); the Llama-2 variant has no Q-Former"
        )
    for flag, path in (("--checkpoint", checkpoint), ("--vision", vision), ("--qformer", qformer)):
        if path is not None and not Path(path).is_file():  # before minutes of loading the language model
            raise ConversionError(f"{flag} {path}: no such file")
    if problem := model_location_problem(str(language_model)):
        raise ConversionError(f"--language-model {problem}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(language_model))
        lm = AutoModelForCausalLM.from_pretrained(str(language_model), dtype=getattr(torch, dtype))
    except OSError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise ConversionError(f"{language_model}: cannot load the language model ({first_line})") from None
    # source -> (the prefix its keys are read under, unless they carry it already; its state dict)
    sources = {
        str(checkpoint): ("", read_weights(checkpoint)),
        str(vision): ("visual_encoder.", read_weights(vision)),
        str(language_model): ("llama_model.", lm.state_dict()),
    }
    if qformer is not None:
        sources[str(qformer)] = ("", read_weights(qformer))
    config = release_config(variant, lm.config, 0, config_overrides)
    processor = minigpt4_processor(tokenizer, variant, config.num_image_tokens, config.vision_config.image_size)
    config.image_token_index = processor.image_token_id
    with torch.device("meta"):  # shapes only: the weights come from the files
        model = MiniGPT4ForConditionalGeneration(config)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}

    report = ConversionReport(variant)
    weights = map_sources(sources, expected, report)
    if variant == "llama2":
        for name, value in (("weight", 1.0), ("bias", 0.0)):
            key = f"vision_model.post_layernorm.{name}"
            if key not in weights:  # the release's fresh, frozen ln_vision
                weights[key] = torch.full(expected[key], value)
                report.initialised.append(key)
    missing = [name for name in expected if name not in weights]
    if missing:
        wanted = " or ".join(f"'{key}'" for key in original_keys(missing[0])) or "a key"
        raise ConversionError(
            f"missing key: no file has {wanted} (for '{missing[0]}'; {len(missing)} weight(s) missing in all)"
        )
    state = {name: tensor.to(getattr(torch, dtype)) for name, tensor in weights.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=end_token_ids(tokenizer, processor.end_symbol),
    )
    output = Path(output)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    provenance = report.as_dict() | {"files": list(sources)}
    (output / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return report


def map_sources(
    sources: dict[str, tuple[str, dict[str, torch.Tensor]]], expected: dict[str, torch.Size], report: ConversionReport
) -> dict[str, torch.Tensor]:
    """Every key of every source through the rules; errors name the file and the key. A target `name#part` is
    one third of a fused qkv bias, joined once both parts are read."""
    weights: dict[str, torch.Tensor] = {}
    given_by: dict[str, str] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for source, (prefix, state) in sources.items():
        for name, tensor in state.items():
            key = name if name.startswith(prefix) else prefix + name
            where = f"{source}: key '{name}'" + (f" (read as '{key}')" if key != name else "")
            try:
                target, reason = map_key(key)
            except ConversionError as error:
                raise ConversionError(
                    f"{where} is not in the MiniGPT-4 release layout hadpo knows (docs/models.md)"
                ) from error
            if target is None:
                report.unused[reason] = report.unused.get(reason, 0) + 1
                continue
            fused, _, part = target.partition("#")
            if fused not in expected:
                raise ConversionError(
                    f"{where} maps to '{fused}', which a {report.variant} MiniGPT-4 of this configuration does not have"
                )
            shape = (expected[fused][0] // 3,) if part else tuple(expected[fused])
            if tuple(tensor.shape) != shape:
                raise ConversionError(f"{where} has shape {tuple(tensor.shape)}, '{target}' needs {shape}")
            if target in given_by:
                raise ConversionError(f"{where} gives '{target}', already given by {given_by[target]}")
            given_by[target] = source
            report.mapped[source] = report.mapped.get(source, 0) + 1
            if part:
                parts.setdefault(fused, {})[part] = tensor
            else:
                weights[target] = tensor
    for fused, pieces in parts.items():
        if set(pieces) != {"q", "v"}:
            # the EVA keys end in q_bias / v_bias: the absent one's first letter is not among the parts read
            absent = " and ".join(f"'{key}'" for key in original_keys(fused) if key.rsplit(".", 1)[1][0] not in pieces)
            raise ConversionError(f"missing key: no file has {absent} (the other half of '{fused}')")
        weights[fused] = torch.cat([pieces["q"], torch.zeros_like(pieces["q"]), pieces["v"]])
    return weights


def end_token_ids(tokenizer, end_symbol: str) -> list[int]:
    """Generation stops at the end-of-sequence token and, for Vicuna's `###`, at that symbol when it is one
    token (the release's chat stops on it too)."""
    ids = [tokenizer.eos_token_id]
    symbol = tokenizer(end_symbol, add_special_tokens=False)["input_ids"]
    if len(symbol) == 1 and symbol[0] not in ids:
        ids.append(symbol[0])
    return ids
