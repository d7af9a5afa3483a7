"""CHAIR (Caption Hallucination Assessment with Image Relevance, Rohrbach et al. 2018, arXiv 1809.02156).

Ground truth per image: the annotated object categories (COCO instances, or `ImageRecord.objects`) plus the
objects named in the image's reference captions. A caption's object mentions are found with the COCO synonym
table (coco_synonyms.txt: 80 classes, two-word objects such as "hot dog" are single mentions) extended with
the annotations' own object names (minus their attribute words: the world's colour "orange" is no fruit), on
lower-cased, singularised tokens, longest phrase first. Special rules:
"baby X" / "adult X" for an animal X -> X; "passenger jet/train" -> airplane/train; "bow tie" -> tie; "toilet
seat" -> toilet, and "seat" is ignored in a caption that mentions a toilet; "home plate", "train track" and
"baby/adult animal" are no objects.

Metrics: CHAIRs = captions with >= 1 hallucinated mention / captions; CHAIRi = hallucinated mentions / all
mentions (mentions, not unique objects); recall = annotated objects mentioned / annotated objects (per image,
summed over images); average caption length in words (split on spaces).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from hadpo.records import ImageRecord, RecordError, read_jsonl
from hadpo.text import ObjectVocabulary, singular

log = logging.getLogger(__name__)

SYNONYM_FILE = Path(__file__).with_name("coco_synonyms.txt")
ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"]
NOT_OBJECTS = ""  # vocabulary target for phrases that block the words inside them from matching


def read_synonym_table(path: str | Path = SYNONYM_FILE) -> dict[str, list[str]]:
    """{class: [synonyms]} from a table of comma-separated lines, the class first; '#' starts a comment."""
    table: dict[str, list[str]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, *synonyms = [part.strip() for part in line.split(",")]
            table[name] = [s for s in synonyms if s]
    return table


@lru_cache(maxsize=1)
def _coco_table() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((name, tuple(synonyms)) for name, synonyms in read_synonym_table().items())


def coco_vocabulary(extra_names: list[str] | tuple[str, ...] = (), attribute_words: Iterable[str] = ()
                    ) -> ObjectVocabulary:
    """The COCO synonym table, CHAIR's special two-word rules, and `extra_names` (e.g. the world's object names)
    as classes of their own unless the table already covers them. `attribute_words` (annotated attributes such
    as the colour "orange") are removed as single-word objects: in annotated data they describe objects."""
    vocabulary = ObjectVocabulary()
    for name, synonyms in _coco_table():
        vocabulary.add(name, synonyms)
    for animal in ANIMALS:
        vocabulary.add(animal, [f"baby {animal}", f"adult {animal}"])
    vocabulary.add("airplane", ["passenger jet"])
    vocabulary.add("train", ["passenger train"])
    vocabulary.add("tie", ["bow tie"])
    vocabulary.add("toilet", ["toilet seat"])
    vocabulary.add(NOT_OBJECTS, ["home plate", "train track", "baby animal", "adult animal", "baby cub"])
    for word in attribute_words:
        key = singular(word.lower())
        if vocabulary.synonyms.get(key) and key not in {singular(n.lower()) for n in extra_names}:
            del vocabulary.synonyms[key]
    for name in extra_names:
        if canonical_objects(vocabulary, name) == []:
            vocabulary.add(name, [])
    return vocabulary


@dataclass
class CaptionMention:
    words: str  # the matched (singularised) words, e.g. "baby elephant"
    object: str  # the canonical class, e.g. "elephant"
    hallucinated: bool


def find_objects(vocabulary: ObjectVocabulary, text: str) -> list[tuple[str, str]]:
    """(matched words, canonical object) for every object mention in `text`, with CHAIR's special rules."""
    mentions = [(m.words, m.name) for m in vocabulary.find(text) if m.name != NOT_OBJECTS]
    if any(name == "toilet" for _, name in mentions):
        mentions = [(w, name) for w, name in mentions if w != "seat"]  # a toilet seat is not a chair
    return mentions


def canonical_objects(vocabulary: ObjectVocabulary, name: str) -> list[str]:
    """The classes an annotation name stands for: the whole name when the vocabulary knows it."""
    return sorted({obj for _, obj in find_objects(vocabulary, name)})


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
    skipped: int  # captions not scored (empty, unknown image)
    details: list[CaptionDetail] = field(default_factory=list)

    def metrics(self) -> dict:
        data = asdict(self)
        data.pop("details")
        return data


def score_captions(
    captions: list[tuple[str, str]],
    ground_truth: dict[str, set[str]],
    vocabulary: ObjectVocabulary,
    where: list[str] | None = None,
) -> ChairResult:
    """Score (image_id, caption) pairs against ground-truth object classes per image."""
    details: list[CaptionDetail] = []
    skipped = without_objects = 0
    for index, (image_id, caption) in enumerate(captions):
        name = where[index] if where else f"caption {index + 1}"
        if image_id not in ground_truth:
            log.warning("%s: image %s has no ground truth; skipped", name, image_id)
            skipped += 1
            continue
        if not caption.strip():
            log.warning("%s: empty caption for image %s; skipped", name, image_id)
            skipped += 1
            continue
        truth = ground_truth[image_id]
        found = find_objects(vocabulary, caption)
        if not found:
            # Kept in the metrics (it hallucinates nothing), as the original CHAIR does; reported all the same.
            log.warning("%s: caption for image %s names no object", name, image_id)
            without_objects += 1
        mentions = [CaptionMention(w, obj, obj not in truth) for w, obj in found]
        covered = sorted({m.object for m in mentions if not m.hallucinated})
        details.append(CaptionDetail(image_id, caption, mentions, sorted(truth), covered))
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
        skipped=skipped,
        details=details,
    )


