"""The object annotations POPE builds its questions from, read from any of the formats people have: COCO
instances JSON, Visual Genome `objects.json`, POPE's own input (JSON lines `{"image", "objects"}`, e.g. its
coco_ground_truth_segmentation.json), or an `images.jsonl` of hadpo `ImageRecord`s. Each image becomes its file
and its distinct object names in annotation order (the order POPE takes positives in).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hadpo.files import file_format
from hadpo.records import ImageRecord, RecordError, read_jsonl, resolve_image_path


@dataclass
class AnnotatedImage:
    """An image file and its distinct object names in annotation order (the order POPE takes positives in)."""

    image_id: str
    image: str
    objects: list[str] = field(default_factory=list)


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        name = " ".join(name.strip().lower().split())
        if name:
            seen.setdefault(name, None)
    return list(seen)


def load_annotations(path: str | Path, image_root: str | Path | None = None) -> list[AnnotatedImage]:
    """Object lists per image from COCO instances JSON, Visual Genome `objects.json`, POPE's own input (JSON lines
    `{"image", "objects"}`, e.g. its coco_ground_truth_segmentation.json), or an `images.jsonl` of `ImageRecord`s.
    For ImageRecords, `image` is the resolved path relative to `image_root` when given."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl" and not _is_pope_input(text):
        images = []
        for record in read_jsonl(path, ImageRecord):
            image_path = resolve_image_path(record, path)
            if image_root is not None:
                image_path = Path(os.path.relpath(image_path.resolve(), Path(image_root).resolve()))
            images.append(AnnotatedImage(record.image_id, str(image_path), _unique(o.name for o in record.objects)))
        return images
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSON lines: POPE's input
        return _pope_input(path, text)
    if isinstance(data, dict) and "annotations" in data and "categories" in data:
        with file_format(path, "COCO instances JSON (images, annotations, categories)"):
            return _from_coco(path, data)
    if isinstance(data, list) and (not data or isinstance(data[0], dict) and "objects" in data[0]):
        with file_format(path, "Visual Genome objects.json (a list of {image_id, objects})"):
            return _from_visual_genome(data)
    if _is_pope_input(text):  # a single line of POPE's input
        return _pope_input(path, text)
    raise RecordError(f"{path}: not COCO instances JSON, Visual Genome objects.json, POPE's input or an images.jsonl")


def _is_pope_input(text: str) -> bool:
    try:
        row = json.loads(next((line for line in text.splitlines() if line.strip()), "null"))
    except json.JSONDecodeError:
        return False
    return (
        isinstance(row, dict)
        and "image" in row
        and isinstance(row.get("objects"), list)
        and all(isinstance(name, str) for name in row["objects"])
    )


def _pope_input(path: Path, text: str) -> list[AnnotatedImage]:
    images = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
                images.append(
                    AnnotatedImage(str(row.get("image_id", row["image"])), row["image"], _unique(row["objects"]))
                )
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise RecordError(f'{path}:{number}: expected POPE\'s {{"image", "objects"}} ({error})') from error
    return images


def _from_coco(path: Path, data: dict) -> list[AnnotatedImage]:
    categories = {c["id"]: c["name"] for c in data["categories"]}
    files = {image["id"]: image.get("file_name", f"{image['id']}.jpg") for image in data.get("images", [])}
    names: dict[int, list[str]] = {}
    for index, annotation in enumerate(data["annotations"]):
        if annotation["category_id"] not in categories:
            raise RecordError(
                f"{path}: annotations[{index}]: field 'category_id': {annotation['category_id']} is not in categories"
            )
        names.setdefault(annotation["image_id"], []).append(categories[annotation["category_id"]])
    return [AnnotatedImage(str(i), files.get(i, f"{i}.jpg"), _unique(n)) for i, n in names.items()]


def _from_visual_genome(data: list) -> list[AnnotatedImage]:
    images = []
    for entry in data:
        image_id = entry.get("image_id", entry.get("id"))
        names = [(o.get("names") or [o.get("name", "")])[0] for o in entry["objects"]]
        images.append(AnnotatedImage(str(image_id), f"{image_id}.jpg", _unique(names)))
    return images
