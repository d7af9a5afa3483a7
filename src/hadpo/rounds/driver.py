"""The chain of rounds (RLAIF-V's iterative alignment on HA-DPO's pipeline): round r describes the pair images with
round r-1's model (round 1: the base), judges, rewrites and builds pairs (`hadpo.pairs.build.run_build`), trains
from round r-1's model against the reference `previous` (round r-1's model) or `base`
(`hadpo.train.run.run_training`), and evaluates the trained model. Round 0 is the base, evaluated.

out_dir/
  chain.yaml             the config the chain was started with (a rerun with another config is refused)
  source/images.jsonl    the validated image pool (every round draws its images from it)
  rounds/0/eval/         the base model's evaluation
  rounds/<r>/            images.jsonl (when a round takes a subset), round.yaml (its resolved recipes),
                         pairs/, train/, eval/: each stage complete once it holds done.json (hadpo.rounds.stages)
  baseline/train, eval   with `baseline`: one round from the base on round 1's pairs for the rounds' total steps
  rounds.json, rounds.md, rounds.png

With LoRA each round's adapter is merged into the model it trained (`merge_adapter`, train/merged/) and the next
round puts a fresh adapter on that merged model, so round r's model is always a plain model folder.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from hadpo.config import config_values, read_yaml
from hadpo.files import ensure_dir
from hadpo.pairs.build import load_source, run_build
from hadpo.pairs.config import SourceConfig
from hadpo.pairs.store import BuildFiles, Ledger, write_atomic
from hadpo.records import ImageRecord, RecordError, read_jsonl
from hadpo.rounds.config import Recipes, RoundsConfig, check_same_chain, resolve_recipes
from hadpo.rounds.evaluation import SuiteEvaluator
from hadpo.rounds.report import write_rounds_report
from hadpo.rounds.stages import finished, run_stage

log = logging.getLogger("hadpo.rounds")

Evaluator = Callable[[Path, Path], dict]  # (model folder, output folder) -> the model's summary


def run_rounds(config: RoundsConfig, source: str = "rounds config", evaluator: Evaluator | None = None) -> dict:
    """Run (or continue) the chain; returns what rounds.json holds. `evaluator` replaces the `eval` section's
    suite (the scene world passes its own)."""
    recipes = resolve_recipes(config, source)
    root = ensure_dir(config.out_dir, "out_dir")
    identity = chain_identity(config, root)
    pool_file, exhaustive = image_pool(recipes, config, root)
    if identity is not None:  # a new chain: every check passed, its config is kept from now on
        (root / "chain.yaml").write_text(yaml.safe_dump(identity, sort_keys=False), encoding="utf-8")
    evaluate = evaluator or SuiteEvaluator(config.eval, recipes.pairs, root / "eval_judge")
    rows = [{"round": 0, "model": recipes.model, "eval": evaluation(evaluate, recipes.model, root / "rounds" / "0")}]
    for number in range(1, config.rounds + 1):
        rows.append(run_round(recipes, config, number, rows[-1]["model"], (pool_file, exhaustive), evaluate))
        if number < config.rounds or config.baseline:  # the report so far (the last one is written below)
            write_rounds_report(root, rows, None)
    baseline = same_steps_baseline(recipes, root, rows, evaluate) if config.baseline else None
    return write_rounds_report(root, rows, baseline)


def run_round(
    recipes: Recipes, config: RoundsConfig, number: int, model: str, pool: tuple[Path, list[str]], evaluate: Evaluator
) -> dict:
    """Round `number` from `model` (round number-1's): pairs from its descriptions, training, evaluation."""
    log.info("round %d of %d, from %s", number, config.rounds, model)
    folder = Path(config.out_dir) / "rounds" / str(number)
    images = round_images(pool[0], config, number, folder)
    pairs = run_stage(
        folder / "pairs",
        f"round {number}: pairs",
        lambda: build_pairs(recipes, number, model, images, pool[1], folder / "pairs"),
    )
    reference = recipes.model if config.reference == "base" else None  # None: the model it trains from
    training = run_stage(
        folder / "train",
        f"round {number}: training",
        lambda: train_model(recipes, model, Path(pairs["file"]), folder / "train", reference),
    )
    return {
        "round": number,
        "described_by": model,
        "model": training["model"],
        "pairs": pairs,
        "training": training,
        "eval": evaluation(evaluate, training["model"], folder),
    }


def evaluation(evaluate: Evaluator, model: str, folder: Path) -> dict:
    """The model's evaluation in folder/eval (its answer files make a killed evaluation resume)."""
    out, name = folder / "eval", folder.name if folder.name == "baseline" else f"round {folder.name}"
    return run_stage(out, f"{name}: evaluation", lambda: {"metrics": evaluate(Path(model), out)})["metrics"]


def chain_identity(config: RoundsConfig, root: Path) -> dict | None:
    """A folder holds one chain. When it holds one, a rerun that changed its config (or a recipe's text), other
    than more rounds or the baseline, is refused; otherwise returns what chain.yaml will keep, and clears the
    image pool a first run that failed its checks may have left (the source may have changed since)."""
    identity = {
        "config": config.model_dump(mode="json", exclude={"rounds", "baseline"}),
        "pairs_recipe": read_yaml(config.pairs_recipe),
        "train_recipe": read_yaml(config.train_recipe),
    }
    path = root / "chain.yaml"
    if path.is_file():
        check_same_chain(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, identity, config.out_dir)
        return None
    shutil.rmtree(root / "source", ignore_errors=True)
    return identity


def image_pool(recipes: Recipes, config: RoundsConfig, root: Path) -> tuple[Path, list[str]]:
    """The recipe's source, validated once into out_dir/source/images.jsonl (the rounds' pool), and the names a
    COCO source annotates exhaustively; checks that the pool holds the images the rounds ask for."""
    files = BuildFiles(ensure_dir(root / "source", "out_dir"))
    records, exhaustive = load_source(recipes.pairs, files, Ledger(files.events))
    wanted = config.images_per_round or 0
    if config.fresh_images:
        wanted *= config.rounds
    if wanted > len(records):
        per_round = f"{config.rounds} rounds x {config.images_per_round}" if config.fresh_images else "the rounds"
        raise RecordError(
            f"images_per_round {config.images_per_round}: {per_round} need {wanted} images; the source "
            f"{recipes.pairs.source.images} has {len(records)} usable ones"
        )
    return files.images, exhaustive


def round_images(pool_file: Path, config: RoundsConfig, number: int, folder: Path) -> Path:
    """The images round `number` describes: the whole pool, or `images_per_round` of it in an order seeded by
    `seed`: the same ones every round, or with `fresh_images` the next ones no earlier round took."""
    if config.images_per_round is None:
        return pool_file
    order = read_jsonl(pool_file, ImageRecord)
    random.Random(config.seed).shuffle(order)
    start = (number - 1) * config.images_per_round if config.fresh_images else 0
    path = folder / "images.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, order[start : start + config.images_per_round])  # the same every run
    return path


def build_pairs(recipes: Recipes, number: int, model: str, images: Path, exhaustive: list[str], out: Path) -> dict:
    """Round `number`'s pair build: the recipe with the round's images, its describing model and its seed."""
    config = recipes.pairs.model_copy(deep=True)
    config.out_dir = str(out)
    config.source = SourceConfig(kind="folder", images=str(images))
    config.describe.model = str(model)
    config.describe.seed = recipes.pairs.describe.seed + number - 1  # fresh samples each round
    config.judge.exhaustive_names = [*config.judge.exhaustive_names, *exhaustive]
    save_round_config(out.parent, "pairs", config_values(config))
    files = BuildFiles(out)
    if not files.images.exists():  # validated with the pool: the build takes them as they are, no image read again
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(files.images, read_jsonl(images, ImageRecord))
    stats = run_build(config)
    keys = (
        "images",
        "descriptions_judged",
        "descriptions_with_hallucination",
        "description_hallucination_rate",
        "sentences",
        "sentence_hallucination_rate",
    )
    agreement = (stats.get("ground_truth_agreement") or {}).get("rate")
    return {
        **{key: stats.get(key) for key in keys},
        "pairs": stats["pairs"],
        "judge": stats.get("judge"),
        "judge_agreement_with_ground_truth": agreement,
        "file": str(out / "pairs.jsonl"),
    }


def train_model(
    recipes: Recipes, model: str, pairs: Path, out: Path, reference: str | None, max_steps: int | None = None
) -> dict:
    """One training run of the recipe from `model` (reference: `reference`, None = `model` itself); resumes from
    the newest complete checkpoint a killed run left in `out`. Returns the trained model's folder and the run's
    figures."""
    from hadpo.train.checkpoints import last_complete_checkpoint
    from hadpo.train.run import final_metrics, run_training  # (imports the Trainer and PEFT)

    changes: dict = {
        "model_name_or_path": str(model),
        "ref_model_name_or_path": reference,
        "pairs": str(pairs),
        "output_dir": str(out),
        "merge_adapter": recipes.lora,
    }
    if max_steps is not None:
        changes["max_steps"] = max_steps
    config = recipes.train_config(changes)
    save_round_config(out.parent, "train", config_values(config))
    try:
        checkpoint = last_complete_checkpoint(out) if any(out.glob("checkpoint-*")) else None
    except RecordError:  # only checkpoints whose save was cut: start over
        checkpoint = None
    trainer = run_training(config, resume=checkpoint)
    last_logged = final_metrics(trainer.state.log_history)
    runtime = last_logged.pop("runtime_s")
    last_logged.pop("steps")  # the last logged step; the run's own is global_step
    return {
        "model": str(out / "merged" if recipes.lora else out),
        "steps": trainer.state.global_step,
        "train_runtime_s": runtime,
        "resumed_from": None if checkpoint is None else str(checkpoint),
        "last_logged": last_logged,
        "reference": reference or str(model),
    }


def save_round_config(folder: Path, stage: str, values: dict) -> None:
    """round.yaml: each stage's resolved config, beside the stage folders (the stages also save their own)."""
    path = folder / "round.yaml"
    saved = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    saved[stage] = values
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")


def same_steps_baseline(recipes: Recipes, root: Path, rows: list[dict], evaluate: Evaluator) -> dict:
    """The fair comparison: one round from the base on round 1's pairs, trained for as many steps as all rounds
    together (more epochs on the same pairs), evaluated alike. Redone when the chain grew more rounds."""
    steps = sum(row["training"]["steps"] for row in rows[1:])
    folder = root / "baseline"
    done = finished(folder / "train")
    if done is not None and done.get("steps") != steps:
        log.info("baseline: trained for %s steps, the rounds now take %d: training it again", done.get("steps"), steps)
        shutil.rmtree(folder)
    first = rows[1]
    training = run_stage(
        folder / "train",
        "baseline: training",
        lambda: train_model(recipes, recipes.model, Path(first["pairs"]["file"]), folder / "train", None, steps),
    )
    return {
        "round": "baseline",
        "model": training["model"],
        "pairs": first["pairs"],
        "training": training,
        "eval": evaluation(evaluate, training["model"], folder),
    }