# --- files --------------------------------------------------------------------------------------------------


def load_ground_truth(
    annotations: str | Path, reference_captions: str | Path | None = None
) -> tuple[dict[str, set[str]], ObjectVocabulary]:
    """Ground-truth classes per image and the vocabulary to match captions with.

    `annotations`: COCO instances JSON or an `images.jsonl` of `ImageRecord`s (objects + reference captions,
    their names added to the vocabulary). `reference_captions`: COCO captions JSON (`annotations` with
    `image_id` and `caption`), whose objects join the ground truth."""
    annotations = Path(annotations)
    names_per_image: dict[str, list[str]] = {}
    captions_per_image: dict[str, list[str]] = {}
    attributes: set[str] = set()
    if annotations.suffix == ".jsonl":
        for record in read_jsonl(annotations, ImageRecord):
            names_per_image[record.image_id] = [o.name for o in record.objects]
            captions_per_image[record.image_id] = list(record.captions)
            attributes |= {a for o in record.objects for a in o.attributes}
        extra = sorted({name for names in names_per_image.values() for name in names})
    else:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and "categories" in data and "annotations" in data):
            raise RecordError(f"{annotations}: not COCO instances JSON nor an images.jsonl of ImageRecords")
        categories = {c["id"]: c["name"] for c in data["categories"]}
        for image in data.get("images", []):
            names_per_image.setdefault(str(image["id"]), [])
        for annotation in data["annotations"]:
            names_per_image.setdefault(str(annotation["image_id"]), []).append(categories[annotation["category_id"]])
            attributes |= set(annotation.get("attributes", []))  # hadpo's world export keeps them
        # Categories outside the 80 COCO classes (a custom dataset in COCO format) are objects of their own.
        extra = sorted(set(categories.values()))
    vocabulary = coco_vocabulary(extra, attributes)
    if reference_captions is not None:
        data = json.loads(Path(reference_captions).read_text(encoding="utf-8"))
        for entry in data["annotations"] if isinstance(data, dict) else data:
            captions_per_image.setdefault(str(entry["image_id"]), []).append(entry["caption"])
    truth: dict[str, set[str]] = {}
    for image_id in set(names_per_image) | set(captions_per_image):
        objects = {obj for name in names_per_image.get(image_id, []) for obj in canonical_objects(vocabulary, name)}
        for caption in captions_per_image.get(image_id, []):
            objects |= {obj for _, obj in find_objects(vocabulary, caption)}
        truth[image_id] = objects
    if annotations.suffix != ".jsonl":
        # Captions may name a COCO image by its file name, its stem, or hadpo's own id instead of the number.
        for image in data.get("images", []):
            aliases = [image.get("file_name"), Path(image.get("file_name", "")).stem, image.get("hadpo_image_id")]
            for alias in filter(None, aliases):
                truth.setdefault(str(alias), truth.get(str(image["id"]), set()))
    return truth, vocabulary


def read_captions(path: str | Path) -> tuple[list[tuple[str, str]], list[str], int]:
    """(image_id, caption) pairs and where each came from. JSON lines (hadpo `Answer`/`Description` records or
    `{"image_id", "caption"|"text"}`), or a JSON list in the COCO results format. Bad entries are logged and
    counted; returns (pairs, locations, skipped)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    entries: list[tuple[str, object]] = []
    if path.suffix == ".json":
        data = json.loads(text)
        entries = [(f"{path}[{i}]", entry) for i, entry in enumerate(data)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append((f"{path}:{number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    entries.append((f"{path}:{number}", f"not valid JSON ({error.msg})"))
    pairs, locations, skipped = [], [], 0
    for where, entry in entries:
        caption = entry.get("caption", entry.get("text")) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or "image_id" not in entry or not isinstance(caption, str):
            reason = entry if isinstance(entry, str) else "needs 'image_id' and 'caption' (or 'text')"
            log.warning("%s: %s; skipped", where, reason)
            skipped += 1
            continue
        pairs.append((str(entry["image_id"]), caption))
        locations.append(where)
    return pairs, locations, skipped


def evaluate_chair(captions: str | Path, annotations: str | Path, reference_captions: str | Path | None = None
                   ) -> ChairResult:
    truth, vocabulary = load_ground_truth(annotations, reference_captions)
    pairs, locations, unreadable = read_captions(captions)
    result = score_captions(pairs, truth, vocabulary, locations)
    result.skipped += unreadable
    return result


def write_details(path: str | Path, result: ChairResult) -> None:
    """The per-caption detail as JSON lines: which words matched which object, and which were hallucinated."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for detail in result.details:
            row = asdict(detail) | {"hallucinated": detail.hallucinated}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
