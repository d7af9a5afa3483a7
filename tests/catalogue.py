"""The catalogue of bad inputs (docs/errors.md), as tests: each case builds a real bad input in a fresh folder, runs
the real command line (`hadpo.cli.main`) on it, and checks what a user sees and keeps:

- the exit code the case states (2 bad input, 1 the run stopped or produced nothing);
- stderr ends in exactly one error line, equal to the case's message (its {placeholders} filled with the paths
  the case made; "…" stands for text a library writes, such as a decoder's reason), and holds no traceback;
- no file that existed before the run was changed or removed (no data lost), and none of the case's `absent`
  outputs was written.

Each wing's module lists its cases; `check_documented` makes sure docs/errors.md shows every case with the same
message and exit code, so the catalogue and its tests cannot drift apart.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hadpo.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


@dataclass
class Context:
    """What a case's setup works with: its folder, pytest's monkeypatch, and (LLM cases) the scripted server."""

    tmp: Path
    monkeypatch: object = None
    server: object = None
    names: dict = field(default_factory=dict)  # placeholder -> text, for the expected message

    def path(self, name: str, relative: str) -> Path:
        """tmp/relative, remembered as placeholder {name}."""
        path = self.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self.names[name] = str(path)
        return path

    def write(self, name: str, relative: str, text: str | bytes) -> Path:
        path = self.path(name, relative)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path


@dataclass
class Case:
    id: str
    what: str  # the bad input, in words (docs/errors.md's second column)
    setup: Callable[[Context], list[str]]  # makes the input, returns the command line
    message: str  # the error line after "hadpo: error: "
    code: int = 2
    absent: tuple[str, ...] = ()  # files (relative to the case folder) the failed run must not write

    def __str__(self) -> str:
        return self.id


def image(path: Path, size: tuple[int, int] = (48, 48), colour=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def truncated_png(path: Path) -> Path:
    """A PNG cut in the middle of its image data: its header reads, its pixels do not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = random.Random(0).randbytes(64 * 64 * 3)  # incompressible, so half the file is half the pixels
    Image.frombytes("RGB", (64, 64), noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _pattern(message: str, names: dict) -> re.Pattern:
    """The expected line as a regex: placeholders filled, "…" matching anything, the rest literal."""
    parts = re.split(r"(\{\w+\}|…)", message)
    regex = ""
    for part in parts:
        if part == "…":
            regex += ".*?"
        elif re.fullmatch(r"\{\w+\}", part):
            regex += re.escape(names[part[1:-1]])
        else:
            regex += re.escape(part)
    return re.compile(regex)


def run_case(case: Case, context: Context, capsys) -> str:
    """Run one case and check it; returns the error line."""
    argv = case.setup(context)
    before = _snapshot(context.tmp)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("hadpo: error:")]
    assert len(lines) == 1 and err.rstrip("\n").splitlines()[-1] == lines[0], err
    line = lines[0].removeprefix("hadpo: error: ")
    assert _pattern(case.message, context.names).fullmatch(line), f"\n{line}\n{case.message}"
    assert code == case.code, (code, line)
    after = _snapshot(context.tmp)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert changed == [], f"changed or removed by the failed run: {changed}"
    written = [name for name in case.absent if (context.tmp / name).exists()]
    assert written == [], f"written by the failed run: {written}"
    return line


def check_documented(cases: list[Case]) -> None:
    """Every case is a row of docs/errors.md: `| id | what | exit | message |` with the same exit and message."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if len(cells) >= 4:
                rows[cells[0].strip("`")] = cells
    for case in cases:
        assert case.id in rows, f"{case.id} is not in docs/errors.md"
        _, _, code, message = rows[case.id][:4]
        assert code == str(case.code), f"{case.id}: docs say exit {code}, the test {case.code}"
        assert message == f"`{case.message}`", f"{case.id}: docs say {message}, the test `{case.message}`"
