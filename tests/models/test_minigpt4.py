"""MiniGPT-4: the release's prompt formats and tokenisation, its two ways from patches to language-model tokens,
and the converter from the release's files (a tiny checkpoint written in their key layout)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_minigpt4 import CONVERTER_OVERRIDES, build_tiny_minigpt4, write_release_files
from transformers import AutoModelForImageTextToText, AutoProcessor

from hadpo.cli import main
from hadpo.models import get_family
from hadpo.models.minigpt4.release_layout import DEPTH_RULE, KEY_RULES, UNUSED_RULES

CORPUS = ["Describe this image in detail. There is a red square. Yes, there is a dog. No ###"] * 20
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


@pytest.fixture(scope="module", params=["vicuna", "llama2"])
def tiny(request):
    torch.manual_seed(0)
    model, processor = build_tiny_minigpt4(CORPUS, request.param)
    return request.param, model.eval(), processor


def _image(seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(40, 36, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def test_prompt_formats_are_the_releases(tiny):
    variant, _, processor = tiny
    family = get_family("minigpt4")
    prompt = family.prompt_text(processor, "Is there a dog in the image?", 1)
    answer = family.response_text(processor, "Yes.")
    if variant == "vicuna":
        assert prompt == "###Human: <Img><ImageHere></Img> Is there a dog in the image? ###Assistant: "
        assert answer == "Yes.###"
    else:
        assert prompt == "[INST] <Img><ImageHere></Img> Is there a dog in the image? [/INST] "
        assert answer == "Yes.</s>"


def test_text_is_tokenised_around_the_image_as_the_release_does(tiny):
    _, model, processor = tiny
    prompt = get_family("minigpt4").prompt_text(processor, "Describe this image in detail.", 1)
    before, after = prompt.split("<ImageHere>")
    ids = processor(images=[_image()], text=[prompt])["input_ids"][0]
    tokenizer = processor.tokenizer
    expected = (
        tokenizer(before)["input_ids"]
        + [model.config.image_token_index] * model.config.num_image_tokens
        + tokenizer(after, add_special_tokens=False)["input_ids"]
    )
    assert ids == expected


def test_image_features_follow_the_variant(tiny):
    variant, model, processor = tiny
    pixels = processor.image_processor([_image(1), _image(2)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = model.get_image_features(pixels)
        patches = model.vision_model(pixel_values=pixels).last_hidden_state  # (2, 1 + 16, 32), layer-normed
        if variant == "llama2":  # CLS dropped, each token = 4 adjacent patches side by side
            grouped = torch.stack(
                [torch.cat([patches[:, 1 + 4 * t + j] for j in range(4)], dim=-1) for t in range(4)], 1
            )
            expected = model.language_projection(grouped)
        else:  # 4 learned queries read every patch feature through the Q-Former
            queries = model.query_tokens.expand(2, -1, -1)
            expected = model.language_projection(
                model.qformer(query_embeds=queries, encoder_hidden_states=patches).last_hidden_state
            )
    assert features.shape == (2, 4, 64) and torch.allclose(features, expected, atol=1e-6)


def test_image_token_count_must_match_the_features(tiny):
    _, model, processor = tiny
    inputs = processor(images=[_image()], text=["<ImageHere> hi"], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    keep = [i for i in range(len(ids)) if i != ids.index(processor.image_token_id)]  # one image token short
    inputs["input_ids"], inputs["attention_mask"] = inputs["input_ids"][:, keep], inputs["attention_mask"][:, keep]
    with pytest.raises(ValueError, match="the text holds 3 image tokens, the images give 1 x 4 features"):
        model(**inputs)


def test_answers_stop_at_the_variants_end_symbol(tiny):
    variant, _, processor = tiny
    ids = processor.tokenizer("Yes, there is a dog.###Human: no" if variant == "vicuna" else "Yes, there is a dog.")
    assert processor.batch_decode([ids["input_ids"]], skip_special_tokens=True)[0].strip() == "Yes, there is a dog."


def _convert(variant: str, files: dict, out: Path, tmp_path: Path) -> int:
    config = tmp_path / f"{variant}_architecture.json"
    config.write_text(json.dumps(CONVERTER_OVERRIDES[variant]))
    args = [
        "models",
        "convert-minigpt4",
        "--variant",
        variant,
        "--checkpoint",
        str(files["checkpoint"]),
        "--vision",
        str(files["vision"]),
        "--language-model",
        str(files["language_model"]),
        "--out",
        str(out),
        "--dtype",
        "float32",
        "--config",
        str(config),
    ]
    if "qformer" in files:
        args += ["--qformer", str(files["qformer"])]
    return main(args)


def test_converted_release_files_give_the_same_model(tiny, tmp_path, capsys):
    variant, model, processor = tiny
    files = write_release_files(model, processor, tmp_path / "release")
    assert _convert(variant, files, tmp_path / "converted", tmp_path) == 0
    report = json.loads(capsys.readouterr().out)
    converted = AutoModelForImageTextToText.from_pretrained(tmp_path / "converted").eval()
    ours, theirs = model.state_dict(), converted.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    loaded = AutoProcessor.from_pretrained(tmp_path / "converted")
    prompt = get_family("minigpt4").prompt_text(loaded, "Describe this image in detail.", 1)
    inputs = loaded(images=[_image()], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(converted(**inputs).logits, model(**inputs).logits)
    # the keys the release never loads, skipped rule by rule: one EVA block past the depth (13 keys), EVA-CLIP's
    # final norm and head, the checkpoint's buffers (2 LM layers) and, for Vicuna, BLIP-2's unused parts
    skipped = {
        DEPTH_RULE: 13,
        "EVA-CLIP's final norm: the release's ViT ends at its last block": 2,
        "EVA-CLIP's projection head: the release's ViT has none": 2,
        "a buffer: the Llama rotary embedding's frequencies, recomputed from the config": 2,
    }
    if variant == "vicuna":  # position ids in the MiniGPT-4 and the BLIP-2 checkpoints
        skipped |= {
            "a buffer: the Q-Former's text position ids": 2,
            "the projection into BLIP-2's own language model (FlanT5)": 2,
            "the Q-Former's text feed-forward (queries use intermediate_query / output_query)": 2,
        }
        assert report["initialised"] == []
    else:  # the release builds ln_vision fresh (1, 0) for Llama-2 and never trains it
        assert report["initialised"] == ["vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias"]
    assert report["unused"] == skipped


@pytest.mark.parametrize(
    "file, change, message",
    [
        (
            "vision",
            lambda s: s.update({"blocks.0.attn.relative_position_bias_table": torch.zeros(3)}),
            "key 'blocks.0.attn.relative_position_bias_table' (read as 'visual_encoder.blocks.0.attn.relative_position_"
            "bias_table') is not in the MiniGPT-4 release layout",
        ),
        (  # a block past the depth is skipped, an unknown key in it is not
            "vision",
            lambda s: s.update({"blocks.2.attn.relative_position_bias_table": torch.zeros(3)}),
            "key 'blocks.2.attn.relative_position_bias_table' (read as 'visual_encoder.blocks.2.attn.relative_position_"
            "bias_table') is not in the MiniGPT-4 release layout",
        ),
        (  # a known key for a part this model lacks, other than an EVA block past the depth
            "checkpoint",
            lambda s: s.update({"Qformer.bert.encoder.layer.7.attention.self.query.bias": torch.zeros(32)}),
            "key 'Qformer.bert.encoder.layer.7.attention.self.query.bias' maps to 'qformer.encoder.layer.7.attention."
            "attention.query.bias', which a",
        ),
        (
            "vision",
            lambda s: s.pop("blocks.1.mlp.fc2.weight"),
            "missing key: no file has 'visual_encoder.blocks.1.mlp.fc2.weight'",
        ),
        (
            "vision",
            lambda s: s.pop("blocks.0.attn.v_bias"),
            "missing key: no file has 'visual_encoder.blocks.0.attn.v_bias'",
        ),
        (
            "checkpoint",
            lambda s: s.update({"llama_proj.weight": torch.zeros(64, 7)}),
            "key 'llama_proj.weight' has shape (64, 7), 'language_projection.weight' needs",
        ),
        (
            "checkpoint",
            lambda s: s.update({"epoch_embed": torch.zeros(1)}),
            "key 'epoch_embed' is not in the MiniGPT-4 release layout",
        ),
    ],
)
def test_a_release_file_with_an_unknown_or_missing_key_is_refused_naming_it(
    tiny, tmp_path, capsys, file, change, message
):
    variant, model, processor = tiny
    files = write_release_files(model, processor, tmp_path / "release")
    saved = torch.load(files[file], weights_only=True)
    change(saved["model"] if "model" in saved else saved)
    torch.save(saved, files[file])
    capsys.readouterr()
    assert _convert(variant, files, tmp_path / "converted", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the language model's loading bar)
    assert err.startswith(f"hadpo: error: {files[file]}" if "missing" not in message else "hadpo: error: missing")
    assert message in err
    assert not (tmp_path / "converted" / "model.safetensors").exists()


def test_the_qformer_file_belongs_to_the_vicuna_variant_only(tmp_path, capsys):
    torch.manual_seed(0)
    model, processor = build_tiny_minigpt4(CORPUS, "vicuna")
    files = write_release_files(model, processor, tmp_path / "release")
    capsys.readouterr()
    assert _convert("llama2", files, tmp_path / "converted", tmp_path) == 2
    assert "the Llama-2 variant has no Q-Former" in capsys.readouterr().err


def test_docs_table_the_release_layout_the_converter_maps():
    """docs/models.md lists every key template of the release the converter maps or skips, and no other."""
    text = DOCS.read_text(encoding="utf-8").split("### Converting the release")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))
    rules = {original for original, _ in KEY_RULES} | {original for original, _ in UNUSED_RULES}
    assert documented == rules
    for original, target in KEY_RULES:
        assert f"| `{original}` | `{target}` |" in text
    for original, reason in UNUSED_RULES:
        assert f"| `{original}` | {reason} |" in text
    assert DEPTH_RULE in " ".join(text.split())
