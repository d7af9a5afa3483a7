"""Which checkpoint a `--resume` continues from (moved out of run.py to keep it under the size limit)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hadpo.records import RecordError

log = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir: str | Path) -> Path:
    """The newest checkpoint-N of `output_dir` whose save finished. The Trainer writes trainer_state.json last,
    so a run killed inside a save leaves a folder without it (or with it cut short): that folder is passed over
    (logged) and left for the next save of step N to overwrite."""
    folders = sorted(
        (
            p
            for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
            if p.is_dir() and p.name.rpartition("-")[2].isdigit()
        ),
        key=lambda p: int(p.name.rpartition("-")[2]),
        reverse=True,
    )
    for folder in folders:
        try:
            state = json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
            complete = state.get("global_step") == int(folder.name.rpartition("-")[2])
        except (OSError, ValueError):
            complete = False
        if complete:
            return folder
        log.warning("%s: incomplete checkpoint (the save was interrupted); resuming from an earlier one", folder)
    raise RecordError(
        f"--resume: no complete checkpoint in output_dir {output_dir}"
        f"{f' ({len(folders)} incomplete)' if folders else ''}; run without --resume to start over"
    )
