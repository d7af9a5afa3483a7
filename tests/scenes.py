"""Small annotated image sets for tests: 48x48 scenes of coloured boxes, each box an annotated object."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from hadpo.records import ImageRecord, ObjectAnnotation, Region, write_jsonl

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 200, 60)}
Box = tuple[int, int, int, int]


def write_scenes(folder: Path, scenes: list[list[tuple[str, str, Box]]], descriptions: bool = True) -> Path:
    """One PNG per scene of (name, colour, (x0, y0, x1, y1)) boxes under folder/images, completely annotated, and
    folder/images.jsonl; `descriptions`: each record also holds a region per object and a caption naming them."""
    (folder / "images").mkdir(parents=True)
    records = []
    for index, objects in enumerate(scenes):
        image = Image.new("RGB", (48, 48), (30, 30, 30))
        draw = ImageDraw.Draw(image)
        for _, colour, box in objects:
            draw.rectangle(box, fill=COLOURS[colour])
        image.save(folder / "images" / f"{index}.png")
        annotations = [
            ObjectAnnotation(name=name, attributes=[colour], box=[x0, y0, x1 - x0, y1 - y0])
            for name, colour, (x0, y0, x1, y1) in objects
        ]
        extra = {}
        if descriptions:
            extra = {
                "regions": [Region(phrase=f"a {a.attributes[0]} {a.name}", box=a.box) for a in annotations],
                "captions": [" ".join(f"A {a.attributes[0]} {a.name}." for a in annotations)],
            }
        records.append(
            ImageRecord(
                image_id=str(index),
                path=f"images/{index}.png",
                width=48,
                height=48,
                objects=annotations,
                source="folder",
                complete=True,
                **extra,
            )
        )
    write_jsonl(folder / "images.jsonl", records)
    return folder / "images.jsonl"
