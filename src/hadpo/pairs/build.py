"""`hadpo pairs build`: every stage of HA-DPO's pair construction from one config, into one folder.

  sources  -> images.jsonl        images + annotations (Visual Genome, COCO, a folder JSONL of ImageRecords)
  describe -> descriptions.jsonl  N sampled descriptions per image from the target VLM
  judge    -> judgements.jsonl    sentence labels + corrected text per description
  rewrite  -> rewrites.jsonl      k style-consistent rewrites per hallucinated description, each re-judged
  qa       -> (qa_answers.jsonl)  questions from the judged facts (+ the model's own answers when sampled)
  assemble -> pairs.jsonl, stats.json

HA-DPO (arXiv 2311.16839, section 3). Each stage resumes from its own append-only file; `pairs.jsonl` and
`stats.json` are derived from them and rewritten by every run. `dry_run` counts what the stages would do and
the LLM calls and tokens they would spend, and writes nothing but the validated image list.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter

from hadpo.config import save_config
from hadpo.errors import RunFailed
from hadpo.judge.llm import LLMJudge, LLMRewriter
from hadpo.judge.llm_client import LLMClient
from hadpo.judge.offline import AnnotationJudge
from hadpo.pairs.config import PairsConfig
from hadpo.pairs.describe import sample_descriptions
from hadpo.pairs.judging import judge_descriptions, judge_stats
from hadpo.pairs.qa import co_occurrence_facts, collect_facts, qa_pairs, sample_answers
from hadpo.pairs.rewrite import ParaphraseRewriter, description_pairs, rewrite_judged, rewrite_stats
from hadpo.pairs.sources import load_coco, load_folder, load_visual_genome, validate_images
from hadpo.pairs.spans import mark_spans, restated_counts
from hadpo.pairs.store import BuildFiles, Ledger, update_stats, write_atomic
from hadpo.records import (
    ImageRecord,
    Judgement,
    PreferencePair,
    RecordError,
    ensure_dir,
    iter_jsonl,
    read_jsonl,
    write_jsonl,
)

log = logging.getLogger(__name__)

STAGES = ("describe", "judge", "rewrite", "qa")


def load_source(config: PairsConfig, files: BuildFiles, ledger: Ledger) -> tuple[list[ImageRecord], list[str]]:
    """The validated image records (images.jsonl, written once and reused) and exhaustively annotated names."""
    source = config.source
    exhaustive: list[str] = []
    if source.kind == "coco" and source.instances and files.images.exists():
        exhaustive = load_coco(source.instances, source.images)[1]
    if files.images.exists():
        records = read_jsonl(files.images, ImageRecord)
        if not records:
            raise RecordError(f"{files.images}: no image records (written by an earlier run; delete it to rebuild)")
        return records, exhaustive
    if not source.images:
        raise ValueError(f"source.images: the {source.kind} source needs its images (see docs/pairs.md)")
    if source.kind == "folder":
        records = load_folder(source.images, ledger)
    elif source.kind == "visual_genome":
        records = load_visual_genome(
            source.images,
            source.objects,
            source.attributes,
            source.relationships,
            source.region_descriptions,
            source.image_data,
            min_objects=source.min_objects,
            max_objects=source.max_objects,
            ledger=ledger,
        )
    else:
        if not source.instances:
            raise ValueError("source.kind coco needs source.instances")
        records, exhaustive = load_coco(source.instances, source.images, source.captions, source.min_objects, ledger)
    if not records:
        skipped = ledger.counts("skipped")
        listing = source.images if source.kind == "folder" else source.instances or source.attributes or source.objects
        raise RecordError(
            f"source: {listing} holds no image records"
            + (f" that can be read ({_counts(skipped)}; reasons in {files.events})" if skipped else "")
        )
    listed = len(records)
    records = [r for r in records if source.min_objects <= len(r.objects) <= source.max_objects]
    if not records:
        raise RecordError(
            f"source: none of the {listed} images of {source.images} has between min_objects "
            f"{source.min_objects} and max_objects {source.max_objects} annotated objects"
        )
    records = validate_images(records[: source.limit] if source.limit else records, ledger)
    if not records:
        raise RecordError(
            f"source.images: no usable image in {source.images}: every one was skipped "
            f"({_counts(ledger.counts('skipped'))}; reasons in {files.events})"
        )
    write_jsonl(files.images, records)
    return records, exhaustive


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items()) or "none counted"


def make_judge(config: PairsConfig, records: list[ImageRecord], exhaustive: list[str], files: BuildFiles):
    judge = config.judge
    if judge.kind == "annotations":
        return AnnotationJudge.from_records(
            records,
            judge.synonyms,
            [*exhaustive, *judge.exhaustive_names],
            judge.extra_names,
            judge.fill_absent,
        )
    if judge.kind == "llm":
        judge.llm.cache_dir = judge.llm.cache_dir or str(files.cache)
        return LLMJudge(judge.llm, judge.template)
    raise ValueError(f"unknown judge.kind {judge.kind!r} (annotations, llm)")


def make_rewriter(config: PairsConfig, judge, files: BuildFiles):
    rewrite = config.rewrite
    if rewrite.kind == "offline":
        return ParaphraseRewriter()
    if rewrite.kind == "llm":
        llm = rewrite.llm or config.judge.llm
        llm.cache_dir = llm.cache_dir or str(files.cache)
        # Share the judge's client when the endpoint is the same: one concurrency bound, one usage account.
        client = judge.client if isinstance(judge, LLMJudge) and rewrite.llm is None else LLMClient(llm)
        return LLMRewriter(llm, rewrite.template, client=client)
    raise ValueError(f"unknown rewrite.kind {rewrite.kind!r} (offline, llm)")


def ground_truth_agreement(spec: str, files: BuildFiles, images: dict[str, ImageRecord]) -> dict:
    """Share of sentences of the sampled descriptions where the judge's label equals `module:function`'s."""
    module, _, name = spec.partition(":")
    truth = getattr(importlib.import_module(module), name)
    compared = agreed = 0
    confusion: Counter = Counter()
    for judgement in iter_jsonl(files.judgements, Judgement):
        if judgement.failed or judgement.image_id not in images:
            continue
        for sentence, label in zip(judgement.sentences, judgement.labels):
            expected = truth(images[judgement.image_id], sentence)
            compared += 1
            agreed += expected == label
            if expected != label:
                confusion[f"{expected}->{label}"] += 1
    return {
        "sentences": compared,
        "agreed": agreed,
        "rate": round(agreed / compared, 4) if compared else None,
        "disagreements": dict(confusion.most_common()),
    }


# A stand-in for a description not sampled yet (dry runs): six sentences of ten words, typical of LLaVA-1.5.
TYPICAL_DESCRIPTION = " ".join(["The image shows a scene with several objects in it."] * 6)


def estimate_unsampled(records: list[ImageRecord], count: int, config: PairsConfig, judge, rewriter) -> dict:
    """LLM calls and tokens for `count` descriptions not sampled yet: judging each, and (an upper bound: as if
    every description hallucinated) rewriting and re-judging each. Tokens use the mean image's annotations."""
    k = config.rewrite.k
    estimate = {
        "descriptions": count,
        "judge_calls": 0,
        "rewrite_calls_at_most": 0,
        "rejudge_calls_at_most": 0,
        "prompt_tokens_at_most": 0,
        "completion_tokens_at_most": 0,
    }
    if hasattr(judge, "estimate"):
        tokens = [judge.estimate(r, TYPICAL_DESCRIPTION) for r in records] or [(0, 0)]
        calls = count * (2 + 2 * k)  # judge, re-judge the positive, 2 re-judges per rewrite
        estimate["judge_calls"] = count
        estimate["rejudge_calls_at_most"] = count * (1 + 2 * k)
        estimate["prompt_tokens_at_most"] += round(sum(t[0] for t in tokens) / len(tokens) * calls)
        estimate["completion_tokens_at_most"] += round(sum(t[1] for t in tokens) / len(tokens) * calls)
    if hasattr(rewriter, "estimate"):
        prompt, completion = rewriter.estimate(TYPICAL_DESCRIPTION, TYPICAL_DESCRIPTION, k)
        estimate["rewrite_calls_at_most"] = count
        estimate["prompt_tokens_at_most"] += prompt * count
        estimate["completion_tokens_at_most"] += completion * count
    return estimate


