"""`make demo`: HA-DPO end to end on the scene world, on a CPU, with a report a person would read.

  1. the world and its tiny base LLaVA (pretrained once, cached under runs/base/);
  2. the base model on the evaluation suite: POPE random / popular / adversarial, CHAIR, SHR (offline judge),
     description length and object coverage, and held-out colour / count yes/no questions;
  3. HA-DPO pairs from the base model's own descriptions of the pairs split (describe, judge, 3 rewrites, QA);
  4. HA-DPO training: DPO + gamma * SFT on faithful descriptions (configs/world_hadpo.yaml), reference
     log-probs precomputed;
  5. the suite again, the before/after table, runs/demo/report.md, results.json and PNG plots.
With `ablate`, the same training without the auxiliary SFT loss, without the QA pairs and without the
style-consistent rewrites (one at a time), each evaluated and added as a column.

Every stage is an ordinary hadpo stage (the world is only the data source), and each stage's files stay on disk.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from hadpo.config import C, Config, load_config, merge
from hadpo.pairs.config import PairsConfig
from hadpo.records import ImageRecord, PreferencePair, read_jsonl, write_jsonl
from hadpo.world.checks import ablation_checks, recipe_targets, signature_checks
from hadpo.world.config import WorldConfig
from hadpo.world.evalsets import write_sft_descriptions
from hadpo.world.pretrain import PretrainConfig, pretrain_base
from hadpo.world.report import console, print_models, print_pair_stats, write_report
from hadpo.world.scenes import build_world
from hadpo.world.suite import EvalSettings, eval_sets, evaluate_model, family_share, words_per_text

# What each ablation changes (training overrides, and whether the pairs keep their rewrites / QA pairs).
ABLATIONS = {
    "no_sft": {"train": {"gamma": 0.0}},
    "no_qa": {"train": {"data_mix": "1:0"}},
    "no_rewrites": {"rewrites": False},
}


class DemoConfig(Config):
    """The demo YAML (configs/demo.yaml): the world, its base model's pretraining, the pairs and training
    recipes (YAML files in configs/, paths relative to the working folder) with overrides on top, and the
    evaluation settings."""

    world: WorldConfig = Field(default_factory=WorldConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    pairs_recipe: str = Field("configs/pairs/world.yaml", description="the pairs build config (YAML)")
    train_recipe: str = Field("configs/world_hadpo.yaml", description="the training config (YAML)")
    pairs: dict[str, Any] = Field(default_factory=dict, description="on top of pairs_recipe")
    train: dict[str, Any] = Field(default_factory=dict, description="HADPOConfig keys on top of train_recipe")
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named training variants (HADPOConfig keys on top of `train`) that `--methods` trains beside "
        "HA-DPO from the same base and pairs (docs/methods.md)",
    )
    eval: EvalSettings = Field(default_factory=EvalSettings)


def load_demo_config(
    path: str | Path | None, seed: int | None = None, overrides: Sequence[str] = (), model: type[C] = DemoConfig
) -> C:
    """The demo config (`model`: DemoConfig or one that extends it) from YAML (None: the defaults), then
    `key=value` overrides; `seed` overrides the world's and pretraining's seeds."""
    seeds = {"world": {"seed": seed}, "pretrain": {"seed": seed}} if seed is not None else {}
    return load_config(model, path, list(overrides), seeds, source=str(path) if path else "demo config")


def demo_sft_file(files, out: Path, seed: int) -> Path:
    """The auxiliary SFT data of the demo's recipe: faithful descriptions of 2,000 pretrain-split scenes."""
    return write_sft_descriptions(
        read_jsonl(files.images("pretrain"), ImageRecord)[:2000],
        files.images("pretrain"),
        out / "sft_descriptions.jsonl",
        seed,
    )


class Stages:
    """The demo's numbered stages on the console, each timed (results.json's `timings_s`)."""

    def __init__(self, total: int):
        self.total, self.number, self.timings = total, 0, {}

    @contextmanager
    def stage(self, name: str, text: str):
        self.number += 1
        begun = time.perf_counter()
        console.print(f"[bold]{self.number}/{self.total}[/bold] {text}")
        yield
        self.timings[name] = round(time.perf_counter() - begun, 1)
        console.print(f"   [dim]{name}: {self.timings[name]} s[/dim]")


