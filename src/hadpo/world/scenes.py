"""Procedural scenes: sample, render with Pillow, annotate (Visual-Genome-like), export to COCO, write splits.

A scene places min_objects to max_objects objects (three by default) in distinct cells of a grid whose cells
are the vision patches, so one patch sees one object. Objects of a family tend to appear together
(`cooccurrence`), which gives POPE's adversarial split its meaning. Every image is deterministic in (seed,
split, index); splits never share a scene layout.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from hadpo.progress import progress_bar
from hadpo.records import ImageRecord, ObjectAnnotation, Region, write_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.drawing import BACKGROUND, COLOURS, SHAPES

SPLITS = ("eval", "pairs", "pretrain")  # generated in this order; later splits skip layouts already used
OBJECT_PIXELS = {"small": 0.6, "large": 0.9}  # drawing size as a fraction of the cell


def position_phrase(row: int, col: int, grid: int) -> str:
    """'top left', 'top middle', ..., 'center' for a cell of a grid (thirds of the image)."""
    vertical = ("top", "middle", "bottom")[min(2, row * 3 // grid)]
    horizontal = ("left", "middle", "right")[min(2, col * 3 // grid)]
    if vertical == horizontal == "middle":
        return "center"
    return f"{vertical} {horizontal}"


@dataclass(frozen=True)
class SceneObject:
    name: str
    colour: str
    size: str
    row: int
    col: int


def sample_scene(config: WorldConfig, rng: random.Random) -> list[SceneObject]:
    """Objects in reading order. The first category is uniform; each next one is, with probability
    `cooccurrence`, an absent partner of a present object, else uniform (repeats allowed, for counting)."""
    grid = config.grid
    count = rng.randint(config.min_objects, config.max_objects)
    cells = rng.sample([(r, c) for r in range(grid) for c in range(grid)], count)
    names: list[str] = []
    for _ in range(count):
        absent_partners = [p for n in names for p in config.partners(n) if p not in names]
        if absent_partners and rng.random() < config.cooccurrence:
            names.append(rng.choice(absent_partners))
        else:
            names.append(rng.choice(config.categories))
    objects = [
        SceneObject(name, rng.choice(config.colours), rng.choice(config.sizes), row, col)
        for name, (row, col) in zip(names, cells)
    ]
    return sorted(objects, key=lambda o: (o.row, o.col))


def render_scene(objects: list[SceneObject], config: WorldConfig, rng: random.Random):
    """Draw the scene; returns the image and each object's box [x, y, w, h]."""
    cell = config.patch_size
    image = Image.new("RGB", (config.image_size, config.image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    boxes = []
    for obj in objects:
        side = max(4, round(cell * OBJECT_PIXELS[obj.size]))
        slack = cell - side - 1
        x0 = obj.col * cell + rng.randint(0, max(0, slack))
        y0 = obj.row * cell + rng.randint(0, max(0, slack))
        SHAPES[obj.name](draw, (x0, y0, x0 + side, y0 + side), COLOURS[obj.colour])
        boxes.append([x0, y0, side + 1, side + 1])
    return image, boxes


def annotate(image_id: str, path: str, split: str, objects, boxes, config: WorldConfig) -> ImageRecord:
    annotations, regions = [], []
    for obj, box in zip(objects, boxes):
        position = position_phrase(obj.row, obj.col, config.grid)
        annotations.append(
            ObjectAnnotation(name=obj.name, attributes=[obj.colour, obj.size], box=box, position=position)
        )
        regions.append(Region(phrase=f"a {obj.size} {obj.colour} {obj.name} in the {position}", box=box))
    return ImageRecord(
        image_id=image_id,
        path=path,
        width=config.image_size,
        height=config.image_size,
        objects=annotations,
        regions=regions,
        captions=[" ".join(f"There is {r.phrase}." for r in regions)],
        source="world",
        split=split,
        complete=True,  # every drawn object is annotated: absence of an annotation means absence
    )


def scene_signature(objects: list[SceneObject]) -> tuple:
    return tuple((o.name, o.colour, o.size, o.row, o.col) for o in objects)


def generate_split(config: WorldConfig, split: str, count: int, used: set, out_dir: Path) -> list[ImageRecord]:
    records = []
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    attempt = 0
    with progress_bar(total=count, desc=f"world {split}", leave=False) as progress:
        while len(records) < count:
            rng = random.Random(f"{config.seed}:{split}:{attempt}")
            attempt += 1
            objects = sample_scene(config, rng)
            signature = scene_signature(objects)
            if signature in used:
                continue
            used.add(signature)
            image_id = f"{split}-{len(records):05d}"
            image, boxes = render_scene(objects, config, rng)
            relative = f"images/{split}/{image_id}.png"
            image.save(out_dir / relative)
            records.append(annotate(image_id, relative, split, objects, boxes, config))
            progress.update()
    return records


def coco_instances(records: list[ImageRecord], config: WorldConfig) -> dict:
    """COCO instances format, so code that reads COCO reads the world too."""
    category_ids = {name: i + 1 for i, name in enumerate(config.categories)}
    images, annotations = [], []
    for image_index, record in enumerate(records, start=1):
        images.append(
            {
                "id": image_index,
                "file_name": record.path,
                "width": record.width,
                "height": record.height,
                "hadpo_image_id": record.image_id,
            }
        )
        for obj in record.objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_index,
                    "category_id": category_ids[obj.name],
                    "bbox": obj.box,
                    "area": obj.box[2] * obj.box[3],
                    "iscrowd": 0,
                    "attributes": obj.attributes,
                }
            )
    categories = [
        {"id": i, "name": name, "supercategory": "+".join(config.family_of(name).members)}
        for name, i in category_ids.items()
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


@dataclass
class WorldFiles:
    root: Path

    def images(self, split: str) -> Path:
        """The JSONL of `ImageRecord`s of a split (image paths relative to `root`)."""
        return self.root / f"{split}.jsonl"

    def coco(self, split: str) -> Path:
        return self.root / f"coco_{split}.json"


def build_world(config: WorldConfig, runs_dir: str | Path = "runs") -> WorldFiles:
    """Write the world under runs/world/<config digest>/ (reused when already complete)."""
    root = Path(runs_dir) / "world" / config.digest()
    files = WorldFiles(root)
    manifest = root / "manifest.json"
    if manifest.exists():
        return files
    root.mkdir(parents=True, exist_ok=True)
    used: set = set()
    counts = {}
    for split in SPLITS:
        records = generate_split(config, split, getattr(config.splits, split), used, root)
        write_jsonl(files.images(split), records)
        files.coco(split).write_text(json.dumps(coco_instances(records, config)))
        counts[split] = len(records)
    (root / "world.json").write_text(json.dumps(config.model_dump(), indent=2))
    manifest.write_text(json.dumps({"digest": config.digest(), "counts": counts, "knobs": config.knobs()}, indent=2))
    return files
