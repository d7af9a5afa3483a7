"""The MiniGPT-4 release's key layout: which key of its files loads into which weight of hadpo's MiniGPT-4
(`KEY_RULES`), which keys the release itself never loads and why (`UNUSED_RULES`, `DEPTH_RULE`: named rules whose
keys are skipped and counted), and the mapping of whole files through them (`map_sources`). The converter
(`convert.py`) reads the files; docs/models.md tables these rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

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
# (original key, why MiniGPT-4 does not use it): named rules, each counted in the report, never loaded. They are
# tried before KEY_RULES (whose `llama_model.{rest}` would take the rotary buffer).
UNUSED_RULES: list[tuple[str, str]] = [
    (
        "llama_model.model.layers.{layer}.self_attn.rotary_emb.inv_freq",
        "a buffer: the Llama rotary embedding's frequencies, recomputed from the config",
    ),
    ("Qformer.bert.embeddings.position_ids", "a buffer: the Q-Former's text position ids"),
    ("Qformer.cls.{rest}", "the Q-Former's masked-LM head (BLIP-2 stage 1)"),
    ("Qformer.bert.embeddings.word_embeddings.{kind}", "the Q-Former's text embeddings: MiniGPT-4 feeds queries only"),
    (
        "Qformer.bert.embeddings.position_embeddings.{kind}",
        "the Q-Former's text embeddings: MiniGPT-4 feeds queries only",
    ),
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
    ("visual_encoder.norm.{kind}", "EVA-CLIP's final norm: the release's ViT ends at its last block"),
    ("visual_encoder.head.{kind}", "EVA-CLIP's projection head: the release's ViT has none"),
]
# A key of KEY_RULES for a ViT block the configured model does not have (eva_vit_g.pth: 40 blocks, the release 39).
DEPTH_RULE = "EVA ViT blocks past the configured depth (the release loads eva_vit_g.pth with strict=False)"
_VISION_LAYER = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.")


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
    for pattern, reason in _UNUSED:
        if pattern.fullmatch(key):
            return None, reason
    for pattern, target in _FORWARD:
        match = pattern.fullmatch(key)
        if match:
            return target.format(**match.groupdict()), ""
    raise ConversionError(f"key '{key}' is not in the MiniGPT-4 release layout hadpo knows (docs/models.md)")


def original_keys(name: str) -> list[str]:
    """The release key(s) a hadpo weight comes from (both EVA biases for a fused qkv bias)."""
    found = []
    for pattern, original in _BACKWARD:
        match = pattern.fullmatch(name)
        if match:
            found.append(original.format(**match.groupdict()))
    return found


def map_sources(
    sources: dict[str, tuple[str, dict[str, torch.Tensor]]], expected: dict[str, torch.Size], report: ConversionReport
) -> dict[str, torch.Tensor]:
    """Every key of every source through the rules; errors name the file and the key. A target `name#part` is
    one third of a fused qkv bias, joined once both parts are read."""
    weights: dict[str, torch.Tensor] = {}
    given_by: dict[str, str] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    depth = len({match.group(1) for name in expected if (match := _VISION_LAYER.match(name))})
    for source, (prefix, state) in sources.items():
        for name, tensor in state.items():
            key = name if name.startswith(prefix) else prefix + name
            where = f"{source}: key '{name}'" + (f" (read as '{key}')" if key != name else "")
            target = _target(key, where, expected, depth, report)
            if target is None:
                continue
            fused, _, part = target.partition("#")
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


def _target(key: str, where: str, expected: dict[str, torch.Size], depth: int, report) -> str | None:
    """The hadpo key `key` loads into, or None for a key skipped by a named rule (counted in the report)."""
    try:
        target, reason = map_key(key)
    except ConversionError as error:
        raise ConversionError(f"{where} is not in the MiniGPT-4 release layout hadpo knows (docs/models.md)") from error
    fused = (target or "").partition("#")[0]
    if target is not None and fused not in expected:
        layer = _VISION_LAYER.match(fused)
        if layer is None or int(layer.group(1)) < depth:
            raise ConversionError(
                f"{where} maps to '{fused}', which a {report.variant} MiniGPT-4 of this configuration does not have"
            )
        target, reason = None, DEPTH_RULE
    if target is None:
        report.unused[reason] = report.unused.get(reason, 0) + 1
    return target
