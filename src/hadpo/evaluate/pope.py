"""POPE (Polling-based Object Probing Evaluation, Li et al. 2023, arXiv 2305.10355): build the yes/no object
questions from any object annotations, parse answers with the official rule, and score them.

Two protocols (docs/evaluation.md): `reference`, the default, is RUCAIBox/POPE's code (utils.py builds,
evaluate.py scores); `hadpo` is hadpo's variant of each step.
- keep images with >= 3 distinct objects, sample `num_images` of them (500 in the official set); reference: in
  the input's order, one random stream for the sample and the three splits (random, popular, adversarial), as
  main.py runs them; hadpo: sorted by image id, a stream per split (building one split never shifts another);
- per image, for i in 1..3: the i-th object of the image's list is a positive ("yes"), immediately followed by
  one negative ("no") that is neither an object of the image nor one already asked about for that image:
  random = uniform over all objects of the sampled set; popular = the most frequent objects over the sampled
  images, in order; adversarial = the objects co-occurring most with the i-th positive, in order; a ranked list
  that runs out falls back to random. Frequencies and co-occurrences count the sampled images only; ties rank in
  order of first appearance (reference) or alphabetically (hadpo);
- template "Is there a/an {object} in the image?" (as the released files write it), integer `question_id`s;
- official parsing (`hadpo.inference.parse_answer`): text before the first '.', commas removed, split on spaces,
  "no" if the words contain "No", "no" or "not", else "yes"; a strict mode accepts only a leading yes/no word;
- an empty answer is "yes" by that rule (reference, counted and reported) or left out (hadpo);
- metrics with "yes" as the positive class; yes-ratio counts the *predictions* (lmms-eval counts the labels).

The annotation formats are read in `pope_annotations`, question and answer files in `pope_files`.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from hadpo.evaluate.pope_annotations import AnnotatedImage, load_annotations
from hadpo.evaluate.pope_files import read_answers, read_questions, write_questions
from hadpo.inference import parse_answer
from hadpo.records import PopeQuestion, RecordError
from hadpo.text import article

log = logging.getLogger(__name__)

SPLITS = ("random", "popular", "adversarial")
PROTOCOLS = ("reference", "hadpo")
MIN_OBJECTS = 3
QUESTION_TEMPLATE = "Is there {article} {object} in the image?"
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "yes_ratio")


# --- questions ----------------------------------------------------------------------------------------------


def question_text(name: str) -> str:
    return QUESTION_TEMPLATE.format(article=article(name), object=name)


# --- sampling -----------------------------------------------------------------------------------------------


def _ranked(counts: Counter) -> list[str]:
    # hadpo: ties are broken alphabetically, so the ranking does not depend on the order the images were sampled in.
    return sorted(counts, key=lambda name: (-counts[name], name))


def _ranked_as_found(counts: dict[str, int]) -> list[str]:
    # reference: a stable sort by count, so ties keep their order of first appearance in the sampled images.
    return sorted(counts, key=lambda name: -counts[name])


def build_pope(
    images: list[AnnotatedImage],
    num_images: int = 500,
    per_image: int = 3,
    seed: int = 0,
    splits: Iterable[str] = SPLITS,
    protocol: str = "reference",
) -> dict[str, list[PopeQuestion]]:
    """The POPE splits over the same sampled images: {split: questions}. Deterministic by `seed`. With the reference
    protocol and the same input order, the files are those RUCAIBox/POPE's main.py writes after `random.seed(seed)`."""
    splits = list(splits)
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ValueError(f"unknown POPE split {unknown[0]!r}; expected one of {', '.join(SPLITS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown POPE protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    for name, value in (("num_images", num_images), ("per_image", per_image)):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: must be at least 1, got {value}")
    if protocol == "reference":
        eligible = [im for im in images if len(im.objects) >= per_image]
    else:
        eligible = sorted(
            (im for im in images if len(im.objects) >= max(MIN_OBJECTS, per_image)), key=lambda im: im.image_id
        )
    if not eligible:
        least = per_image if protocol == "reference" else max(MIN_OBJECTS, per_image)
        raise RecordError(
            f"no image of the {len(images)} annotated has {least} or more distinct objects: no question can be built"
        )
    rng = random.Random(seed)
    sampled = rng.sample(eligible, min(num_images, len(eligible)))
    frequency: Counter = Counter()
    cooccurrence: dict[str, Counter] = {}
    for image in sampled:
        for name in image.objects:
            frequency[name] += 1
            cooccurrence.setdefault(name, Counter()).update(other for other in image.objects if other != name)
    rank = _ranked_as_found if protocol == "reference" else _ranked
    popular = rank(frequency)
    # The reference builds all three splits from one random stream, in this order, whichever are wanted.
    wanted = SPLITS if protocol == "reference" else splits
    built = {}
    for split in wanted:
        split_rng = rng if protocol == "reference" else random.Random(f"{seed}:{split}")
        ranked = (
            {positive: (popular if split == "popular" else rank(cooccurrence[positive])) for positive in frequency}
            if split != "random"
            else {}
        )
        built[split] = _split_questions(sampled, per_image, split, ranked, list(frequency), split_rng, protocol)
    return {split: built[split] for split in splits}


