"""Typed records that flow between hadpo's stages, and strict JSONL reading/writing: the contract between stages.

Every record a stage writes to disk for another stage (or a later run of itself) to read is declared here, and
nowhere else: sources -> pairs (ImageRecord) -> train (PreferencePair, SFTExample) -> evaluate (PopeQuestion,
Answer, Description, Judgement). Each is read and written as JSON lines, so that every intermediate result can
be opened and read. A bad line raises `RecordError` naming the file, the line number and the field, and never
half-loads a file silently.

Boxes are `[x, y, w, h]` in pixels of the image (Visual Genome / COCO convention).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hadpo.errors import one_line

log = logging.getLogger(__name__)


class RecordError(ValueError):
    """A record on disk is malformed; the message names file, line and field."""


class Record(BaseModel):
    # Unknown keys are errors: a typo in a field name must not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=False)


# --- images and their annotations -------------------------------------------------------------------------


class ObjectAnnotation(Record):
    """One annotated object instance (a Visual Genome object, a COCO instance, a world object)."""

    name: str = Field(min_length=1)
    attributes: list[str] = Field(default_factory=list)  # e.g. ["red", "small"]
    box: list[float] = Field(min_length=4, max_length=4)  # [x, y, w, h] in pixels
    position: str | None = None  # coarse location phrase when known, e.g. "top left"


class Region(Record):
    """A Visual-Genome-style region description: a phrase about a box."""

    phrase: str = Field(min_length=1)
    box: list[float] = Field(min_length=4, max_length=4)


class ImageRecord(Record):
    """An image plus everything known about it. `path` is relative to the JSONL file that holds the record,
    or absolute."""

    image_id: str = Field(min_length=1)
    path: str = Field(min_length=1)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    objects: list[ObjectAnnotation] = Field(default_factory=list)
    regions: list[Region] = Field(default_factory=list)
    captions: list[str] = Field(default_factory=list)  # reference captions (CHAIR ground truth, SFT data)
    source: str = "unknown"  # "world", "coco", "visual_genome", "folder"
    split: str | None = None
    # True when every object in the image is annotated (the world): absence of an annotation then proves
    # absence of the object, which lets an offline judge call a mention a hallucination.
    complete: bool = False


# --- model outputs and judgements -------------------------------------------------------------------------


class Description(Record):
    """One text a model produced for an image and a prompt."""

    description_id: str = Field(min_length=1)
    image_id: str = Field(min_length=1)
    prompt: str
    text: str
    model: str = ""
    generation: dict = Field(default_factory=dict)  # decoding settings that produced `text`


SentenceLabel = Literal["hallucination", "correct", "cannot_judge"]


class Judgement(Record):
    """A judge's verdict on one description: a label per sentence and a corrected description."""

    description_id: str = Field(min_length=1)
    image_id: str = Field(min_length=1)
    judge: str  # e.g. "annotations" or "llm:gpt-4o@v1"
    sentences: list[str]
    labels: list[SentenceLabel]
    corrected: str = ""  # hallucination-free rewrite; "" when the judge wrote none
    hallucinated_objects: list[str] = Field(default_factory=list)  # absent objects the text claimed
    reasons: list[str] = Field(default_factory=list)  # one short reason per sentence ("" if none)
    failed: str | None = None  # why the judgement is unusable (unparseable LLM answer, ...)

    @property
    def has_hallucination(self) -> bool:
        return "hallucination" in self.labels


