"""Catalogue, `hadpo rounds`: a rounds.yaml that cannot work is one line naming the file and the key, exit 2,
before any model is loaded (docs/errors.md, "hadpo rounds")."""

from __future__ import annotations

import pytest
import yaml

from catalogue import Case, Context, check_documented, image, run_case
from hadpo.records import ImageRecord, write_jsonl
from hadpo.rounds.config import load_rounds_config
from hadpo.rounds.driver import chain_identity


def _chain(ctx: Context, *, images: int = 2, train: dict | None = None, **config) -> dict:
    """A rounds.yaml over a folder source of `images` images, with recipes and a (never loaded) base model."""
    records = [
        ImageRecord(image_id=str(i), path=str(image(ctx.tmp / f"images/{i}.png")), width=48, height=48)
        for i in range(images)
    ]
    write_jsonl(ctx.path("images", "images.jsonl"), records)
    ctx.path("model", "base").mkdir()
    ctx.write("pairs", "pairs.yaml", yaml.safe_dump({"source": {"kind": "folder", "images": ctx.names["images"]}}))
    recipe = {"finetuning": "full", "reference": "precomputed", "report_to": [], **(train or {})}
    ctx.write("train", "train.yaml", yaml.safe_dump(recipe))
    values = {
        "rounds": 2,
        "out_dir": str(ctx.tmp / "chain"),
        "model": ctx.names["model"],
        "pairs_recipe": ctx.names["pairs"],
        "train_recipe": ctx.names["train"],
        **config,
    }
    return {key: value for key, value in values.items() if value is not None}


def _rounds(ctx: Context, values: dict, *overrides: str) -> list[str]:
    return ["rounds", "--config", str(ctx.write("config", "rounds.yaml", yaml.safe_dump(values))), *overrides]


def _changed_chain(ctx: Context) -> list[str]:
    argv = _rounds(ctx, _chain(ctx))
    config = load_rounds_config(ctx.names["config"])
    (ctx.tmp / "chain").mkdir()
    identity = chain_identity(config, ctx.tmp / "chain")
    (ctx.tmp / "chain" / "chain.yaml").write_text(yaml.safe_dump(identity))
    ctx.names["out"] = str(ctx.tmp / "chain")
    return [*argv, "train.learning_rate=0.5"]


CASES = [
    Case(
        "rounds-unknown-key",
        "a misspelt key in rounds.yaml",
        lambda ctx: _rounds(ctx, {**_chain(ctx), "images_per_rund": 3}),
        "{config}: unknown config key 'images_per_rund' (did you mean 'images_per_round'?)",
        absent=("chain",),
    ),
    Case(
        "rounds-zero",
        "`rounds: 0`",
        lambda ctx: _rounds(ctx, _chain(ctx, rounds=0)),
        "{config}: rounds: Input should be greater than or equal to 1",
        absent=("chain",),
    ),
    Case(
        "rounds-recipe-not-given",
        "no `train_recipe`",
        lambda ctx: _rounds(ctx, _chain(ctx, train_recipe=None)),
        "{config}: train_recipe: Field required",
        absent=("chain",),
    ),
    Case(
        "rounds-recipe-missing",
        "a `pairs_recipe` file that does not exist",
        lambda ctx: _rounds(ctx, _chain(ctx, pairs_recipe=str(ctx.path("recipe", "nope.yaml")))),
        "{config}: pairs_recipe: {recipe}: no such file",
        absent=("chain",),
    ),
    Case(
        "rounds-train-override-unknown",
        "`train.betaa=0.2`: a key the trainer does not know",
        lambda ctx: _rounds(ctx, _chain(ctx), "train.betaa=0.2"),
        "{config} train ({train}): unknown config key 'betaa' (did you mean 'beta'?)",
        absent=("chain",),
    ),
    Case(
        "rounds-model-missing",
        "a base `model` folder that does not exist",
        lambda ctx: _rounds(ctx, _chain(ctx, model=str(ctx.path("gone", "gone")))),
        "{config}: model: {gone}: no such model folder (nor a hub id 'org/name')",
        absent=("chain",),
    ),
    Case(
        "rounds-reference-base-with-adapters",
        "`reference: base` with a LoRA recipe whose reference is the adapter-less policy",
        lambda ctx: _rounds(ctx, _chain(ctx, reference="base", train={"finetuning": "lora", "reference": "adapters"})),
        "{config}: reference: base needs the trainer's reference copy or precomputed (train.reference=precomputed): "
        "with adapters the reference is the model the adapters sit on, the previous round's",
        absent=("chain",),
    ),
    Case(
        "rounds-fresh-without-count",
        "`fresh_images: true` without `images_per_round`",
        lambda ctx: _rounds(ctx, _chain(ctx, fresh_images=True)),
        "{config}: fresh_images needs images_per_round (how many new images each round describes)",
        absent=("chain",),
    ),
    Case(
        "rounds-too-few-images",
        "fresh images for 2 rounds of 2 from a source of 3",
        lambda ctx: _rounds(ctx, _chain(ctx, images=3, images_per_round=2, fresh_images=True)),
        "images_per_round 2: 2 rounds x 2 need 4 images; the source {images} has 3 usable ones",
        absent=("chain/chain.yaml", "chain/rounds"),
    ),
    Case(
        "rounds-chain-changed",
        "a rerun into a chain's folder with another learning rate",
        _changed_chain,
        "out_dir {out} holds a chain made with another config (config.train.learning_rate: unset -> 0.5); rerun it "
        "with that config, or give another out_dir",
        absent=("chain/rounds",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_rounds_config_is_one_line(case, tmp_path, monkeypatch, capsys):
    run_case(case, Context(tmp_path, monkeypatch), capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)
