"""SHR (sentence-level hallucination ratio), the detailed-description metric of HA-DPO (arXiv 2311.16839, sec. 4).

A description is split into sentences (`hadpo.text.split_sentences`: on '.', empty, repeated and contained
sentences dropped); a judge (any `hadpo.judge.base.Judge`: the LLM judge over an OpenAI-compatible endpoint, or
the offline annotations judge for complete annotations) labels each sentence hallucination / correct /
cannot_judge against the image's region descriptions, boxes normalised to the image size.

Metrics, as the HA-DPO release computes them:
- SHR = hallucinated sentences / judged sentences (all three labels count as judged);
- hallucinated-word ratio = words of hallucinated sentences / words of judged sentences (split on spaces);
- sentences and words per image (SHR can be lowered by saying less: always read it beside these);
- 1-4-gram "repetition" = unique n-grams / all n-grams of a description (after removing . : ? , and newlines),
  averaged over descriptions; lower means more repetition.
A judgement that failed (`Judgement.failed`, or a label count that does not match the sentences) is unusable
for SHR: it is counted and listed in the result, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hadpo.errors import RunFailed
from hadpo.files import file_format, read_json
from hadpo.judge.base import Judge
from hadpo.progress import progress_bar
from hadpo.records import ImageRecord, Judgement, RecordError, Region, json_objects, write_jsonl
from hadpo.text import split_sentences

log = logging.getLogger(__name__)

NGRAM_SIZES = (1, 2, 3, 4)


def ngram_unique_ratio(text: str, n: int) -> float | None:
    """Unique n-grams / all n-grams of `text` (the release's `cal_repetition`); None when it has fewer than n
    words (the release divides by zero there)."""
    for mark in (".", ":", "\n", "?", ","):
        text = text.replace(mark, "" if mark != "\n" else " ")
    tokens = text.split()
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def usable(judgement: Judgement) -> bool:
    return judgement.failed is None and len(judgement.labels) == len(judgement.sentences) > 0


@dataclass
class ShrResult:
    shr: float | None  # None when no judgement was usable
    hallucinated_word_ratio: float | None
    images: int  # descriptions judged (usable or not)
    judged_sentences: int
    hallucinated_sentences: int
    label_counts: dict[str, int]
    sentences_per_image: float
    words_per_image: float
    ngram_unique_ratio: dict[str, float | None]
    failed_judgements: int
    failed_ids: list[str] = field(default_factory=list)
    skipped: int = 0  # descriptions never judged (unknown image, empty text)
    judge: str = ""

    def metrics(self) -> dict:
        return asdict(self)


def shr_metrics(
    judgements: list[Judgement], texts: dict[str, str], judge_name: str = "", skipped: int = 0
) -> ShrResult:
    """SHR and its companions from judgements; `texts` maps description_id -> the judged description."""
    good = [j for j in judgements if usable(j)]
    failed = [j for j in judgements if not usable(j)]
    labels = Counter(label for j in good for label in j.labels)
    sentence_words = [(label, len(sentence.split(" "))) for j in good for sentence, label in zip(j.sentences, j.labels)]
    all_words = sum(count for _, count in sentence_words)
    hallucinated_words = sum(count for label, count in sentence_words if label == "hallucination")
    judged = sum(labels.values())
    described = [texts[j.description_id] for j in judgements]
    ratios = {}
    for n in NGRAM_SIZES:
        values = [r for r in (ngram_unique_ratio(t, n) for t in described) if r is not None]
        ratios[str(n)] = sum(values) / len(values) if values else None
    return ShrResult(
        shr=labels["hallucination"] / judged if judged else None,
        hallucinated_word_ratio=hallucinated_words / all_words if all_words else None,
        images=len(judgements),
        judged_sentences=judged,
        hallucinated_sentences=labels["hallucination"],
        label_counts={name: labels[name] for name in ("hallucination", "correct", "cannot_judge")},
        sentences_per_image=sum(len(split_sentences(t)) for t in described) / len(described) if described else 0.0,
        words_per_image=sum(len(t.split()) for t in described) / len(described) if described else 0.0,
        ngram_unique_ratio=ratios,
        failed_judgements=len(failed),
        failed_ids=[j.description_id for j in failed],
        skipped=skipped,
        judge=judge_name,
    )


def _judge_one(judge: Judge, image: ImageRecord, description_id: str, text: str) -> Judgement:
    try:
        return judge.judge(image, description_id, text)
    except RunFailed:  # an endpoint that refuses every request (a wrong key) stops the run
        raise
    except Exception as error:  # a judge bug or a dead endpoint fails this item, not the run
        log.warning(
            "description %s (image %s): judge raised %s: %s",
            description_id,
            image.image_id,
            error.__class__.__name__,
            error,
        )
        return Judgement(
            description_id=description_id,
            image_id=image.image_id,
            judge=judge.name,
            sentences=[],
            labels=[],
            failed=f"{error.__class__.__name__}: {error}",
        )


def evaluate_shr(
    descriptions: list[tuple[str, str, str]],
    images: dict[str, ImageRecord],
    judge: Judge,
    progress: bool = True,
) -> tuple[ShrResult, list[Judgement]]:
    """Judge (description_id, image_id, text) triples and compute SHR. Descriptions whose image is unknown or
    whose text is empty are logged and counted as skipped."""
    todo, skipped = [], 0
    for description_id, image_id, text in descriptions:
        if image_id not in images:
            log.warning("description %s: image %s has no annotations; skipped", description_id, image_id)
            skipped += 1
        elif not text.strip():
            log.warning("description %s (image %s): empty description; skipped", description_id, image_id)
            skipped += 1
        else:
            todo.append((description_id, image_id, text))
    if not todo:
        raise RecordError(f"no description to judge: all {skipped} skipped (unknown images or empty texts)")
    workers = max(1, int(getattr(judge, "max_concurrency", 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_judge_one, judge, images[i], d, t) for d, i, t in todo]
        judgements = [f.result() for f in progress_bar(futures, desc=f"SHR {judge.name}", disable=not progress)]
    texts = {d: t for d, _, t in todo}
    return shr_metrics(judgements, texts, judge.name, skipped), judgements


def read_descriptions(path: str | Path) -> tuple[list[tuple[str, str, str]], int]:
    """(description_id, image_id, text) from JSON lines (hadpo `Description` or `Answer` records, or any object
    with `image_id` and `text`) or the HA-DPO release's JSON `{image_id: response}`. Returns (triples, skipped)."""
    path = Path(path)
    triples, skipped = [], 0
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{image_id: description}}")
        for image_id, text in data.items():
            if isinstance(text, str):
                triples.append((str(image_id), str(image_id), text))
            else:
                log.warning("%s: image %s: description is not a string; skipped", path, image_id)
                skipped += 1
        return triples, skipped
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            log.warning("%s:%d: not valid JSON (%s); skipped", path, number, error.msg)
            skipped += 1
            continue
        if not isinstance(data, dict) or "image_id" not in data or not isinstance(data.get("text"), str):
            log.warning("%s:%d: needs 'image_id' and 'text'; skipped", path, number)
            skipped += 1
            continue
        description_id = str(data.get("description_id", data.get("question_id", f"{data['image_id']}#{number}")))
        if description_id in seen:
            raise RecordError(f"{path}:{number}: description id {description_id} repeats line {seen[description_id]}")
        seen[description_id] = number
        triples.append((description_id, str(data["image_id"]), data["text"]))
    if not triples:
        raise RecordError(f"{path}: no descriptions" + (f" ({skipped} bad lines skipped)" if skipped else ""))
    return triples, skipped