class PreferencePair(Record):
    """One preference pair, in the columns TRL and `datasets` read (`images`, `prompt`, `chosen`, `rejected`)
    plus provenance."""

    images: list[str] = Field(min_length=1)
    prompt: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    kind: Literal["desc", "qa"]
    image_id: str = Field(min_length=1)
    pair_id: str = Field(min_length=1)
    source_description_id: str | None = None
    judge: str = ""
    labels: list[SentenceLabel] = Field(default_factory=list)
    rewrite_index: int = 0  # 0 = the original texts; 1..k = style-consistent rewrites of the same pair
    # What the judge marked, as character [start, end) spans: the corrected parts of `chosen` and the hallucinated
    # parts of `rejected` (token_weighting: labels weighs their tokens). QA pairs mark the whole answers.
    chosen_spans: list[tuple[int, int]] = Field(default_factory=list)
    rejected_spans: list[tuple[int, int]] = Field(default_factory=list)
    severity: float | None = Field(None, ge=0)  # of the rejected text (pair_weighting: severity); None: from labels
    rejected_images: list[str] | None = None  # the rejected answer's own images (ms-swift's image-contrast pairs)

    @model_validator(mode="after")
    def _spans_inside_texts(self) -> PreferencePair:
        for side in ("chosen", "rejected"):
            length = len(getattr(self, side))
            for start, end in getattr(self, f"{side}_spans"):
                if not 0 <= start < end <= length:
                    raise ValueError(f"{side}_spans: [{start}, {end}] is not inside the {length}-character {side} text")
        if self.rejected_images is not None and len(self.rejected_images) != len(self.images):
            raise ValueError(f"rejected_images: {len(self.rejected_images)} for {len(self.images)} images")
        return self


class Answer(Record):
    """One model answer to one question, as `hadpo.inference` writes it."""

    question_id: str = Field(min_length=1)
    image_id: str = ""
    prompt: str
    text: str  # the raw decoded answer ("yes"/"no" in logits mode)
    mode: Literal["generate", "logits"] = "generate"
    yes_prob: float | None = None  # logits mode: P(yes) over {yes, no}
    margin: float | None = None  # logits mode: log P(yes) - log P(no)
    model: str = ""
    generation: dict = Field(default_factory=dict)


class SFTExample(Record):
    """One auxiliary SFT example: images (none for a text-only example), a plain user prompt and the target
    response (training's SFT data)."""

    images: list[str] = Field(default_factory=list)
    prompt: str = Field(min_length=1)
    response: str = Field(min_length=1)


# --- the pairs stage's own files (rewrites.jsonl, events.jsonl) -------------------------------------------------


class RewriteItem(Record):
    index: int  # 0 = the original pair (corrected positive, own description); 1..k = rewrites
    chosen: str
    rejected: str
    rejected_labels: list[str] = []
    kept: bool = True
    reason: str = ""  # why the item was dropped


class RewriteSet(Record):
    """The k style-consistent rewrites of one judged description, each re-judged (one line of rewrites.jsonl)."""

    description_id: str
    image_id: str
    rewriter: str
    judge: str
    items: list[RewriteItem] = []


class Event(Record):
    """A record a stage skipped (bad input) or a candidate pair it dropped (one line of events.jsonl)."""

    stage: str  # sources | describe | judge | rewrite | qa | import
    record_id: str
    kind: str  # "skipped" (bad input) or "dropped" (a candidate pair failed a check)
    reason: str  # short, countable: "missing_image", "empty_description", "positive_gained_hallucination"
    message: str = ""


# --- evaluation questions -------------------------------------------------------------------------------------


class PopeQuestion(Record):
    """One line of a POPE question file: the official `question_id`, `image`, `text`, `label`, and hadpo's
    `object` and `split`, written only when set."""

    question_id: str
    image: str
    text: str
    label: Literal["yes", "no"]
    object: str = ""
    split: str = ""

    def to_json(self) -> dict:
        return self.model_dump(exclude_defaults=True)


# --- JSONL --------------------------------------------------------------------------------------------------

R = TypeVar("R", bound=BaseModel)