def run_build(
    config: PairsConfig, stages: tuple[str, ...] = STAGES, dry_run: bool = False, model_and_processor=None
) -> dict:
    """Run `stages` (in pipeline order) and assemble pairs.jsonl + stats.json; returns the stats."""
    files = BuildFiles(ensure_dir(config.out_dir, "out_dir"))
    files.check()
    for stage, needed in (("judge", files.descriptions), ("rewrite", files.judgements)):
        previous = STAGES[STAGES.index(stage) - 1]
        if stage in stages and previous not in stages and not needed.exists():
            raise RecordError(
                f"{needed}: not found; 'hadpo pairs {stage}' reads what 'hadpo pairs {previous}' "
                "writes (or run 'hadpo pairs build')"
            )
    ledger = Ledger(files.events)
    records, exhaustive = load_source(config, files, ledger)
    save_config(config, files.config)  # once the input is known good: a refused config never replaces it
    images = {r.image_id: r for r in records}
    judge = make_judge(config, records, exhaustive, files)
    rewriter = make_rewriter(config, judge, files)
    stats: dict = {}  # this run's numbers per stage
    if "describe" in stages:
        stats["describe"] = sample_descriptions(records, files, config.describe, ledger, model_and_processor, dry_run)
    if "judge" in stages and files.descriptions.exists():
        stats["judge"] = judge_descriptions(images, files, judge, ledger, config.judge.retry_failed, dry_run)
    if "rewrite" in stages and files.judgements.exists():
        stats["rewrite"] = rewrite_judged(images, files, judge, rewriter, config.rewrite.k, ledger, dry_run)
    if dry_run:
        if "describe" in stats and stats["describe"]["descriptions_to_sample"]:
            count = stats["describe"]["descriptions_to_sample"]
            stats["llm_for_new_descriptions"] = estimate_unsampled(records, count, config, judge, rewriter)
        return {"images": len(records), "dry_run": stats}

    pairs = description_pairs(files, images) if files.rewrites.exists() else []
    own_answers = 0
    if "qa" in stages and config.qa.enabled and files.judgements.exists():
        facts = collect_facts(images, files, judge, config.qa.max_per_image, config.qa.kinds)
        if config.qa.co_occurrence_per_image:
            asked = {(f.image_id, f.question) for f in facts}
            extra = co_occurrence_facts(images, config.qa.co_occurrence_per_image, set(exhaustive))
            facts += [f for f in extra if (f.image_id, f.question) not in asked]
        answers = None
        if config.qa.sample_answers:
            config.qa.sampling.model = config.qa.sampling.model or config.describe.model
            answers = sample_answers(facts, images, files, config.qa.sampling, model_and_processor)
        short = config.qa.short_answers.model_dump() if config.qa.short_answers else None
        built, own_answers = qa_pairs(facts, images, answers, short)
        pairs += built
        stats["qa"] = {"facts": len(facts), "pairs": len(built)}
    elif files.pairs.exists():  # keep the QA pairs of an earlier run when this run skips the stage
        pairs += [p for p in read_jsonl(files.pairs, PreferencePair) if p.kind == "qa"]
    pairs = [mark_spans(pair) for pair in pairs]
    if pairs or not {"rewrite", "qa"} & set(stages):
        write_atomic(files.pairs, pairs)
    stats = assemble_stats(config, files, ledger, images, pairs, own_answers, judge, rewriter, stats)
    check_produced(stages, stats, files)
    return stats


