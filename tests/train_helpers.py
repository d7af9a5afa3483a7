"""Test data for the training wing: pairs (desc with rewrites + QA) over solid-colour images."""

from __future__ import annotations

from PIL import Image

from hadpo.records import PreferencePair, write_jsonl

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 200, 60), "yellow": (200, 200, 30)}
OBJECTS = ["square", "circle", "knife", "cup"]


def make_pairs(folder, n_images: int = 4, rewrites: int = 2) -> list[PreferencePair]:
    """Per image: one description pair with `rewrites` + 1 variants and one QA pair."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    pairs = []
    colours = list(COLOURS)
    for i in range(n_images):
        colour, thing = colours[i % 4], OBJECTS[i % 4]
        Image.new("RGB", (48, 48), COLOURS[colour]).save(folder / "images" / f"{i}.png")
        image = [f"images/{i}.png"]
        for r in range(rewrites + 1):
            chosen = f"There is a {colour} {thing}." if r == 0 else f"A {colour} {thing} is in the picture {r}."
            rejected = f"There is a dog and a {thing}." if r == 0 else f"A dog and a {thing} are here {r}."
            pairs.append(
                PreferencePair(
                    images=image,
                    prompt="Describe this image in detail.",
                    chosen=chosen,
                    rejected=rejected,
                    kind="desc",
                    image_id=str(i),
                    pair_id=f"d{i}-{r}",
                    source_description_id=f"desc{i}",
                    rewrite_index=r,
                )
            )
        pairs.append(
            PreferencePair(
                images=image,
                prompt="Is there a dog in the image?",
                chosen="No, there is no dog.",
                rejected="Yes, there is a dog.",
                kind="qa",
                image_id=str(i),
                pair_id=f"q{i}",
            )
        )
    write_jsonl(folder / "pairs.jsonl", pairs)
    return pairs
