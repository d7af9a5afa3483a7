"""The `judge` stage: every description gets a `Judgement` (sentence labels, hallucinated objects, corrected
text) from a judge behind the `hadpo.judge.base.Judge` protocol: the offline `annotations` judge or the `llm` one.

HA-DPO (arXiv 2311.16839, section 3): the judge sees the image's annotations and the description, flags the
hallucinations and writes the corrected description that becomes the positive. A description without
hallucination makes no description pair; stats count them.

Bad input is skipped and counted, one line naming the record: a description of an image that is not in the
image set (or whose image was dropped), an empty description. A failed LLM judgement is written (so a rerun does
not pay for it again; `retry_failed` redoes them) and counted.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from hadpo.judge.base import Judge
from hadpo.judge.llm import LLMJudge
from hadpo.pairs.store import BuildFiles, Ledger, append, done_ids, write_atomic
from hadpo.records import Description, ImageRecord, Judgement, iter_jsonl, read_jsonl
from hadpo.text import split_sentences

log = logging.getLogger(__name__)

CHUNK = 64  # judgements appended per write: a crash loses at most one chunk of (cached) work


def judge_descriptions(
    images: dict[str, ImageRecord],
    files: BuildFiles,
    judge: Judge,
    ledger: Ledger,
    retry_failed: bool = False,
    dry_run: bool = False,
) -> dict:
    """Judge every description not yet in judgements.jsonl; returns stage numbers (from the whole file)."""
    failed_before: set[str] = set()
    if retry_failed and files.judgements.exists():
        judgements = read_jsonl(files.judgements, Judgement)
        failed_before = {j.description_id for j in judgements if j.failed}
        write_atomic(files.judgements, [j for j in judgements if j.failed is None])
    done = done_ids(files.judgements, Judgement, "description_id")
    todo: list[tuple[ImageRecord, Description]] = []
    for description in iter_jsonl(files.descriptions, Description):
        if description.description_id in done:
            continue
        image = images.get(description.image_id)
        if image is None:
            ledger.skip("judge", description.description_id, "unknown_image", f"image {description.image_id}")
        elif not split_sentences(description.text):
            ledger.skip("judge", description.description_id, "empty_description")
        else:
            todo.append((image, description))
    if dry_run:
        return dry_run_estimate(judge, todo)

    workers = max(1, getattr(judge, "max_concurrency", 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            judgements = list(
                pool.map(lambda item: judge_one(judge, *item, item[1].description_id in failed_before), chunk)
            )
            append(files.judgements, judgements)
            for judgement in judgements:
                if judgement.failed:
                    ledger.skip(
                        "judge",
                        judgement.description_id,
                        "judge_failed",
                        judgement.failed,
                        already_logged=True,
                    )
    return judge_stats(files)


def judge_one(judge: Judge, image: ImageRecord, description: Description, retry: bool) -> Judgement:
    if retry and isinstance(judge, LLMJudge):  # a retry must reach the endpoint, not replay the failed answer
        return judge.judge(image, description.description_id, description.text, refresh=True)
    return judge.judge(image, description.description_id, description.text)


def dry_run_estimate(judge: Judge, todo: list[tuple[ImageRecord, Description]]) -> dict:
    """Calls and tokens the stage would spend (no calls made)."""
    estimate = getattr(judge, "estimate", None)
    if estimate is None:  # the offline judge makes no calls
        return {"to_judge": len(todo), "llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    tokens = [estimate(image, d.text) for image, d in todo]
    return {
        "to_judge": len(todo),
        "llm_calls": len(todo),
        "prompt_tokens": sum(t[0] for t in tokens),
        "completion_tokens": sum(t[1] for t in tokens),
    }


def judge_stats(files: BuildFiles) -> dict:
    judgements = read_jsonl(files.judgements, Judgement) if files.judgements.exists() else []
    usable = [j for j in judgements if j.failed is None]
    labels = [label for j in usable for label in j.labels]
    return {
        "descriptions_judged": len(usable),
        "judgements_failed": len(judgements) - len(usable),
        "descriptions_with_hallucination": sum(j.has_hallucination for j in usable),
        "description_hallucination_rate": _rate(sum(j.has_hallucination for j in usable), len(usable)),
        "sentences": len(labels),
        "sentence_labels": {name: labels.count(name) for name in ("hallucination", "correct", "cannot_judge")},
        "sentence_hallucination_rate": _rate(labels.count("hallucination"), len(labels)),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