def images_from_visual_genome(
    image_data: str | Path,
    region_descriptions: str | Path,
    factual_notes: list[str | Path] = (),
    image_ids: str | Path | None = None,
) -> list[ImageRecord]:
    """`ImageRecord`s for SHR from the release's inputs: Visual Genome `image_data.json` (sizes, urls) and
    `region_descriptions.json`, the SHR factual notes (`shr_factual_part*.jsonl`, lines `{image_id: [notes]}`,
    kept as captions), and optionally the SHR image list (`val_images_final.json`) to restrict to."""
    wanted = None
    if image_ids is not None:
        with file_format(image_ids, "the SHR image list (a JSON list of {image_id})"):
            wanted = {str(entry["image_id"]) for entry in read_json(image_ids)}
    notes: dict[str, list[str]] = {}
    for path in factual_notes:
        with file_format(path, "SHR factual notes (JSON lines {image_id: [notes]})"):
            for _, row in json_objects(path):
                for image_id, texts in row.items():
                    notes.setdefault(str(image_id), []).extend(texts)
    regions: dict[str, list[Region]] = {}
    with file_format(region_descriptions, "Visual Genome region_descriptions.json"):
        for entry in read_json(region_descriptions):
            for region in entry.get("regions", []):
                image_id = str(region["image_id"])
                if (wanted is None or image_id in wanted) and region.get("phrase", "").strip():
                    box = [region["x"], region["y"], region["width"], region["height"]]
                    regions.setdefault(image_id, []).append(Region(phrase=region["phrase"].strip(), box=box))
    with file_format(image_data, "Visual Genome image_data.json"):
        return _vg_records(read_json(image_data), wanted, regions, notes)


def write_visual_genome_images(
    out: str | Path,
    image_data: str | Path,
    region_descriptions: str | Path,
    factual_notes: list[str | Path] = (),
    image_ids: str | Path | None = None,
    image_root: str | Path | None = None,
) -> Path:
    """The SHR images as an images.jsonl of `ImageRecord`s (`out`), converted from the release's inputs by
    `images_from_visual_genome`; `image_root` is the folder holding VG_100K/ and VG_100K_2/, needed to describe
    the images (paths are written absolute under it), not to judge descriptions already written."""
    records = images_from_visual_genome(image_data, region_descriptions, factual_notes, image_ids)
    if image_root:
        for record in records:
            record.path = str((Path(image_root) / record.path).resolve())
    write_jsonl(out, records)
    return Path(out)


def _vg_records(
    image_data: list, wanted: set[str] | None, regions: dict[str, list[Region]], notes: dict[str, list[str]]
) -> list[ImageRecord]:
    records = []
    for entry in image_data:
        image_id = str(entry["image_id"])
        if wanted is not None and image_id not in wanted:
            continue
        path = "/".join(entry.get("url", f"/{image_id}.jpg").split("/")[-2:])  # e.g. VG_100K/2345.jpg
        records.append(
            ImageRecord(
                image_id=image_id,
                path=path,
                width=entry["width"],
                height=entry["height"],
                regions=regions.get(image_id, []),
                captions=notes.get(image_id, []),
                source="visual_genome",
            )
        )
    return records