# --- 3: pairs ------------------------------------------------------------------------------------------------


def build_pairs(
    model_dir: Path, images_file: Path, world: WorldConfig, out: Path, recipe: str | Path, overrides: dict
) -> dict:
    """HA-DPO pairs from the base model's descriptions of the pairs split (an ordinary `hadpo pairs build`
    with the world's pairs split as a folder source)."""
    from hadpo.pairs.build import run_build  # deferred: the LLM judge's client is ~1 s of imports

    this_run = {
        "out_dir": str(out),
        "source": {"kind": "folder", "images": str(images_file)},
        "describe": {"model": str(model_dir)},
        "judge": {"extra_names": list(world.categories)},  # every category is exhaustively annotated
    }
    return run_build(load_config(PairsConfig, recipe, this_run, overrides, source=f"demo pairs ({recipe})"))


def without_rewrites(pairs_file: Path, out: Path) -> Path:
    """The same pairs with only the original texts (rewrite_index 0): the no-rewrites ablation."""
    kept = [p for p in read_jsonl(pairs_file, PreferencePair) if p.rewrite_index == 0]
    write_jsonl(out, kept)
    return out


# --- 4: training ---------------------------------------------------------------------------------------------


def training_runs(
    demo: DemoConfig, pairs_file: Path, out: Path, ablate: bool, methods: Sequence[str] = ()
) -> dict[str, tuple[Path, dict]]:
    """{run name: (pairs file, training overrides)}: HA-DPO, each of `methods` (named in the config's `methods`),
    and with `ablate` each ablation."""
    runs = {"hadpo": (pairs_file, demo.train)}
    for name in methods:
        runs[name] = (pairs_file, merge(demo.train, demo.methods[name]))
    if ablate:
        for name, change in ABLATIONS.items():
            source = (
                pairs_file
                if change.get("rewrites", True)
                else without_rewrites(pairs_file, out / "pairs_no_rewrites.jsonl")
            )
            runs[name] = (source, merge(demo.train, change.get("train", {})))
    return runs


def train(
    model_dir: Path, pairs_file: Path, sft_file: Path, out: Path, seed: int, recipe: str | Path, overrides: dict
) -> tuple[Path, list]:
    """HA-DPO on the base model; returns the merged model's folder and the trainer's log history."""
    # deferred: TrainingArguments, the Trainer and PEFT are ~1 s of imports that `hadpo --help` does not need
    from hadpo.train.config import HADPOConfig
    from hadpo.train.run import run_training

    paths = {
        "model_name_or_path": str(model_dir),
        "pairs": str(pairs_file),
        "sft_data": str(sft_file),
        "output_dir": str(out),
        "seed": seed,
    }
    config = load_config(HADPOConfig, recipe, paths, overrides, source=f"demo train ({recipe})")
    trainer = run_training(config)
    merged = out / "merged"  # LoRA runs merge the adapter there; full fine-tuning saves the model itself
    return (merged if merged.exists() else out), trainer.state.log_history


# --- the demo ------------------------------------------------------------------------------------------------