def check_produced(stages: tuple[str, ...], stats: dict, files: BuildFiles) -> None:
    """A run that produced none of what it was asked for fails (exit 1), saying what each stage left; what the
    stages wrote is kept, so a rerun after the fix resumes from it. An empty pairs.jsonl is never written over
    an earlier one."""
    judged = stats.get("descriptions_judged") or 0
    if {"rewrite", "qa"} & set(stages) and not stats["pairs"]["total"]:
        raise RunFailed(
            f"no pairs: {judged} descriptions judged usable ({stats.get('judgements_failed') or 0} judgements "
            f"failed), {stats.get('descriptions_with_hallucination') or 0} with a hallucination, "
            f"{stats['rewrite'].get('kept_pairs', 0)} rewrite pairs kept; skipped: "
            f"{_counts(stats['skipped'])}; dropped: {_counts(stats['dropped'])} (see {files.stats})"
        )
    if "judge" in stages and "judge" in stats["this_run"] and not judged:
        raise RunFailed(
            f"no usable judgement: {stats.get('judgements_failed') or 0} failed; skipped: "
            f"{_counts(stats['skipped'])} (see {files.judgements} and {files.events})"
        )
    if "describe" in stages and not stats["this_run"].get("describe", {}).get("descriptions"):
        raise RunFailed(f"no description written; skipped: {_counts(stats['skipped'])} (see {files.events})")


