"""MME (Fu et al. 2023, arXiv 2306.13394): read the official benchmark layout, write and read the per-subtask
result files of the official scoring tool, and score them.

Layout: one folder per subtask; either `images/` + `questions_answers_YN/` (posters, celebrity, scene, landmark,
artwork) or images and `.txt` files side by side; each `.txt` holds two lines `question<TAB>answer` about the
image with the same stem. Result files: `<subtask>.txt` with lines `image<TAB>question<TAB>gt<TAB>prediction`.

Two protocols (docs/evaluation.md). `reference`, the default, is the official tool's `calculation.py`: a line is
exactly four tab-separated fields (anything else, a blank line included, stops it: here an error naming the line),
an image's two questions are two consecutive lines, and the prediction is lower-cased as written: "yes"/"no"
exactly, else "yes" or "no" within the first 4 characters, else "other" (wrong; so "  Yes" is wrong). `hadpo`
strips the prediction first, pairs the questions by image name, keeps a tab inside a prediction, and skips (and
counts) blank and malformed lines. Score per subtask = 100 * acc (share of questions right) + 100 * acc+ (share
of images with both questions right), max 200; perception = sum of 10 subtasks (max 2000), cognition = sum of 4
(max 800).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hadpo.records import RecordError

log = logging.getLogger(__name__)

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
PROTOCOLS = ("reference", "hadpo")
RESULT_LINE = "image<TAB>question<TAB>yes|no<TAB>prediction"
LINE_BREAKS = re.compile(r"[\t\r\n]")


@dataclass
class MMEQuestion:
    subtask: str
    image: str  # file name inside the subtask's image folder
    image_path: Path
    question: str
    answer: str  # "yes" | "no" (ground truth, lower-cased)

    @property
    def question_id(self) -> str:
        return f"{self.subtask}/{self.image}/{self.question}"


def read_mme(root: str | Path, subtasks: tuple[str, ...] | None = None) -> tuple[list[MMEQuestion], int]:
    """All questions under an MME root (the 14 official subtasks that are present, or `subtasks`). A missing
    subtask folder, a folder without answer files, a bad line or an image without its file is logged as one line
    and skipped; returns (questions, skipped records)."""
    root = Path(root)
    if not root.is_dir():
        raise RecordError(f"--root {root}: not a folder")
    if not any((root / name).is_dir() for name in subtasks or PERCEPTION + COGNITION):
        raise RecordError(f"--root {root}: no MME subtask folder in it (expected {', '.join(PERCEPTION[:3])}, ...)")
    questions: list[MMEQuestion] = []
    skipped = 0
    for subtask in subtasks or PERCEPTION + COGNITION:
        folder = root / subtask
        if not folder.is_dir():
            if subtasks:
                log.warning("%s: subtask folder missing; skipped", folder)
                skipped += 1
            continue
        if (folder / "questions_answers_YN").is_dir():
            text_folder, image_folder = folder / "questions_answers_YN", folder / "images"
        else:
            text_folder = image_folder = folder
        answer_files = sorted(text_folder.glob("*.txt"))
        if not answer_files:
            log.warning("%s: no question/answer .txt files; subtask skipped", text_folder)
            skipped += 1
            continue
        for answer_file in answer_files:
            image_path = next(
                (
                    image_folder / (answer_file.stem + s)
                    for s in IMAGE_SUFFIXES
                    if (image_folder / (answer_file.stem + s)).exists()
                ),
                None,
            )
            if image_path is None:
                log.warning("%s: no image %s.* beside it; skipped", answer_file, answer_file.stem)
                skipped += 1
                continue
            for number, line in enumerate(answer_file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.rstrip("\n").split("\t")
                answer = parts[-1].strip().lower() if len(parts) >= 2 else ""
                if len(parts) != 2 or answer not in ("yes", "no"):
                    log.warning("%s:%d: expected 'question<TAB>yes|no'; skipped", answer_file, number)
                    skipped += 1
                    continue
                questions.append(MMEQuestion(subtask, image_path.name, image_path, parts[0].strip(), answer))
    if not questions:
        raise RecordError(f"--root {root}: no question found ({skipped} subtasks, files or lines skipped)")
    return questions, skipped


def parse_prediction(text: str, protocol: str = "reference") -> str:
    """'yes' | 'no' | 'other' by the official rule; the hadpo protocol strips the text first."""
    text = text.strip().lower() if protocol == "hadpo" else text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


@dataclass
class MMEResult:
    """One result line: which image, which question, the ground truth and the raw prediction."""

    image: str
    question: str
    answer: str
    prediction: str


def write_results(folder: str | Path, subtask: str, rows: list[MMEResult]) -> Path:
    """`<folder>/<subtask>.txt` in the official tool's format. Tabs and line breaks in a prediction become spaces
    (the official reader takes one line of four fields); the rest is written as the model wrote it."""
    path = Path(folder) / f"{subtask}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join([r.image, r.question, r.answer, LINE_BREAKS.sub(" ", r.prediction)]) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_results(folder: str | Path, protocol: str = "reference") -> tuple[dict[str, list[MMEResult]], int]:
    """{subtask: rows} from `<subtask>.txt` result files. The reference protocol reads a file as calculation.py
    does and raises on a line it would stop at (a RecordError naming file and line); the hadpo protocol logs,
    counts and skips bad lines. Returns (rows per subtask, skipped lines)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown MME protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    results: dict[str, list[MMEResult]] = {}
    skipped = 0
    if not Path(folder).is_dir():
        raise RecordError(f"--results {folder}: not a folder")
    if not any(Path(folder).glob("*.txt")):
        raise RecordError(f"--results {folder}: no <subtask>.txt result files in it")
    for path in sorted(Path(folder).glob("*.txt")):
        if protocol == "reference":
            results[path.stem] = _read_reference(path)
            continue
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t", 3)
            if len(parts) < 3 or parts[2].strip().lower() not in ("yes", "no"):
                log.warning("%s:%d: expected '%s'; skipped", path, number, RESULT_LINE)
                skipped += 1
                continue
            prediction = parts[3] if len(parts) == 4 else ""
            rows.append(MMEResult(parts[0], parts[1], parts[2].strip().lower(), prediction))
        results[path.stem] = rows
    for name, rows in results.items():
        if not rows and name in PERCEPTION + COGNITION:  # would score 0 in the total, as if every answer were wrong
            raise RecordError(f"{Path(folder) / name}.txt: no result lines")
    if not set(results) & set(PERCEPTION + COGNITION):
        raise RecordError(
            f"--results {folder}: no file is named after an MME subtask ({', '.join(PERCEPTION[:3])}"
            ", ...): perception and cognition would be 0"
        )
    return results, skipped


