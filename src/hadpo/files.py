"""Files a stage reads or writes besides its JSONL records: JSON and other formats read with one-line errors,
folders checked before a run's work, append-only files repaired after a kill, and images checked whole."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from hadpo.errors import one_line
from hadpo.records import RecordError, describe_error

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """`data` as JSON at `path`, written aside and renamed: a kill leaves the old file or the new one, never half of
    it (the aside file is named for the process, so processes writing the same file do not share one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    temporary.write_text(text + ("\n" if indent is not None else ""), encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_json(path: str | Path):
    """The data of a JSON file; invalid JSON or a file that is not text is a RecordError naming FILE:LINE."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})") from None
    except UnicodeDecodeError:
        raise RecordError(f"{path}: not UTF-8 text (is it a JSON file?)") from None


@contextmanager
def file_format(path: str | Path, what: str):
    """Reading `path` as `what` (e.g. "COCO instances JSON"): a missing key or a value of the wrong type inside
    becomes one RecordError naming the file and the format, not a KeyError traceback."""
    try:
        yield
    except KeyError as error:
        raise RecordError(f"{path}: not {what}: missing key {error}") from None
    except (TypeError, AttributeError, IndexError) as error:
        raise RecordError(f"{path}: not {what}: {error}") from None
    except ValidationError as error:
        raise RecordError(f"{path}: not {what}: {describe_error(error)}") from None


def drop_torn_tail(path: str | Path) -> bool:
    """Remove a last line without its line break (a run killed while appending) from an append-only JSONL file, so
    a resumed run redoes that record instead of stopping on it; returns whether one was dropped (logged)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
    data = path.read_bytes()
    with path.open("r+b") as handle:  # cut in place: a kill during the repair loses nothing more
        handle.truncate(data.rfind(b"\n") + 1)
    log.warning("%s: last line is incomplete (interrupted run); dropped and redone", path)
    return True


def check_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check, before a run's work, that the folder it will write to can be a folder: a file in its place or in
    the place of one of its parents is an error naming it."""
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise RecordError(f"{what} {path}: {parent} exists and is not a folder")
    return path


def ensure_dir(path: str | Path, what: str = "output folder") -> Path:
    """`check_dir`, then create the folder."""
    path = check_dir(path, what)
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_problem(path: str | Path) -> str:
    """What stops `path` from being read as an image ("" when nothing does): missing, not a file, or truncated or
    corrupt (the whole file is decoded, so a bad image fails when its dataset is loaded, not mid-run)."""
    from PIL import Image  # (imported here: most readers of records never open an image)

    path = Path(path)
    if not path.is_file():
        return "image not found" if not path.exists() else "not an image file (a folder)"
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # PIL raises many types for corrupt data
        return f"unreadable image ({type(error).__name__}: {one_line(error)[:80]})"
    return ""
