"""CHAIR (Caption Hallucination Assessment with Image Relevance, Rohrbach et al. 2018, arXiv 1809.02156).

Ground truth per image: the annotated object categories (COCO instances, or `ImageRecord.objects`) plus the
objects named in the image's reference captions. Which words of a caption mention which object is the protocol's
business (`chair_words`): by default the reference code's rules (LisaAnne/Hallucination `utils/chair.py`), so the
numbers compare with published ones; `protocol="hadpo"` for hadpo's reviewed table and singulars.

Metrics: CHAIRs = captions with >= 1 hallucinated mention / captions; CHAIRi = hallucinated mentions / all
mentions (mentions, not unique objects); recall = annotated objects mentioned / annotated objects (per image,
summed over images); average caption length in words (split on spaces). An empty caption counts as a caption
without objects in the reference protocol (as the reference scores it) and is skipped in the hadpo protocol.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hadpo.evaluate.chair_words import ObjectWords, object_words
from hadpo.files import file_format, read_json
from hadpo.records import ImageRecord, RecordError, read_jsonl

log = logging.getLogger(__name__)


@dataclass
class CaptionMention:
    words: str  # the matched (singularised) words, e.g. "baby elephant"
    object: str  # the canonical class, e.g. "elephant"
    hallucinated: bool


@dataclass
class CaptionDetail:
    image_id: str
    caption: str
    mentions: list[CaptionMention]
    ground_truth: list[str]
    covered: list[str]  # ground-truth objects the caption mentions

    @property
    def hallucinated(self) -> list[str]:
        return [m.object for m in self.mentions if m.hallucinated]


@dataclass
class ChairResult:
    chair_s: float
    chair_i: float
    recall: float
    avg_length: float
    captions: int
    mentions: int
    hallucinated_mentions: int
    captions_without_objects: int
    empty_captions: int  # scored as captions without objects (reference protocol) or skipped (hadpo)
    skipped: int  # captions not scored (unknown image; empty in the hadpo protocol)
    protocol: str
    details: list[CaptionDetail] = field(default_factory=list)

    def metrics(self) -> dict:
        data = asdict(self)
        data.pop("details")
        return data


def score_captions(
    captions: list[tuple[str, str]],
    ground_truth: dict[str, set[str]],
    words: ObjectWords,
    where: list[str] | None = None,
) -> ChairResult:
    """Score (image_id, caption) pairs against ground-truth object classes per image."""
    details: list[CaptionDetail] = []
    skipped = without_objects = empty = 0
    first_without_objects = ""
    for index, (image_id, caption) in enumerate(captions):
        name = where[index] if where else f"caption {index + 1}"
        if image_id not in ground_truth:
            log.warning("%s: image %s has no ground truth; skipped", name, image_id)
            skipped += 1
            continue
        if not caption.strip():
            empty += 1
            if words.protocol == "hadpo":
                log.warning("%s: empty caption for image %s; skipped", name, image_id)
                skipped += 1
                continue
            log.warning(
                "%s: empty caption for image %s; scored as a caption without objects, as the reference does",
                name,
                image_id,
            )
        truth = ground_truth[image_id]
        found = words.find(caption)
        if not found:
            # Kept in the metrics (it hallucinates nothing), as the original CHAIR does; reported all the same.
            first_without_objects = first_without_objects or f"{name}, image {image_id}"
            without_objects += 1
        mentions = [CaptionMention(w, obj, obj not in truth) for w, obj in found]
        covered = sorted({m.object for m in mentions if not m.hallucinated})
        details.append(CaptionDetail(image_id, caption, mentions, sorted(truth), covered))
    if without_objects:  # one line, not one per caption: a weak model's log would hold little else
        log.warning("%d captions name no object (the first: %s)", without_objects, first_without_objects)
    mention_count = sum(len(d.mentions) for d in details)
    hallucinated = sum(len(d.hallucinated) for d in details)
    truth_total = sum(len(d.ground_truth) for d in details)
    return ChairResult(
        chair_s=sum(bool(d.hallucinated) for d in details) / len(details) if details else 0.0,
        chair_i=hallucinated / mention_count if mention_count else 0.0,
        recall=sum(len(d.covered) for d in details) / truth_total if truth_total else 0.0,
        avg_length=sum(len(d.caption.split()) for d in details) / len(details) if details else 0.0,
        captions=len(details),
        mentions=mention_count,
        hallucinated_mentions=hallucinated,
        captions_without_objects=without_objects,
        empty_captions=empty,
        skipped=skipped,
        protocol=words.protocol,
        details=details,
    )


# --- files --------------------------------------------------------------------------------------------------


def load_ground_truth(
    annotations: str | Path,
    reference_captions: str | Path | None = None,
    protocol: str = "reference",
    synonyms: str | Path | Mapping[str, Iterable[str]] | None = None,
) -> tuple[dict[str, set[str]], ObjectWords]:
    """Ground-truth classes per image and the object words to match captions with (`chair_words.object_words`).

    `annotations`: COCO instances JSON or an `images.jsonl` of `ImageRecord`s (objects + reference captions); the
    object names the vocabulary does not cover join it as classes of their own (a custom dataset such as the
    world), annotated attribute words leave it. `reference_captions`: COCO captions JSON (`annotations` with
    `image_id` and `caption`), whose objects join the ground truth."""
    annotations = Path(annotations)
    read = _records_annotations if annotations.suffix == ".jsonl" else _coco_annotations
    names_per_image, captions_per_image, attributes, extra, aliases = read(annotations)
    words = object_words(protocol, synonyms, extra, attributes)
    if reference_captions is not None:
        data = read_json(reference_captions)
        with file_format(reference_captions, "COCO captions JSON (annotations with image_id and caption)"):
            for entry in data["annotations"] if isinstance(data, dict) else data:
                captions_per_image.setdefault(str(entry["image_id"]), []).append(entry["caption"])
    truth: dict[str, set[str]] = {}
    for image_id in set(names_per_image) | set(captions_per_image):
        objects = {obj for name in names_per_image.get(image_id, []) for obj in words.canonical(name)}
        for caption in captions_per_image.get(image_id, []):
            objects |= {obj for _, obj in words.find(caption)}
        truth[image_id] = objects
    for alias, image_id in aliases.items():
        truth.setdefault(alias, truth.get(image_id, set()))
    return truth, words


# (object names per image, reference captions per image, attribute words, names the vocabulary must cover,
# other names of an image id -> the id)
Annotations = tuple[dict[str, list[str]], dict[str, list[str]], set[str], list[str], dict[str, str]]


def _records_annotations(path: Path) -> Annotations:
    names_per_image: dict[str, list[str]] = {}
    captions_per_image: dict[str, list[str]] = {}
    attributes: set[str] = set()
    for record in read_jsonl(path, ImageRecord):
        names_per_image[record.image_id] = [o.name for o in record.objects]
        captions_per_image[record.image_id] = list(record.captions)
        attributes |= {a for o in record.objects for a in o.attributes}
    extra = sorted({name for names in names_per_image.values() for name in names})
    return names_per_image, captions_per_image, attributes, extra, {}


def _coco_annotations(path: Path) -> Annotations:
    coco = read_json(path)
    if not (isinstance(coco, dict) and "categories" in coco and "annotations" in coco):
        raise RecordError(f"{path}: not COCO instances JSON nor an images.jsonl of ImageRecords")
    names_per_image: dict[str, list[str]] = {}
    attributes: set[str] = set()
    aliases: dict[str, str] = {}
    with file_format(path, "COCO instances JSON (images, annotations, categories)"):
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        for image in coco.get("images", []):
            names_per_image.setdefault(str(image["id"]), [])
            # Captions may name a COCO image by its file name, its stem, or hadpo's own id instead of the number.
            names = [image.get("file_name"), Path(image.get("file_name", "")).stem, image.get("hadpo_image_id")]
            for alias in filter(None, names):
                aliases.setdefault(str(alias), str(image["id"]))
        for index, annotation in enumerate(coco["annotations"]):
            if annotation["category_id"] not in categories:
                raise RecordError(
                    f"{path}: annotations[{index}]: field 'category_id': "
                    f"{annotation['category_id']} is not in categories"
                )
            names_per_image.setdefault(str(annotation["image_id"]), []).append(categories[annotation["category_id"]])
            attributes |= set(annotation.get("attributes", []))  # hadpo's world export keeps them
    # Categories outside the 80 COCO classes (a custom dataset in COCO format) are objects of their own.
    return names_per_image, {}, attributes, sorted(set(categories.values())), aliases


def read_captions(path: str | Path, several_per_image: bool = False) -> tuple[list[tuple[str, str]], list[str], int]:
    """(image_id, caption) pairs and where each came from. JSON lines (hadpo `Answer`/`Description` records or
    `{"image_id", "caption"|"text"}`), or a JSON list in the COCO results format. Bad entries are logged and
    counted; returns (pairs, locations, skipped). CHAIR scores one caption per image: a second caption of an
    image_id is an error (two runs in one file would be scored as one), unless `several_per_image` (the
    reference code scores every caption it is given)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    entries: list[tuple[str, object]] = []
    if path.suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise RecordError(f"{path}: expected the COCO results format, a JSON list of {{image_id, caption}}")
        entries = [(f"{path}[{i}]", entry) for i, entry in enumerate(data)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append((f"{path}:{number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    entries.append((f"{path}:{number}", f"not valid JSON ({error.msg})"))
    pairs, locations, skipped = [], [], 0
    first: dict[str, str] = {}
    first_of_image: dict[str, str] = {}
    for where, entry in entries:
        caption = entry.get("caption", entry.get("text")) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or "image_id" not in entry or not isinstance(caption, str):
            reason = entry if isinstance(entry, str) else "needs 'image_id' and 'caption' (or 'text')"
            log.warning("%s: %s; skipped", where, reason)
            skipped += 1
            continue
        # An image may have several captions (the reference scores each), but the same one twice, or one id
        # twice, is a file written twice: it would be scored and counted twice.
        image_id = str(entry["image_id"])
        key = str(entry.get("question_id", entry.get("description_id", ""))) or f"{image_id}\n{caption}"
        if key in first:
            raise RecordError(f"{where}: caption of image {image_id} repeats {first[key]}")
        first[key] = where
        if image_id in first_of_image and not several_per_image:
            raise RecordError(
                f"{where}: a second caption of image {image_id} (the first: {first_of_image[image_id]}); CHAIR "
                "scores one caption per image (--several-per-image scores each, as the reference code does)"
            )
        first_of_image.setdefault(image_id, where)
        pairs.append((image_id, caption))
        locations.append(where)
    if not pairs:
        raise RecordError(f"{path}: no captions" + (f" ({skipped} bad entries skipped)" if skipped else ""))
    return pairs, locations, skipped


def evaluate_chair(
    captions: str | Path,
    annotations: str | Path,
    reference_captions: str | Path | None = None,
    protocol: str = "reference",
    synonyms: str | Path | Mapping[str, Iterable[str]] | None = None,
    several_per_image: bool = False,
) -> ChairResult:
    truth, words = load_ground_truth(annotations, reference_captions, protocol, synonyms)
    pairs, locations, unreadable = read_captions(captions, several_per_image)
    result = score_captions(pairs, truth, words, locations)
    result.skipped += unreadable
    if not result.captions:
        raise RecordError(
            f"{captions}: no caption could be scored ({result.skipped} skipped: their image_ids are "
            f"not images of {annotations}?)"
        )
    return result


def write_details(path: str | Path, result: ChairResult) -> None:
    """The per-caption detail as JSON lines: which words matched which object, and which were hallucinated."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for detail in result.details:
            row = asdict(detail) | {"hallucinated": detail.hallucinated}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
