"""The demo's evaluation suite on the world's held-out eval split: POPE random / popular / adversarial, CHAIR, SHR
(offline judge), description length and object coverage, and held-out colour / count yes/no questions. Used by
`hadpo demo` and by every comparison built on it (methods, rounds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from hadpo.evaluate.pope import build_pope_files
from hadpo.evaluate.suite import model_summary, run_chair, run_pope, run_shr
from hadpo.inference import DecodingConfig, describe_images
from hadpo.judge.base import Judge
from hadpo.judge.offline import AnnotationJudge
from hadpo.records import ImageRecord, PreferencePair, json_objects, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.evalsets import write_heldout_questions
from hadpo.world.scenes import WorldFiles


class EvalSettings(DecodingConfig):
    """How the demo evaluates each model (all on the world's held-out eval split): descriptions are decoded with
    these settings, yes/no questions answered in logits mode."""

    pope_images: int = Field(500, ge=1, description="images sampled for POPE (the whole default eval split)")
    # POPE's default is 3; a world scene holds 3 objects, usually 3 of a family's 4 members, so the one negative
    # the adversarial sampler takes first is that family's absent member: the co-occurrence it must test.
    pope_per_image: int = Field(1, ge=1, description="positive questions per image (as many negatives)")
    # POPE's usual three pairs per image ask about every object of a scene: their recall shows what a model that
    # learned to say "No." loses, which one pair per image hides (issue 19). None: not asked.
    pope_recall_per_image: int | None = Field(
        3, ge=1, description="also POPE with this many question pairs per image (POPE's usual 3): pope_<n> results"
    )
    mode: Literal["generate"] = "generate"
    batch_size: int = Field(64, ge=1)
    max_new_tokens: int = Field(96, ge=1, description="description length limit")


@dataclass
class EvalSets:
    """What every model is evaluated on: the eval split, its POPE and held-out question files, the SHR judge."""

    images_file: Path
    pope_files: list[Path]
    heldout_files: list[Path]
    judge: Judge
    pope_recall_files: list[Path] = field(default_factory=list)  # POPE at pope_recall_per_image pairs per image


def eval_sets(files: WorldFiles, world: WorldConfig, settings: EvalSettings, out: Path) -> EvalSets:
    """POPE splits and held-out colour / count questions over the eval split (under `out`), and the offline
    judge over its annotations."""

    eval_file = files.images("eval")
    eval_images = read_jsonl(eval_file, ImageRecord)

    def pope_files(per_image: int, folder: Path) -> list[Path]:
        built = build_pope_files(
            eval_file, folder, num_images=settings.pope_images, per_image=per_image, seed=world.seed, protocol="hadpo"
        )
        return list(built.values())

    heldout_files = list(write_heldout_questions(eval_images, eval_file, world, out, world.seed).values())
    judge = AnnotationJudge.from_records(eval_images, extra_names=world.categories)
    recall = settings.pope_recall_per_image
    recall_files = pope_files(recall, out / f"pope_{recall}") if recall else []
    return EvalSets(eval_file, pope_files(settings.pope_per_image, out), heldout_files, judge, recall_files)


def family_share(pope_file: Path, images_file: Path, world: WorldConfig) -> dict:
    """How many of a POPE split's negative questions ask about an absent member of a present object's family:
    the co-occurrence that the adversarial split is meant to test."""

    images = {Path(image.path).name: image for image in read_jsonl(images_file, ImageRecord)}
    negatives = family = 0
    for _, question in json_objects(pope_file):  # the official layout (integer question ids) + hadpo's `object`
        if question["label"] != "no":
            continue
        present = {o.name for o in images[Path(question["image"]).name].objects}
        negatives += 1
        family += question["object"] in world.absent_partners(present)
    return {"negatives": negatives, "family_members": family, "share": family / negatives if negatives else None}


def words_per_text(pairs_file: Path) -> dict:
    """Mean words of the chosen and of the rejected texts of the description pairs (original texts only)."""
    pairs = [p for p in read_jsonl(pairs_file, PreferencePair) if p.kind == "desc" and not p.rewrite_index]
    if not pairs:
        return {"chosen": None, "rejected": None}
    return {side: sum(len(getattr(p, side).split()) for p in pairs) / len(pairs) for side in ("chosen", "rejected")}


def evaluate_model(model_dir: Path, out: Path, sets: EvalSets, settings: EvalSettings) -> dict:
    """Run the suite on one model; returns the issue's per-model summary M (fractions in 0-1). Each
    benchmark's raw answers and details stay under `out`."""

    logits, generate = settings.decoding(mode="logits"), settings.decoding()
    pope = run_pope(str(model_dir), sets.pope_files, out, logits)
    heldout = run_pope(str(model_dir), sets.heldout_files, out / "heldout", logits)
    descriptions = describe_images(str(model_dir), sets.images_file, out / "descriptions.jsonl", generate)
    chair = run_chair(descriptions, sets.images_file, out, model=str(model_dir), protocol="hadpo")
    shr = run_shr(descriptions, sets.images_file, sets.judge, out, model=str(model_dir))
    summary = model_summary(pope, heldout, chair, shr)
    if sets.pope_recall_files:
        per_image = settings.pope_recall_per_image
        usual = run_pope(str(model_dir), sets.pope_recall_files, out / f"pope_{per_image}", logits)
        summary[f"pope_{per_image}"] = model_summary(pope=usual)["pope"]
    return summary
