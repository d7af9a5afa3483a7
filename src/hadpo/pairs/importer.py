"""`hadpo pairs import`: the HA-DPO release's own data (`desc_data.json`, `pope_data.json`) plus a Visual Genome
image folder -> `pairs.jsonl`, so a user can train on the paper's pairs (arXiv 2311.16839; the release's formats
below).

  desc_data.json  MiniGPT-4 / InstructBLIP: a list of {"image_id", "chosen": [3 texts], "rejected": [3 texts]};
                  LLaVA: a dict {image_id: {"chosen": [...], "rejected": [...]}}. Rewrite i of the chosen texts
                  is paired with rewrite i of the rejected ones (rewrite_index i + 1; the release samples one of
                  each once at load time instead, so every epoch sees the same pairing).
  pope_data.json  a list of {"image_id", "question", "answer", "chosen", "reject" | "rejected", ["correct"]};
                  entries with correct == true are skipped, as the release's loaders do.

The release does not store the description prompt; a prompt of the describe pool is picked per image, seeded.
Images are `<image_dir>/<image_id>.jpg`; an entry whose image is missing, that lacks a field, whose chosen and
rejected lists differ in length (they pair by position) or whose chosen text equals its rejected one is skipped
with one line naming it and counted. An import that keeps no pair fails and writes no pairs.jsonl.
"""

from __future__ import annotations

import random
from pathlib import Path

from hadpo.errors import RunFailed
from hadpo.files import ensure_dir, read_json
from hadpo.pairs.describe import DESCRIBE_PROMPTS
from hadpo.pairs.store import Ledger, update_stats, write_atomic
from hadpo.records import PreferencePair, RecordError


def _entries(path: str | Path) -> list[dict]:
    data = read_json(path)
    if isinstance(data, dict):  # LLaVA's layout: {image_id: {...}}
        data = [{"image_id": key, **value} if isinstance(value, dict) else value for key, value in data.items()]
    if not isinstance(data, list):
        raise RecordError(
            f"{path}: expected a JSON list of entries or an object {{image_id: entry}}, got {type(data).__name__}"
        )
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise RecordError(f"{path}: entry {index}: expected a JSON object, got {type(entry).__name__}")
    return data


def _text_list(value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def import_release(
    output: str | Path,
    image_dir: str | Path,
    desc_data: str | Path | None = None,
    pope_data: str | Path | None = None,
    seed: int = 0,
) -> dict:
    """Write pairs.jsonl (+ stats.json and events.jsonl beside it) from the release files; returns the stats."""
    if desc_data is None and pope_data is None:
        raise ValueError("import: give desc_data.json and/or pope_data.json")
    output = Path(output)
    if not Path(image_dir).is_dir():
        raise RecordError(f"--image-dir {image_dir}: not a folder")
    desc_entries = _entries(desc_data) if desc_data else []
    pope_entries = _entries(pope_data) if pope_data else []
    if output.is_dir():
        raise RecordError(f"--output {output}: is a folder; give the pairs.jsonl file to write")
    ensure_dir(output.parent, "--output's folder")
    images = _ReleaseImages(Path(image_dir).resolve(), Ledger(output.parent / "events.jsonl"))
    described = _description_pairs(desc_entries, images, seed)
    asked, marked_correct = _question_pairs(pope_entries, images)
    pairs = described + asked
    skipped = images.ledger.counts("skipped")
    if not pairs:
        raise RunFailed(
            f"no pairs imported from {len(desc_entries)} desc_data and {len(pope_entries)} pope_data "
            f"entries (skipped: {', '.join(f'{k} {v}' for k, v in skipped.items()) or 'none'}; "
            f"{marked_correct} marked correct); {output} not written"
        )
    write_atomic(output, pairs)
    stats = {
        "pairs": {"desc": len(described), "qa": len(asked), "total": len(pairs)},
        "qa_skipped_correct": marked_correct,
        "skipped": skipped,
    }
    update_stats(output.parent / "stats.json", stats)
    return stats


class _ReleaseImages:
    """The release's images, `<image_dir>/<image_id>.jpg`; an entry without one is skipped in the ledger."""

    def __init__(self, image_dir: Path, ledger: Ledger):
        self.image_dir, self.ledger = image_dir, ledger

    def path(self, entry_id: str, image_id) -> str | None:
        if image_id in (None, ""):
            self.ledger.skip("import", entry_id, "missing_field", "image_id")
            return None
        path = self.image_dir / f"{image_id}.jpg"
        if not path.exists():
            self.ledger.skip("import", entry_id, "missing_image", str(path))
            return None
        return str(path)


def _description_pairs(entries: list[dict], images: _ReleaseImages, seed: int) -> list[PreferencePair]:
    """desc_data: rewrite i of the chosen texts paired with rewrite i of the rejected ones."""
    pairs = []
    for index, entry in enumerate(entries):
        entry_id = f"desc_data[{index}] (image {entry.get('image_id')})"
        path = images.path(entry_id, entry.get("image_id"))
        chosen, rejected = _text_list(entry.get("chosen")), _text_list(entry.get("rejected"))
        if path is None:
            continue
        if not chosen or not rejected:
            images.ledger.skip("import", entry_id, "missing_field", "chosen/rejected empty")
            continue
        if len(chosen) != len(rejected):
            # Rewrite i of the chosen texts pairs with rewrite i of the rejected ones: unequal lists cannot pair.
            images.ledger.skip("import", entry_id, "count_mismatch", f"{len(chosen)} chosen, {len(rejected)} rejected")
            continue
        image_id = str(entry["image_id"])
        prompt = random.Random(f"{seed}:{image_id}").choice(DESCRIBE_PROMPTS)
        for rewrite, (good, bad) in enumerate(zip(chosen, rejected), start=1):
            if good == bad:
                images.ledger.skip("import", f"{entry_id} rewrite {rewrite}", "identical_texts", "chosen == rejected")
                continue
            pairs.append(
                PreferencePair(
                    images=[path],
                    prompt=prompt,
                    chosen=good,
                    rejected=bad,
                    kind="desc",
                    image_id=image_id,
                    pair_id=f"desc:{image_id}:{index}:r{rewrite}",
                    judge="ha-dpo-release",
                    rewrite_index=rewrite,
                )
            )
    return pairs


def _question_pairs(entries: list[dict], images: _ReleaseImages) -> tuple[list[PreferencePair], int]:
    """pope_data: one QA pair per entry the release does not mark correct; returns the pairs and that count."""
    pairs, marked_correct = [], 0
    for index, entry in enumerate(entries):
        entry_id = f"pope_data[{index}] (image {entry.get('image_id')})"
        if entry.get("correct") is True:
            marked_correct += 1
            continue
        path = images.path(entry_id, entry.get("image_id"))
        question = entry.get("question", "")
        chosen = entry.get("chosen", "")
        rejected = entry.get("reject", entry.get("rejected", ""))
        if path is None:
            continue
        if not all(isinstance(t, str) and t.strip() for t in (question, chosen, rejected)):
            images.ledger.skip("import", entry_id, "missing_field", "question/chosen/reject")
            continue
        if chosen.strip() == rejected.strip():
            images.ledger.skip("import", entry_id, "identical_texts", "chosen == reject")
            continue
        image_id = str(entry["image_id"])
        pairs.append(
            PreferencePair(
                images=[path],
                prompt=question.strip(),
                chosen=chosen.strip(),
                rejected=rejected.strip(),
                kind="qa",
                image_id=image_id,
                pair_id=f"qa:{image_id}:{index}",
                judge="ha-dpo-release",
            )
        )
    return pairs, marked_correct