def describe_error(error: ValidationError) -> str:
    """The first problem of a record, as "field 'x.y': what is wrong"."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<record>"
    return f"field '{field}': {first['msg']}"


def iter_jsonl(path: str | Path, model: type[R]) -> Iterator[R]:
    """Yield validated records from a JSON-lines file; blank lines are skipped.

    Raises RecordError("FILE:LINE: field 'x': ...") on the first bad line.
    """
    for where, data in json_objects(path):
        try:
            yield model.model_validate(data)
        except ValidationError as error:
            raise RecordError(f"{where}: {describe_error(error)}") from None


def json_objects(path: str | Path) -> Iterator[tuple[str, dict]]:
    """("FILE:LINE", object) for every non-blank line; a line that is not a JSON object is a RecordError."""
    path = Path(path)
    line_number = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as error:
                    raise RecordError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
                if not isinstance(data, dict):
                    raise RecordError(f"{path}:{line_number}: expected a JSON object, got {type(data).__name__}")
                yield f"{path}:{line_number}", data
    except UnicodeDecodeError:
        raise RecordError(f"{path}:{line_number + 1}: not UTF-8 text (is it a JSON-lines file?)") from None


def read_keyed(path: str | Path, model: type[R], key: str) -> dict[str, R]:
    """{record.key: record} of a JSON-lines file whose `key` field must be unique: a repeated id is an error
    naming both lines (two records under one id would be mixed up by every stage that looks them up)."""
    records: dict[str, R] = {}
    lines: dict[str, str] = {}
    for where, data in json_objects(path):
        try:
            record = model.model_validate(data)
        except ValidationError as error:
            raise RecordError(f"{where}: {describe_error(error)}") from None
        value = str(getattr(record, key))
        if value in records:
            first = lines[value].rpartition(":")[2]
            raise RecordError(f"{where}: field '{key}': '{value}' repeats line {first}; ids must be unique")
        records[value], lines[value] = record, where
    return records


def read_jsonl(path: str | Path, model: type[R]) -> list[R]:
    return list(iter_jsonl(path, model))


def read_json(path: str | Path):
    """The data of a JSON file; invalid JSON or a file that is not text is a RecordError naming FILE:LINE."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})") from None
    except UnicodeDecodeError:
        raise RecordError(f"{path}: not UTF-8 text (is it a JSON file?)") from None


@contextmanager
def file_format(path: str | Path, what: str):
    """Reading `path` as `what` (e.g. "COCO instances JSON"): a missing key or a value of the wrong type inside
    becomes one RecordError naming the file and the format, not a KeyError traceback."""
    try:
        yield
    except KeyError as error:
        raise RecordError(f"{path}: not {what}: missing key {error}") from None
    except (TypeError, AttributeError, IndexError) as error:
        raise RecordError(f"{path}: not {what}: {error}") from None
    except ValidationError as error:
        raise RecordError(f"{path}: not {what}: {describe_error(error)}") from None


def drop_torn_tail(path: str | Path) -> bool:
    """Remove a last line without its line break (a run killed while appending) from an append-only JSONL file, so
    a resumed run redoes that record instead of stopping on it; returns whether one was dropped (logged)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
    data = path.read_bytes()
    with path.open("r+b") as handle:  # cut in place: a kill during the repair loses nothing more
        handle.truncate(data.rfind(b"\n") + 1)
    log.warning("%s: last line is incomplete (interrupted run); dropped and redone", path)
    return True


def check_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before a run's work, that the folder it will write to can be a folder: a file in its place or in
    the place of one of its parents is an error naming it."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise RecordError(f"{what} {path}: {parent} exists and is not a folder")
    return path


def ensure_dir(path: str | Path, what: str = "output folder") -> Path:
    """`check_dir`, then create the folder."""
    path = check_dir(path, what)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict], append: bool = False) -> int:
    """Write records as JSON lines (append=True adds to an existing file); returns the count written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for record in records:
            data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def resolve_image_path(record: ImageRecord, records_file: str | Path | None) -> Path:
    """The image file of `record`: its path, taken relative to the JSONL file that listed it."""
    path = Path(record.path)
    if path.is_absolute() or records_file is None:
        return path
    return Path(records_file).parent / path


def image_problem(path: str | Path) -> str:
    """What stops `path` from being read as an image ("" when nothing does): missing, not a file, or truncated or
    corrupt (the whole file is decoded, so a bad image fails when its dataset is loaded, not mid-run)."""
    from PIL import Image  # (imported here: most readers of records never open an image)

    path = Path(path)
    if not path.is_file():
        return "image not found" if not path.exists() else "not an image file (a folder)"
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # PIL raises many types for corrupt data
        return f"unreadable image ({type(error).__name__}: {one_line(error)[:80]})"
    return ""
