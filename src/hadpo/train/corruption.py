"""The corrupted image of mDPO's conditional term (arXiv 2406.11839): the chosen answer must be likelier with the
real image than with this one, so that the model learns to look rather than to say less.

mDPO crops a random region keeping 1-20 % of the image (torchvision's RandomResizedCrop, scale (0.01, 0.2)) and
resizes it back; `black` and `noise` (uniform random pixels) remove the image altogether. The corruption is drawn
from a seed and the pair's id, so a pair always gets the same corrupted image: its reference log-prob can be
precomputed once, and a resumed run sees the same images.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from PIL import Image

ASPECT_RATIOS = (3 / 4, 4 / 3)  # RandomResizedCrop's default ratio range
KINDS = ("crop", "black", "noise")


@dataclass(frozen=True)
class ImageCorruption:
    kind: str = "crop"  # one of KINDS
    scale: tuple[float, float] = (0.01, 0.2)
    seed: int = 0

    def describe(self) -> str:
        """What the corruption is, for cache keys and logs."""
        scale = f" {self.scale[0]}-{self.scale[1]}" if self.kind == "crop" else ""
        return f"{self.kind}{scale} seed {self.seed}"

    def __call__(self, image: Image.Image, key: str) -> Image.Image:
        rng = random.Random(hashlib.sha256(f"hadpo-corrupt:{self.seed}:{key}".encode()).hexdigest())
        if self.kind == "black":
            return Image.new("RGB", image.size)
        if self.kind == "noise":
            return Image.frombytes("RGB", image.size, rng.randbytes(3 * image.width * image.height))
        if self.kind == "crop":
            return image.crop(crop_box(image.width, image.height, self.scale, rng)).resize(image.size)
        raise ValueError(f"unknown image corruption '{self.kind}'; expected one of {', '.join(KINDS)}")


def crop_box(width: int, height: int, scale: tuple[float, float], rng: random.Random) -> tuple[int, int, int, int]:
    """A box (left, top, right, bottom) of area share in `scale` and aspect ratio in 3/4..4/3 (log-uniform), as
    RandomResizedCrop draws it: 10 tries, then the largest box of an allowed ratio that fits, centred."""
    area = width * height
    log_low, log_high = math.log(ASPECT_RATIOS[0]), math.log(ASPECT_RATIOS[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(log_low, log_high))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    w = h = max(1, round(math.sqrt(area * scale[1])))
    w, h = min(w, width), min(h, height)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h
