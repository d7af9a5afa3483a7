"""The `describe` stage: the target VLM writes N detailed descriptions per image, sampled, with a prompt drawn from
a pool of "describe this image in detail" prompts (HA-DPO, arXiv 2311.16839, section 3: the negatives are the
model's own descriptions, so they carry its own hallucinations and its own style).

Generation goes through hadpo's batched inference (`hadpo.inference.run_queries`): its answers file is appended
batch by batch and resumes by id, and each batch is seeded from its first id, so a resumed run
samples what an uninterrupted one would. Answers are then turned into `Description` records carrying the
sampling settings.
"""

from __future__ import annotations

import logging
import random
from typing import Literal

from hadpo.inference import DecodingConfig, Query, load_model, run_queries
from hadpo.pairs.store import BuildFiles, Ledger, append, done_ids
from hadpo.records import Answer, Description, ImageRecord, iter_jsonl

log = logging.getLogger(__name__)

DESCRIBE_PROMPTS = [
    "Describe this image in detail.",
    "Give a detailed description of the image.",
    "What do you see in this picture? Describe it in detail.",
    "Describe the image.",
]


class DescribeConfig(DecodingConfig):
    """The describe stage: which model, how many samples per image from which prompts, and how it decodes
    (DecodingConfig's keys, sampling by default)."""

    model: str = ""  # a model folder or hub id (AutoModelForImageTextToText + AutoProcessor)
    per_image: int = 2  # descriptions sampled per image
    prompts: list[str] = list(DESCRIBE_PROMPTS)
    mode: Literal["generate"] = "generate"
    batch_size: int = 16
    max_new_tokens: int = 96
    do_sample: bool = True
    top_p: float = 0.95


def description_queries(images: list[ImageRecord], config: DescribeConfig) -> list[Query]:
    """One query per (image, sample): id "<image_id>#d<j>", prompt drawn from the pool by a seeded rng."""
    if not config.prompts:
        raise ValueError("describe: the prompt pool is empty")
    queries = []
    for image in images:
        rng = random.Random(f"{config.seed}:{image.image_id}")
        for index in range(config.per_image):
            queries.append(
                Query(
                    question_id=f"{image.image_id}#d{index}",
                    image=image.path,
                    prompt=rng.choice(config.prompts),
                    image_id=image.image_id,
                )
            )
    return queries


def sample_descriptions(
    images: list[ImageRecord],
    files: BuildFiles,
    config: DescribeConfig,
    ledger: Ledger,
    model_and_processor=None,
    dry_run: bool = False,
) -> dict:
    """Append a Description for every (image, sample) not yet in descriptions.jsonl; returns stage numbers."""
    queries = description_queries(images, config)
    done = done_ids(files.descriptions, Description, "description_id")
    todo = [q for q in queries if q.question_id not in done]
    if dry_run:
        batches = -(-len(todo) // config.batch_size)
        return {
            "descriptions_to_sample": len(todo),
            "already_sampled": len(done),
            "generate_batches": batches,
        }
    if todo:
        if model_and_processor is None and not config.model:
            raise ValueError("describe.model: the target model (a folder or hub id) is needed to describe images")
        model, processor = model_and_processor or load_model(config.model, config.device, config.dtype)
        summary = run_queries(
            model, processor, todo, files.describe_answers, config.decoding(), model_name=config.model, progress=False
        )
        for question_id in summary.skipped_ids:
            ledger.skip("describe", question_id, "unreadable_image")
    answers = {a.question_id: a for a in iter_jsonl(files.describe_answers, Answer)} if todo else {}
    new = [
        Description(
            description_id=q.question_id,
            image_id=q.image_id,
            prompt=q.prompt,
            text=answers[q.question_id].text,
            model=answers[q.question_id].model,
            generation=answers[q.question_id].generation,
        )
        for q in todo
        if q.question_id in answers
    ]
    append(files.descriptions, new)
    return {"descriptions": len(done) + len(new), "sampled_now": len(new), "per_image": config.per_image}
