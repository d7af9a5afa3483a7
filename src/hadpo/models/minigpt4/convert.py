"""`hadpo models convert-minigpt4`: the MiniGPT-4 release's files -> a hadpo MiniGPT-4 folder (config, safetensors
weights, processor, generation config) that `AutoModelForImageTextToText.from_pretrained` loads.

What converts: the four files the release assembles its model from, as published, with their key names as LAVIS
and MiniGPT-4 write them (`release_layout.KEY_RULES`, also tabled in docs/models.md):
- the MiniGPT-4 stage-2 checkpoint (`prerained_minigpt4_7b.pth`, `pretrained_minigpt4_llama2_7b.pth`, or one of
  your own stage-2 runs): `{"model": ...}` as the release's runner saves it, the trained projection `llama_proj.*`
  and the model's buffers (the runner drops frozen parameters only);
- the EVA ViT-g weights (`eva_vit_g.pth`): keys of the ViT alone (`blocks.0.attn.qkv.weight`, ...), read under
  the release's prefix `visual_encoder.`;
- the BLIP-2 checkpoint (`blip2_pretrained_flant5xxl.pth`, Vicuna variant only): `{"model": ...}` with the
  Q-Former (`Qformer.bert.*`), its queries and `ln_vision`;
- the language model (Vicuna v0 / Llama-2-chat) as a transformers folder, read under the prefix `llama_model.`.
A state dict of the whole model in one file does not convert: its keys would come a second time from the other
files, and the converter stops at the first key given twice.

The files hold keys the release itself never loads; the converter skips them by named rules (release_layout.py)
and counts each rule's keys in its report: `UNUSED_RULES` (buffers the model recomputes, BLIP-2's text branch
and its own language model's projection, EVA-CLIP's final norm and head) and `DEPTH_RULE` (EVA blocks past the
configured depth: the release builds 39 of the file's 40 and loads it with `strict=False`). Every other key must
match exactly one rule of `KEY_RULES`, every weight of the model must come from exactly one key, and every shape
must agree; anything else stops the conversion with the key's name. `.pth` files are read with
`torch.load(weights_only=True)` (no code runs from them). The one weight no file holds is the Llama-2 variant's
`ln_vision`, which the release creates fresh (weight 1, bias 0) and keeps frozen: it is written so, and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hadpo.models.base import model_location_problem
from hadpo.models.minigpt4.modeling import VARIANTS, MiniGPT4Config, MiniGPT4ForConditionalGeneration
from hadpo.models.minigpt4.processing import minigpt4_processor
from hadpo.models.minigpt4.release_layout import ConversionError, ConversionReport, map_sources, original_keys


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
    from transformers import GenerationConfig

    check_inputs(variant, checkpoint, vision, language_model, qformer)
    tokenizer, lm = load_language_model(language_model, dtype)
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
    complete_weights(weights, expected, report)
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


def check_inputs(variant: str, checkpoint, vision, language_model, qformer) -> None:
    """The files fit the variant and exist, before minutes of loading the language model."""
    if (qformer is None) != (variant == "llama2"):
        raise ConversionError(
            "the Vicuna variant needs the BLIP-2 checkpoint (--qformer); the Llama-2 variant has no Q-Former"
        )
    for flag, path in (("--checkpoint", checkpoint), ("--vision", vision), ("--qformer", qformer)):
        if path is not None and not Path(path).is_file():
            raise ConversionError(f"{flag} {path}: no such file")
    if problem := model_location_problem(str(language_model)):
        raise ConversionError(f"--language-model {problem}")


def load_language_model(language_model: str | Path, dtype: str):
    """(tokenizer, causal LM) from the language model's transformers folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(language_model))
        lm = AutoModelForCausalLM.from_pretrained(str(language_model), dtype=getattr(torch, dtype))
    except OSError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise ConversionError(f"{language_model}: cannot load the language model ({first_line})") from None
    return tokenizer, lm


def complete_weights(weights: dict[str, torch.Tensor], expected: dict[str, torch.Size], report) -> None:
    """The Llama-2 variant's ln_vision as the release creates it (1, 0; never trained); then every weight of the
    model must be there."""
    if report.variant == "llama2":
        for name, value in (("weight", 1.0), ("bias", 0.0)):
            key = f"vision_model.post_layernorm.{name}"
            if key not in weights:
                weights[key] = torch.full(expected[key], value)
                report.initialised.append(key)
    missing = [name for name in expected if name not in weights]
    if missing:
        wanted = " or ".join(f"'{key}'" for key in original_keys(missing[0])) or "a key"
        raise ConversionError(
            f"missing key: no file has {wanted} (for '{missing[0]}'; {len(missing)} weight(s) missing in all)"
        )


def end_token_ids(tokenizer, end_symbol: str) -> list[int]:
    """Generation stops at the end-of-sequence token and, for Vicuna's `###`, at that symbol when it is one
    token (the release's chat stops on it too)."""
    ids = [tokenizer.eos_token_id]
    symbol = tokenizer(end_symbol, add_special_tokens=False)["input_ids"]
    if len(symbol) == 1 and symbol[0] not in ids:
        ids.append(symbol[0])
    return ids