def run_demo(
    config_path: str | Path | None = None,
    seed: int | None = None,
    runs_dir: str | Path = "runs",
    ablate: bool = False,
    overrides: Sequence[str] = (),
    methods: Sequence[str] = (),
) -> dict:
    started = time.perf_counter()
    demo = load_demo_config(config_path, seed, overrides)
    methods = check_methods(demo, methods)
    world = demo.world
    out = Path(runs_dir) / "demo" / f"seed{world.seed}"
    if out.exists():  # a run's answers, pairs and adapters belong to one base model: start afresh
        shutil.rmtree(out)
    stages = Stages(total=5)

    with stages.stage("world_and_base", f"world (seed {world.seed}) and base model (cached under {runs_dir}/base)"):
        files = build_world(world, runs_dir)
        base_dir = pretrain_base(world, files, demo.pretrain, runs_dir)

    with stages.stage("evaluate_base", f"evaluate the base model ({base_dir})"):
        sets = eval_sets(files, world, demo.eval, out / "questions")
        models = {"base": evaluate_model(base_dir, out / "eval" / "base", sets, demo.eval)}
        print_models(models)

    with stages.stage("pairs", "HA-DPO pairs from the base model's descriptions of the pairs split"):
        pair_stats = build_pairs(base_dir, files.images("pairs"), world, out / "pairs", demo.pairs_recipe, demo.pairs)
        print_pair_stats(pair_stats)

    with stages.stage("train", "HA-DPO training (DPO + gamma * SFT, the recipe in train_recipe)"):
        runs = training_runs(demo, out / "pairs" / "pairs.jsonl", out, ablate, methods)
        trained, histories, seconds = train_runs(demo, files, base_dir, out, runs)

    with stages.stage("evaluate_trained", "evaluate the trained model(s), report"):
        for name, model_dir in trained.items():
            models[name] = evaluate_model(model_dir, out / "eval" / name, sets, demo.eval)
    print_models(models)

    results = summary(world, pair_stats, models, histories, base_dir, stages.timings, started)
    for name, spent in seconds.items():
        results["training"][name]["seconds"] = spent
    results["pairs"]["words"] = words_per_text(out / "pairs" / "pairs.jsonl")
    adversarial = next(path for path in sets.pope_files if path.stem.endswith("adversarial"))
    results["pope_adversarial_negatives"] = family_share(adversarial, sets.images_file, world)
    write_report(out, results, histories)
    console.print(f"wrote {out / 'report.md'} and {out / 'results.json'} ({results['seconds']} s)")
    return results


def check_methods(demo: DemoConfig, methods: Sequence[str]) -> list[str]:
    """The named methods to train beside HA-DPO ("all": every one the config names), in the config's order."""
    names = list(demo.methods) if "all" in methods else list(dict.fromkeys(methods))
    unknown = [name for name in names if name not in demo.methods]
    if unknown:
        known = ", ".join(demo.methods) or "none: the config has no `methods` section"
        raise ValueError(f"--methods: unknown method '{unknown[0]}' (the config names {known})")
    return [name for name in names if name != "hadpo"]


def train_runs(demo: DemoConfig, files, base_dir: Path, out: Path, runs: dict) -> tuple[dict, dict, dict]:
    """Train every run from the base model; (model folders, log histories, wall seconds per run, set-up, reference
    log-probs and warm start included)."""
    sft_file = demo_sft_file(files, out, demo.world.seed)
    trained, histories, seconds = {}, {}, {}
    for name, (pairs, overrides) in runs.items():
        console.print(f"   training [bold]{name}[/bold]")
        began = time.perf_counter()
        trained[name], histories[name] = train(
            base_dir, pairs, sft_file, out / "train" / name, demo.world.seed, demo.train_recipe, overrides
        )
        seconds[name] = round(time.perf_counter() - began, 1)
    return trained, histories, seconds


def summary(
    world: WorldConfig, pair_stats: dict, models: dict, histories: dict, base_dir: Path, timings: dict, started: float
) -> dict:
    """results.json: the world's knobs, the pairs' numbers, every model's suite, the checks, training."""
    from hadpo.train.run import final_metrics  # deferred as in train(): imported by then

    return {
        "seed": world.seed,
        "world": world.knobs(),
        "pairs": {
            **pair_stats["pairs"],
            "images": pair_stats["images"],
            "description_hallucination_rate": pair_stats.get("description_hallucination_rate"),
            "sentence_hallucination_rate": pair_stats.get("sentence_hallucination_rate"),
            "rewrite": pair_stats.get("rewrite"),
            "judge_agreement_with_world_truth": pair_stats.get("ground_truth_agreement"),
        },
        "models": models,
        "checks": {**signature_checks(models["base"], models["hadpo"]), **ablation_checks(models)},
        "targets": {
            name: recipe_targets(models["base"], model)
            for name, model in models.items()
            if name != "base" and name not in ABLATIONS
        },
        "training": {name: final_metrics(history) for name, history in histories.items()},
        "base_model": str(base_dir),
        "timings_s": timings,
        "seconds": round(time.perf_counter() - started, 1),
    }
