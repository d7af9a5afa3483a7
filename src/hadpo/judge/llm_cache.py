"""The LLM client's on-disk answer cache: one JSON file per request, keyed by the content hash of the model, the
messages and the decoding settings, so that a rerun with the same inputs makes no request and costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool = False


def request_key(model: str, messages: list[dict], params: dict) -> str:
    """Content hash of a request: the same model, messages and decoding settings give the same key."""
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    """Completions under `folder/<key[:2]>/<key>.json`; no folder, no cache."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder else None

    def _path(self, key: str) -> Path | None:
        return self.folder / key[:2] / f"{key}.json" if self.folder else None

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Completion(data["text"], data["prompt_tokens"], data["completion_tokens"], cached=True)
        except (OSError, ValueError, KeyError):
            log.warning("ignoring unreadable cache entry %s", path)
            return None

    def put(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }
        # Write then rename: a crash mid-write never leaves a half entry that a rerun would trust.
        temporary = path.with_suffix(f".{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(data), encoding="utf-8")
        temporary.replace(path)