def _read_reference(path: Path) -> list[MMEResult]:
    with path.open(encoding="utf-8") as handle:
        lines = handle.readlines()  # the official reader: universal newlines, every line kept
    rows = []
    for number, line in enumerate(lines, start=1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise RecordError(
                f"{path}:{number}: expected '{RESULT_LINE}', found {len(parts)} tab-separated "
                f"field(s); the official calculation.py stops here (--protocol hadpo skips the line)"
            )
        image, question, answer, prediction = parts
        if answer.lower() not in ("yes", "no"):
            raise RecordError(f"{path}:{number}: ground truth {answer!r} is not yes/no")
        rows.append(MMEResult(image, question, answer.lower(), prediction.removesuffix("\n")))
    if len(rows) % 2:
        raise RecordError(
            f"{path}: {len(rows)} lines; the official calculation.py reads an image's two questions "
            "as two consecutive lines"
        )
    return rows


def score_subtask(rows: list[MMEResult], protocol: str = "reference") -> dict:
    """acc, acc+ (as fractions) and score = 100 * (acc + acc+) for one subtask. An image's questions are two
    consecutive rows (reference) or the rows with its name (hadpo)."""
    marks = [parse_prediction(row.prediction, protocol) == row.answer for row in rows]
    if protocol == "reference":
        per_image = [marks[i : i + 2] for i in range(0, len(marks), 2)]
    else:
        by_name: dict[str, list[bool]] = {}
        for row, mark in zip(rows, marks):
            by_name.setdefault(row.image, []).append(mark)
        per_image = list(by_name.values())
    acc = sum(marks) / len(rows) if rows else 0.0
    # acc+ needs every question of an image right (two per image in MME).
    acc_plus = sum(all(image) for image in per_image) / len(per_image) if per_image else 0.0
    return {
        "acc": acc,
        "acc_plus": acc_plus,
        "score": 100 * acc + 100 * acc_plus,
        "questions": len(rows),
        "images": len(per_image),
        "other": sum(parse_prediction(r.prediction, protocol) == "other" for r in rows),
    }


def score_mme(results: dict[str, list[MMEResult]], protocol: str = "reference") -> dict:
    """Per-subtask scores and the perception / cognition totals over the subtasks present."""
    subtasks = {name: score_subtask(rows, protocol) for name, rows in results.items()}
    return {
        "protocol": protocol,
        "subtasks": subtasks,
        # Summed in the official order, as calculation.py adds them (the same floats to the last digit).
        "perception": sum(subtasks[name]["score"] for name in PERCEPTION if name in subtasks),
        "cognition": sum(subtasks[name]["score"] for name in COGNITION if name in subtasks),
        "perception_subtasks": sum(name in PERCEPTION for name in subtasks),
        "cognition_subtasks": sum(name in COGNITION for name in subtasks),
    }
