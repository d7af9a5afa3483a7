"""What "complete" means for a stage of a chain: its folder holds `done.json`, written last and atomically (aside,
then renamed), with the stage's summary. A stage without it is redone; the stage's own files make the redo
cheap: a pair build resumes from its append-only files, a training from its newest complete checkpoint, an
evaluation from its answer files. A chain killed anywhere thus continues from the last complete stage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hadpo.files import write_json_atomic

log = logging.getLogger("hadpo.rounds")

DONE = "done.json"


def finished(folder: Path) -> dict | None:
    """The summary of a completed stage, or None (no marker, or one that cannot be read: redo the stage)."""
    try:
        summary = json.loads((folder / DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def run_stage(folder: Path, name: str, work: Callable[[], dict]) -> dict:
    """The stage's summary: read from its marker when it completed before, else `work()` then the marker."""
    summary = finished(folder)
    if summary is not None:
        log.info("%s: complete (%s)", name, folder / DONE)
        return summary
    log.info("%s: running in %s", name, folder)
    folder.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    summary = {**work(), "seconds": round(time.perf_counter() - begun, 1)}
    write_json_atomic(folder / DONE, summary)
    return summary