def assemble_stats(config, files, ledger, images, pairs, own_answers, judge, rewriter, stage_numbers) -> dict:
    usable = judge_stats(files) if files.judgements.exists() else {}
    kinds = Counter(pair.kind for pair in pairs)
    stats = {
        "images": len(images),
        "judge": judge.name,
        "rewriter": rewriter.name,
        **{
            key: usable.get(key)
            for key in (
                "descriptions_judged",
                "judgements_failed",
                "descriptions_with_hallucination",
                "description_hallucination_rate",
                "sentences",
                "sentence_labels",
                "sentence_hallucination_rate",
            )
        },
        "descriptions_without_hallucination": (usable.get("descriptions_judged") or 0)
        - (usable.get("descriptions_with_hallucination") or 0),
        "rewrite": rewrite_stats(files) if files.rewrites.exists() else {},
        "pairs": {
            "desc": kinds.get("desc", 0),
            "qa": kinds.get("qa", 0),
            "total": len(pairs),
            "qa_with_model_answer": own_answers,
        },
        "skipped": ledger.counts("skipped"),
        "dropped": ledger.counts("dropped"),
        "llm": llm_usage(judge, rewriter),
        "llm_total": llm_total(files, llm_usage(judge, rewriter)),
        "this_run": stage_numbers,
    }
    facts_judge = judge if isinstance(judge, AnnotationJudge) else AnnotationJudge.from_records(images.values())
    stats["restated_facts"] = restated_counts(pairs, images, facts_judge)
    if config.ground_truth and files.judgements.exists():
        stats["ground_truth_agreement"] = ground_truth_agreement(config.ground_truth, files, images)
    update_stats(files.stats, stats)
    return stats


def llm_usage(*users) -> dict:
    """Token and cost counts of this run's LLM clients (each client once)."""
    clients = {id(c): c for c in (getattr(u, "client", None) for u in users) if c is not None}
    totals: Counter = Counter()
    for client in clients.values():
        for key, value in client.usage.as_dict().items():
            if isinstance(value, int | float):
                totals[key] += value
    return dict(totals) if clients else {"calls": 0, "note": "no LLM used"}


def llm_total(files: BuildFiles, this_run: dict) -> dict:
    """LLM counts summed over every run of this build folder (`llm` holds this run's only)."""
    previous = json.loads(files.stats.read_text()).get("llm_total", {}) if files.stats.exists() else {}
    keys = [k for k, v in this_run.items() if isinstance(v, int | float)]
    return {k: previous.get(k, 0) + this_run[k] for k in keys} or previous