def _split_questions(
    sampled: list[AnnotatedImage],
    per_image: int,
    split: str,
    ranked: dict[str, list[str]],
    all_objects: list[str],
    rng: random.Random,
    protocol: str,
) -> list[PopeQuestion]:
    questions: list[PopeQuestion] = []
    for image in sampled:
        asked = set(image.objects)  # an image's own objects are never negatives
        for positive in image.objects[:per_image]:
            questions.append(_question(len(questions) + 1, image, positive, "yes", split))
            negative = next((name for name in ranked.get(positive, []) if name not in asked), None)
            if negative is None:
                candidates = [name for name in all_objects if name not in asked]
                if not candidates:
                    log.warning("image %s: no absent object left to ask about; negative skipped", image.image_id)
                    continue
                if protocol == "reference":
                    # The reference draws from all objects until one is new (same stream, same draws).
                    negative = rng.choice(all_objects)
                    while negative in asked:
                        negative = rng.choice(all_objects)
                else:
                    negative = rng.choice(candidates)
            asked.add(negative)
            questions.append(_question(len(questions) + 1, image, negative, "no", split))
    return questions


def _question(number: int, image: AnnotatedImage, name: str, label: str, split: str) -> PopeQuestion:
    return PopeQuestion(
        question_id=str(number), image=image.image, text=question_text(name), label=label, object=name, split=split
    )


# --- metrics ------------------------------------------------------------------------------------------------


def pope_metrics(labels: list[str], predictions: list[str]) -> dict:
    """Accuracy, precision, recall, F1 with "yes" positive, and yes_ratio = share of *predicted* yes.

    A strict-mode "other" is wrong either way: it is a missed positive (FN) on a yes label and counts in no cell
    on a no label (not a false yes, not a correct no)."""
    tp = sum(label == "yes" and pred == "yes" for label, pred in zip(labels, predictions))
    fp = sum(label == "no" and pred == "yes" for label, pred in zip(labels, predictions))
    tn = sum(label == "no" and pred == "no" for label, pred in zip(labels, predictions))
    fn = sum(label == "yes" and pred != "yes" for label, pred in zip(labels, predictions))
    total = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": sum(pred == "yes" for pred in predictions) / total if total else 0.0,
        "n": total,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "other": sum(pred not in ("yes", "no") for pred in predictions),
    }


def score_pope(
    questions_path: str | Path,
    answers_path: str | Path,
    strict: bool = False,
    protocol: str = "reference",
    missing: str = "error",
) -> dict:
    """Score one split: metrics plus `empty_answers`, `skipped_questions` and `skipped_answers` (bad or missing
    records). An empty answer is scored as the reference's evaluate.py scores it (its rule reads "" as "yes") in the
    reference protocol, and left out (a skipped answer) in the hadpo protocol; it is counted in both."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown POPE protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    questions, skipped_questions = read_questions(questions_path)
    answers, skipped_answers = read_answers(answers_path, questions, missing)
    empty = sum(answer is not None and not answer.strip() for answer in answers)
    if protocol == "hadpo":
        answers, skipped_answers = (
            [a if a is not None and a.strip() else None for a in answers],
            skipped_answers + empty,
        )
    kept = [(q.label, parse_answer(a, strict)) for q, a in zip(questions, answers) if a is not None]
    metrics = pope_metrics([label for label, _ in kept], [pred for _, pred in kept])
    metrics.update(
        empty_answers=empty,
        skipped_questions=skipped_questions,
        skipped_answers=skipped_answers,
        parsing="strict" if strict else "official",
        protocol=protocol,
    )
    return metrics


def mean_over_splits(per_split: dict[str, dict]) -> dict:
    """The unweighted mean of each metric over the splits (LLaVA-1.5 reports the mean F1 of the three)."""
    if not per_split:
        return {}
    return {name: sum(m[name] for m in per_split.values()) / len(per_split) for name in METRIC_NAMES}


def build_pope_files(
    annotations: str | Path,
    out_dir: str | Path,
    num_images: int = 500,
    per_image: int = 3,
    seed: int = 0,
    splits: Iterable[str] = SPLITS,
    prefix: str = "pope",
    protocol: str = "reference",
) -> dict[str, Path]:
    """Build the splits from an annotation file and write `out_dir/{prefix}_{split}.jsonl` plus a manifest with
    the settings and counts. Image paths of an images.jsonl are written relative to `out_dir`."""
    out_dir = Path(out_dir)
    images = load_annotations(annotations, image_root=out_dir)
    try:
        built = build_pope(
            images, num_images=num_images, per_image=per_image, seed=seed, splits=splits, protocol=protocol
        )
    except RecordError as error:
        raise RecordError(f"{annotations}: {error}") from None
    paths = {split: out_dir / f"{prefix}_{split}.jsonl" for split in built}
    counts = {split: write_questions(paths[split], questions) for split, questions in built.items()}
    manifest = {
        "annotations": str(annotations),
        "num_images": num_images,
        "per_image": per_image,
        "seed": seed,
        "eligible_images": sum(
            len(im.objects) >= (per_image if protocol == "reference" else max(MIN_OBJECTS, per_image)) for im in images
        ),
        "sampled_images": len({q.image for qs in built.values() for q in qs}),
        "questions": counts,
        "template": QUESTION_TEMPLATE,
        "protocol": protocol,
    }
    (out_dir / f"{prefix}_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return paths
