"""Pillow drawings of the world's object categories and its colour palette.

Each drawing fills a square box `(x0, y0, x1, y1)`; shapes are chosen to stay distinct at 10 pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import ImageDraw

BACKGROUND = (24, 24, 28)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 50),
    "purple": (150, 60, 205),
    "orange": (245, 140, 30),
    "white": (235, 235, 235),
    "pink": (245, 130, 190),
}

Box = tuple[int, int, int, int]


def _circle(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    draw.ellipse(box, fill=fill)


def _ring(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    width = max(2, (box[2] - box[0]) // 4)
    draw.ellipse(box, outline=fill, width=width)


def _rectangle(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    inset = (y1 - y0) // 4
    draw.rectangle((x0, y0 + inset, x1, y1 - inset), fill=fill)


def _triangle(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _diamond(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)


def _star(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy, outer = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    points = []
    for i in range(10):
        radius = outer if i % 2 == 0 else outer * 0.42
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    draw.polygon(points, fill=fill)


def _moon(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    shift = (x1 - x0) * 0.4
    draw.ellipse(box, fill=fill)
    # the crescent is cut out with the background colour
    draw.ellipse((x0 + shift, y0 - 1, x1 + shift, y1 - 1), fill=BACKGROUND)


def _heart(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    r = w / 4
    draw.ellipse((x0, y0, x0 + 2 * r + 1, y0 + 2 * r + 1), fill=fill)
    draw.ellipse((x1 - 2 * r - 1, y0, x1, y0 + 2 * r + 1), fill=fill)
    draw.polygon([(x0, y0 + r + 1), (x1, y0 + r + 1), ((x0 + x1) / 2, y1)], fill=fill)


def _cross(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    t = max(2, (x1 - x0) // 3) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    draw.rectangle((cx - t, y0, cx + t, y1), fill=fill)
    draw.rectangle((x0, cy - t, x1, cy + t), fill=fill)


def _arrow(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    cy, w = (y0 + y1) / 2, x1 - x0
    t = max(1, w // 6)
    head = x0 + w * 0.5
    draw.rectangle((x0, cy - t, head, cy + t), fill=fill)
    draw.polygon([(head, y0), (x1, cy), (head, y1)], fill=fill)


def _sun(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy, outer = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    core = outer * 0.45
    draw.ellipse((cx - core, cy - core, cx + core, cy + core), fill=fill)
    for i in range(8):  # eight rays with a gap to the core, so the sun never reads as a star or a circle
        angle = i * math.pi / 4
        inner = core + max(1.0, outer * 0.15)
        draw.line(
            (
                cx + inner * math.cos(angle),
                cy + inner * math.sin(angle),
                cx + outer * math.cos(angle),
                cy + outer * math.sin(angle),
            ),
            fill=fill,
            width=1,
        )


def _cloud(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    base_top = y0 + h * 0.45
    draw.ellipse((x0, base_top, x0 + w * 0.5, y1 - h * 0.15), fill=fill)
    draw.ellipse((x0 + w * 0.5, base_top, x1, y1 - h * 0.15), fill=fill)
    draw.ellipse((x0 + w * 0.2, y0 + h * 0.2, x0 + w * 0.75, y0 + h * 0.75), fill=fill)
    draw.rectangle((x0 + w * 0.25, base_top + h * 0.1, x1 - w * 0.25, y1 - h * 0.15), fill=fill)


def _club(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    r = w * 0.22
    cx = (x0 + x1) / 2
    for lx, ly in ((cx, y0 + r), (x0 + r, y0 + w * 0.5), (x1 - r, y0 + w * 0.5)):  # three leaves
        draw.ellipse((lx - r, ly - r, lx + r, ly + r), fill=fill)
    draw.polygon([(cx - 1, y0 + w * 0.45), (cx + 1, y0 + w * 0.45), (cx + w * 0.2, y1), (cx - w * 0.2, y1)], fill=fill)


def _spade(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    r = w / 4
    cx = (x0 + x1) / 2
    lobe_y = y0 + w * 0.62  # an upside-down heart on a stem
    draw.polygon([(cx, y0), (x1, lobe_y), (x0, lobe_y)], fill=fill)
    draw.ellipse((x0, lobe_y - r, x0 + 2 * r + 1, lobe_y + r), fill=fill)
    draw.ellipse((x1 - 2 * r - 1, lobe_y - r, x1, lobe_y + r), fill=fill)
    draw.polygon([(cx, lobe_y), (cx + w * 0.2, y1), (cx - w * 0.2, y1)], fill=fill)


def _bolt(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw.polygon(
        [
            (x0 + w * 0.55, y0),
            (x0 + w * 0.1, y0 + h * 0.58),
            (x0 + w * 0.48, y0 + h * 0.58),
            (x0 + w * 0.3, y1),
            (x1 - w * 0.1, y0 + h * 0.4),
            (x0 + w * 0.55, y0 + h * 0.4),
            (x1 - w * 0.15, y0),
        ],
        fill=fill,
    )


def _flag(draw: ImageDraw.ImageDraw, box: Box, fill) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    pole = max(1, w // 7)
    draw.rectangle((x0 + w * 0.1, y0, x0 + w * 0.1 + pole, y1), fill=fill)
    draw.rectangle((x0 + w * 0.1 + pole, y0, x1, y0 + h * 0.5), fill=fill)


SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, Box, tuple[int, int, int]], None]] = {
    "circle": _circle,
    "ring": _ring,
    "rectangle": _rectangle,
    "triangle": _triangle,
    "diamond": _diamond,
    "star": _star,
    "moon": _moon,
    "heart": _heart,
    "cross": _cross,
    "arrow": _arrow,
    "sun": _sun,
    "cloud": _cloud,
    "club": _club,
    "spade": _spade,
    "bolt": _bolt,
    "flag": _flag,
}
