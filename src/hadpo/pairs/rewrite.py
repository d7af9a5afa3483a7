"""The `rewrite` stage: k style-consistent rewrites of every (positive, negative) description pair, each
re-judged, and the description pairs themselves.

HA-DPO (arXiv 2311.16839, section 3.2, "style-consistent data augmentation"): the positive (corrected text) and the
negative (the model's own description) are both rewritten by GPT-4, keeping their polarity, 3 times, so that a
pair differs in hallucination and not in style. Here a rewriter returns rewrite i of both texts in one style
(`hadpo.judge`: `LLMRewriter` in one call; the offline `ParaphraseRewriter` by applying one set of phrasing
choices and one sentence order to both). Every rewrite is re-judged: a positive that gained a hallucination or a
negative that lost all of them is dropped and counted; so is a corrected positive that is not clean itself.

Output: `rewrites.jsonl`, one `RewriteSet` per hallucinated description (resumable by description id); the
description pairs are derived from it by `description_pairs`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hadpo.judge.base import Judge
from hadpo.judge.llm import RewriteFailed
from hadpo.pairs.store import BuildFiles, Ledger, append, done_ids
from hadpo.records import (
    Description,
    ImageRecord,
    Judgement,
    PreferencePair,
    RewriteItem,
    RewriteSet,
    iter_jsonl,
)

CHUNK = 32


def rewrite_set(
    image: ImageRecord, description: Description, judgement: Judgement, judge: Judge, rewriter, k: int
) -> tuple[RewriteSet, list[tuple[str, str]]]:
    """The RewriteSet of one hallucinated description, and the (item, reason, detail) drops it made (item "r<i>",
    "" for the whole set), each counted once."""
    result = RewriteSet(
        description_id=description.description_id, image_id=image.image_id, rewriter=rewriter.name, judge=judge.name
    )
    drops: list[tuple[str, str, str]] = []
    positive, negative = judgement.corrected.strip(), description.text.strip()
    original = RewriteItem(index=0, chosen=positive or "-", rejected=negative, rejected_labels=judgement.labels)
    result.items.append(original)
    if not positive:
        original.kept, original.reason = False, "empty_correction"
    elif positive == negative:
        original.kept, original.reason = False, "identical_texts"
    else:
        check = judge.judge(image, f"{description.description_id}:r0:chosen", positive)
        if check.failed or check.has_hallucination:
            original.kept, original.reason = False, "correction_not_clean"
    if not original.kept:
        return result, [("r0", original.reason, "")]
    try:
        rewrites = rewriter.rewrite_pair(positive, negative, k, key=description.description_id)
    except RewriteFailed as error:
        return result, [("", "rewrite_failed", str(error))]
    written = {(positive, negative)}
    for index, (chosen, rejected) in enumerate(rewrites, start=1):
        item = RewriteItem(index=index, chosen=chosen or "-", rejected=rejected or "-")
        if (chosen, rejected) in written or chosen.strip() == rejected.strip():
            # A rewrite equal to an earlier one adds a copy, not a style (the offline paraphraser has a few
            # dozen styles per text, so a large k repeats them); equal texts teach no preference.
            item.kept = False
            item.reason = "identical_texts" if chosen.strip() == rejected.strip() else "duplicate_rewrite"
            drops.append((f"r{index}", item.reason, ""))
            result.items.append(item)
            continue
        written.add((chosen, rejected))
        chosen_check = judge.judge(image, f"{description.description_id}:r{index}:chosen", chosen)
        rejected_check = judge.judge(image, f"{description.description_id}:r{index}:rejected", rejected)
        item.rejected_labels = rejected_check.labels
        if chosen_check.failed or rejected_check.failed:
            item.kept, item.reason = False, "rejudge_failed"
        elif chosen_check.has_hallucination:
            item.kept, item.reason = False, "positive_gained_hallucination"
        elif not rejected_check.has_hallucination:
            item.kept, item.reason = False, "negative_lost_hallucination"
        if not item.kept:
            drops.append((f"r{index}", item.reason, ""))
        result.items.append(item)
    return result, drops


def rewrite_judged(
    images: dict[str, ImageRecord],
    files: BuildFiles,
    judge: Judge,
    rewriter,
    k: int,
    ledger: Ledger,
    dry_run: bool = False,
) -> dict:
    """Write a RewriteSet for every hallucinated, usable judgement not yet in rewrites.jsonl."""
    descriptions = {d.description_id: d for d in iter_jsonl(files.descriptions, Description)}
    done = done_ids(files.rewrites, RewriteSet, "description_id")
    todo = [
        (images[j.image_id], descriptions[j.description_id], j)
        for j in iter_jsonl(files.judgements, Judgement)
        if j.failed is None
        and j.has_hallucination
        and j.description_id not in done
        and j.image_id in images
        and j.description_id in descriptions
    ]
    if dry_run:
        return _dry_run(todo, judge, rewriter, k)
    workers = max(1, getattr(rewriter, "max_concurrency", 1), getattr(judge, "max_concurrency", 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(todo), CHUNK):
            results = list(pool.map(lambda item: rewrite_set(*item, judge, rewriter, k), todo[start : start + CHUNK]))
            append(files.rewrites, [result for result, _ in results])
            for result, drops in results:
                for item, reason, detail in drops:
                    record = f"{result.description_id}:{item}" if item else result.description_id
                    ledger.drop("rewrite", record, reason, detail)
    return rewrite_stats(files)


def _dry_run(todo, judge, rewriter, k) -> dict:
    rejudges = len(todo) * (1 + 2 * k)
    calls = {
        "to_rewrite": len(todo),
        "rewrite_calls": 0,
        "rejudge_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    if hasattr(rewriter, "estimate"):
        calls["rewrite_calls"] = len(todo)
        for _, description, judgement in todo:
            prompt, completion = rewriter.estimate(judgement.corrected, description.text, k)
            calls["prompt_tokens"] += prompt
            calls["completion_tokens"] += completion
    if hasattr(judge, "estimate"):
        calls["rejudge_calls"] = rejudges
        for image, description, _ in todo:
            prompt, completion = judge.estimate(image, description.text)
            calls["prompt_tokens"] += prompt * (1 + 2 * k)
            calls["completion_tokens"] += completion * (1 + 2 * k)
    return calls


def rewrite_stats(files: BuildFiles) -> dict:
    sets = list(iter_jsonl(files.rewrites, RewriteSet)) if files.rewrites.exists() else []
    items = [item for s in sets for item in s.items]
    return {
        "descriptions_rewritten": len(sets),
        "candidate_pairs": len(items),
        "kept_pairs": sum(item.kept for item in items),
    }


def description_pairs(files: BuildFiles, images: dict[str, ImageRecord]) -> list[PreferencePair]:
    """Every kept item of rewrites.jsonl as a `desc` PreferencePair, prompt = the description's prompt."""
    descriptions = {d.description_id: d for d in iter_jsonl(files.descriptions, Description)}
    pairs = []
    for rewrite in iter_jsonl(files.rewrites, RewriteSet) if files.rewrites.exists() else []:
        description, image = descriptions.get(rewrite.description_id), images.get(rewrite.image_id)
        if description is None or image is None:
            continue
        for item in rewrite.items:
            if item.kept:
                pairs.append(
                    PreferencePair(
                        images=[image.path],
                        prompt=description.prompt,
                        chosen=item.chosen,
                        rejected=item.rejected,
                        kind="desc",
                        image_id=image.image_id,
                        pair_id=f"desc:{rewrite.description_id}:r{item.index}",
                        source_description_id=rewrite.description_id,
                        judge=rewrite.judge,
                        labels=item.rejected_labels,
                        rewrite_index=item.index,
                    )
                )
    return pairs
