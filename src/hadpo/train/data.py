"""Training data: preference pairs from the pairs stage, the auxiliary SFT set, and the per-epoch plan.

- Pairs are `PreferencePair` rows (hadpo.records). Rows sharing (source_description_id or image_id, kind) with
  distinct `rewrite_index` are the k style-consistent rewrites of one pair (HA-DPO sec. 3.2); they form a
  *group*, and each epoch samples one rewrite per group afresh (the release sampled them once at load time).
- The desc:QA mix is a pair of repeat factors per epoch: "2:1" shows every description group twice and every
  QA group once (the LLaVA-1.5 release; InstructBLIP used "1:2"); fractions pick a random share of the groups.
- The auxiliary SFT stream is a pure function of a batch counter (resume- and multi-process-safe).
Turning rows into model batches is `hadpo.train.collate`'s job.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from hadpo.files import image_problem
from hadpo.models.base import VLMFamily
from hadpo.records import ImageRecord, PreferencePair, RecordError, SFTExample, read_jsonl, resolve_image_path
from hadpo.train.weights import pair_severity

# --- loading and checking -----------------------------------------------------------------------------------


def _absolute(image: str, records_file: Path) -> str:
    path = Path(image)
    return str(path if path.is_absolute() else records_file.parent / path)


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read pairs, make image paths absolute and reject bad rows with one line naming the pair."""
    path = Path(path)
    pairs = read_jsonl(path, PreferencePair)
    if not pairs:
        raise RecordError(f"{path}: no preference pairs")
    seen: set[str] = set()
    problem_of = cache(image_problem)  # each image is decoded once
    for pair in pairs:
        where = f"{path}: pair '{pair.pair_id}'"
        if pair.pair_id in seen:
            raise RecordError(f"{where}: duplicate pair_id")
        seen.add(pair.pair_id)
        pair.images = [_absolute(image, path) for image in pair.images]
        if pair.rejected_images:
            pair.rejected_images = [_absolute(image, path) for image in pair.rejected_images]
        for image in pair.images + (pair.rejected_images or []):
            if problem := problem_of(image):
                raise RecordError(f"{where}: {problem}: {image}")
        for name in ("prompt", "chosen", "rejected"):
            if not getattr(pair, name).strip():
                raise RecordError(f"{where}: empty {name}")
        if pair.chosen.strip() == pair.rejected.strip():
            raise RecordError(f"{where}: chosen and rejected are identical")
    return pairs


def check_pair_options(pairs: Sequence[PreferencePair], token_weighting: str, pair_weighting: str) -> None:
    """The columns the run's options read are there: spans for `token_weighting: labels`, a severity for
    `pair_weighting: severity`."""
    for pair in pairs:
        if token_weighting == "labels" and not (pair.chosen_spans or pair.rejected_spans):
            raise RecordError(
                f"pair '{pair.pair_id}': no chosen_spans or rejected_spans; token_weighting=labels needs the spans "
                "the judge marked (`hadpo pairs build` writes them), or use token_weighting=diff"
            )
        if pair_weighting == "severity":
            try:
                pair_severity(pair)
            except ValueError as error:
                raise RecordError(str(error)) from None


def check_prompts(pairs: Sequence[PreferencePair], family: VLMFamily, processor, source: str = "pairs") -> None:
    """Every prompt templates to exactly one image placeholder per image (else the model cannot see them)."""
    for pair in pairs:
        try:
            family.prompt_text(processor, pair.prompt, len(pair.images))
        except ValueError as error:
            raise RecordError(f"{source}: pair '{pair.pair_id}': {error}") from None


