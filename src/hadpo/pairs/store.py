"""On-disk bookkeeping shared by the pair-construction stages: the files of a build folder, append-only JSONL
with resume by record id, and the event ledger from which `stats.json` is counted.

Every stage appends its records as it goes and, when rerun, skips the ids already written, so an interrupted
build resumes where it stopped and nothing already written is lost (issue 4, "Operational"). Skips and drops are
appended to `events.jsonl` (one line each, also logged as one clear line naming the record); stats count them
once per (stage, record, reason), so a resumed build reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from hadpo.files import drop_torn_tail, write_json_atomic
from hadpo.records import Description, Event, Judgement, RewriteSet, iter_jsonl, read_keyed, write_jsonl

log = logging.getLogger("hadpo.pairs")


@dataclass(frozen=True)
class BuildFiles:
    """The files of one build folder; each stage reads the previous stage's file and writes its own."""

    root: Path

    @property
    def images(self) -> Path:  # ImageRecord, validated (image readable, annotations consistent)
        return self.root / "images.jsonl"

    @property
    def describe_answers(self) -> Path:  # hadpo.inference's Answer records (resumable by id)
        return self.root / "describe_answers.jsonl"

    @property
    def descriptions(self) -> Path:  # Description
        return self.root / "descriptions.jsonl"

    @property
    def judgements(self) -> Path:  # Judgement, one per description (failed ones included)
        return self.root / "judgements.jsonl"

    @property
    def rewrites(self) -> Path:  # RewriteSet, one per hallucinated description
        return self.root / "rewrites.jsonl"

    @property
    def qa_answers(self) -> Path:  # Answer records of the target model to the QA questions (optional)
        return self.root / "qa_answers.jsonl"

    @property
    def pairs(self) -> Path:  # PreferencePair: the product
        return self.root / "pairs.jsonl"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def config(self) -> Path:  # the resolved build config, saved beside the outputs
        return self.root / "config.yaml"

    @property
    def cache(self) -> Path:  # LLM answer cache
        return self.root / "llm_cache"

    def check(self) -> None:
        """Make the folder's append-only files safe to resume from: a last line cut by a kill is dropped (its
        record is redone), and a record id written twice is an error naming both lines (a stage that looks
        records up by id would pair the image of one with the text of the other)."""
        for path in (
            self.descriptions,
            self.judgements,
            self.rewrites,
            self.events,
            self.describe_answers,
            self.qa_answers,
        ):
            drop_torn_tail(path)
        for path, model in (
            (self.descriptions, Description),
            (self.judgements, Judgement),
            (self.rewrites, RewriteSet),
        ):
            if path.exists():
                read_keyed(path, model, "description_id")


class Ledger:
    """Appends skip / drop events and logs each as one line naming the record."""

    def __init__(self, path: Path):
        self.path = path

    def record(
        self, stage: str, record_id: str, kind: str, reason: str, message: str = "", already_logged: bool = False
    ) -> None:
        # Bad input is worth a warning (once: the LLM judge warns about its own failures); a dropped candidate
        # pair is the checks doing their job.
        level = logging.WARNING if kind == "skipped" and not already_logged else logging.DEBUG
        log.log(level, "%s: %s %s (%s)%s", stage, kind, record_id, reason, f": {message}" if message else "")
        write_jsonl(
            self.path, [Event(stage=stage, record_id=record_id, kind=kind, reason=reason, message=message)], append=True
        )

    def skip(self, stage: str, record_id: str, reason: str, message: str = "", already_logged: bool = False) -> None:
        self.record(stage, record_id, "skipped", reason, message, already_logged)

    def drop(self, stage: str, record_id: str, reason: str, message: str = "") -> None:
        self.record(stage, record_id, "dropped", reason, message)

    def counts(self, kind: str) -> dict[str, int]:
        """reason -> number of distinct (stage, record) with that reason."""
        if not self.path.exists():
            return {}
        seen = {(e.stage, e.record_id, e.reason) for e in iter_jsonl(self.path, Event) if e.kind == kind}
        return dict(sorted(Counter(reason for _, _, reason in seen).items()))


def done_ids(path: Path, model: type[BaseModel], key: str) -> set[str]:
    """Ids (field `key`) of the records already in `path`: what a resumed stage skips."""
    return {getattr(record, key) for record in iter_jsonl(path, model)} if path.exists() else set()


def append(path: Path, records: Iterable[BaseModel]) -> int:
    return write_jsonl(path, records, append=True)


def write_atomic(path: Path, records: Iterable[BaseModel]) -> int:
    """Replace a derived file whole: written aside and renamed, so a crash never leaves half of it."""
    temporary = path.with_name(path.name + ".tmp")
    count = write_jsonl(temporary, records)
    temporary.replace(path)
    return count


def update_stats(path: Path, sections: dict) -> dict:
    """Merge sections into stats.json (sections of other runs or tools are kept); written aside and renamed."""
    stats = json.loads(path.read_text()) if path.exists() else {}
    stats.update(sections)
    write_json_atomic(path, stats, sort_keys=True)
    return stats