def load_sft_examples(path: str | Path, caption_prompt: str) -> list[SFTExample]:
    """The auxiliary SFT set: JSONL of {images, prompt, response}, or of ImageRecords whose reference captions
    become responses to `caption_prompt` (the paper's CC-SBU-Align captions for MiniGPT-4)."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    if '"captions"' in first:
        examples = [
            SFTExample(images=[str(resolve_image_path(record, path))], prompt=caption_prompt, response=caption)
            for record in read_jsonl(path, ImageRecord)
            for caption in record.captions
            if caption.strip()
        ]
    else:
        examples = read_jsonl(path, SFTExample)
        for example in examples:
            example.images = [_absolute(image, path) for image in example.images]
    if not examples:
        raise RecordError(f"{path}: no SFT examples (no captions or responses)")
    problem_of = cache(image_problem)
    for number, example in enumerate(examples, start=1):
        for image in example.images:
            if problem := problem_of(image):
                raise RecordError(f"{path}: SFT example {number}: {problem}: {image}")
    return examples


# --- groups of rewrites and the per-epoch plan --------------------------------------------------------------


def group_rewrites(pairs: Sequence[PreferencePair]) -> list[list[PreferencePair]]:
    """Rows sharing (source_description_id or image_id, kind) with distinct rewrite_index form one group. When
    indices repeat under a key (e.g. several questions about one image), the key is split by prompt, and rows
    whose index still repeats stand alone."""
    by_key: dict[tuple, list[PreferencePair]] = defaultdict(list)
    for pair in pairs:
        by_key[(pair.source_description_id or pair.image_id, pair.kind)].append(pair)
    groups: list[list[PreferencePair]] = []
    for rows in by_key.values():
        if _distinct_indices(rows):
            groups.append(rows)
            continue
        by_prompt: dict[str, list[PreferencePair]] = defaultdict(list)
        for row in rows:
            by_prompt[row.prompt].append(row)
        for same_prompt in by_prompt.values():
            groups.extend([same_prompt] if _distinct_indices(same_prompt) else [[row] for row in same_prompt])
    return groups


def _distinct_indices(rows: list[PreferencePair]) -> bool:
    return len({row.rewrite_index for row in rows}) == len(rows)


def parse_mix(mix: str) -> tuple[float, float]:
    """'DESC:QA' repeat factors, e.g. '2:1'."""
    parts = mix.split(":")
    try:
        desc, qa = (float(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"data_mix must look like 'DESC:QA' with two numbers, e.g. '2:1' (quoted in YAML); got '{mix}'"
        ) from None
    if desc < 0 or qa < 0 or desc + qa == 0:
        raise ValueError(f"data_mix repeats must be >= 0 and not both 0; got '{mix}'")
    return desc, qa


class PreferenceDataset(torch.utils.data.Dataset):
    """A map-style dataset whose content is re-planned each epoch: which groups appear (the mix), in which
    order, and which rewrite of each. The plan depends only on (seed, epoch), so it is the same on every
    process and after a resume; the trainer reads it sequentially."""

    def __init__(self, groups: list[list[PreferencePair]], mix: str = "1:1", seed: int = 0, shuffle: bool = True):
        self.groups = groups
        self.repeats = dict(zip(("desc", "qa"), parse_mix(mix)))
        self.seed = seed
        self.shuffle = shuffle
        # pair_id -> reference (chosen sum, chosen tokens, rejected sum, rejected tokens), when precomputed
        self.reference: dict[str, tuple[float, float, float, float]] | None = None
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.plan = self._plan(epoch)

    def _plan(self, epoch: int) -> list[PreferencePair]:
        rng = random.Random(f"hadpo:{self.seed}:{epoch}")
        chosen_groups: list[list[PreferencePair]] = []
        for kind, repeat in self.repeats.items():
            groups = [group for group in self.groups if group[0].kind == kind]
            whole, fraction = int(repeat), repeat - int(repeat)
            chosen_groups += groups * whole + rng.sample(groups, round(fraction * len(groups)))
        if self.shuffle:
            rng.shuffle(chosen_groups)
        return [rng.choice(group) for group in chosen_groups]

    def pairs(self) -> list[PreferencePair]:
        """Every pair row of every group (all rewrites), in group order."""
        return [pair for group in self.groups for pair in group]

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> dict:
        pair = self.plan[index]
        return {"pair": pair, "ref": None if self.reference is None else self.reference[pair.pair_id]}

    def stats(self) -> dict:
        return {
            "pairs": sum(len(group) for group in self.groups),
            "groups": len(self.groups),
            "desc_groups": sum(group[0].kind == "desc" for group in self.groups),
            "qa_groups": sum(group[0].kind == "qa" for group in self.groups),
            "pairs_per_epoch": len(self),
        }


class AuxStream:
    """Auxiliary SFT batches as a pure function of a batch counter, so a resumed or multi-process run sees the
    same batches: global position p = c * world * batch_size + rank * batch_size + i reads example
    perm_e[p mod n] with e = p // n and perm_e a seeded permutation."""

    def __init__(self, examples: list[SFTExample], batch_size: int, seed: int = 0):
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(len(self.examples)))
            random.Random(f"hadpo-aux:{self.seed}:{epoch}").shuffle(order)
            self._perms = {epoch: order}
        return self._perms[epoch]

    def batch(self, counter: int, rank: int = 0, world_size: int = 1) -> list[SFTExample]:
        n = len(self.examples)
        start = (counter * world_size + rank) * self.batch_size
        return [self.examples[self._perm(p // n)[p % n]] for p in range(start, start + self.batch_size)]

    def batches_before(self, micro_step: int, ratio: float) -> int:
        """How many aux batches micro-steps 0..micro_step-1 consumed at `ratio` aux batches per DPO batch."""
        return math.floor(micro_step * ratio + 1e-9)
