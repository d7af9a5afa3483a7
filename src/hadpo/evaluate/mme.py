"""MME (Fu et al. 2023, arXiv 2306.13394): read the official benchmark layout, write and read the per-subtask
result files of the official scoring tool, and score them.

Layout: one folder per subtask; either `images/` + `questions_answers_YN/` (posters, celebrity, scene, landmark,
artwork) or images and `.txt` files side by side; each `.txt` holds two lines `question<TAB>answer` about the
image with the same stem. Result files: `<subtask>.txt` with lines `image<TAB>question<TAB>gt<TAB>prediction`.

Parsing (the official tool): lower-case; "yes"/"no" exactly, else "yes" or "no" within the first 4 characters,
else "other" (wrong). Score per subtask = 100 * acc (share of questions right) + 100 * acc+ (share of images with
both questions right), max 200; perception = sum of 10 subtasks (max 2000), cognition = sum of 4 (max 800).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")


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
            image_path = next((image_folder / (answer_file.stem + s) for s in IMAGE_SUFFIXES
                               if (image_folder / (answer_file.stem + s)).exists()), None)
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
    return questions, skipped


def parse_prediction(text: str) -> str:
    """'yes' | 'no' | 'other', the official rule."""
    text = text.strip().lower()
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
    """`<folder>/<subtask>.txt` in the official tool's format; tabs and newlines in predictions become spaces."""
    path = Path(folder) / f"{subtask}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{r.image}\t{r.question}\t{r.answer}\t{' '.join(r.prediction.split())}" for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_results(folder: str | Path) -> tuple[dict[str, list[MMEResult]], int]:
    """{subtask: rows} from `<subtask>.txt` result files; bad lines are logged and counted."""
    results: dict[str, list[MMEResult]] = {}
    skipped = 0
    for path in sorted(Path(folder).glob("*.txt")):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t", 3)
            if len(parts) < 3 or parts[2].strip().lower() not in ("yes", "no"):
                log.warning("%s:%d: expected 'image<TAB>question<TAB>yes|no<TAB>prediction'; skipped", path, number)
                skipped += 1
                continue
            prediction = parts[3] if len(parts) == 4 else ""
            rows.append(MMEResult(parts[0], parts[1], parts[2].strip().lower(), prediction))
        results[path.stem] = rows
    return results, skipped


def score_subtask(rows: list[MMEResult]) -> dict:
    """acc, acc+ (as fractions) and score = 100 * (acc + acc+) for one subtask."""
    per_image: dict[str, list[bool]] = {}
    for row in rows:
        per_image.setdefault(row.image, []).append(parse_prediction(row.prediction) == row.answer)
    correct = sum(sum(marks) for marks in per_image.values())
    acc = correct / len(rows) if rows else 0.0
    # acc+ needs every question of an image right (two per image in MME).
    acc_plus = sum(all(marks) for marks in per_image.values()) / len(per_image) if per_image else 0.0
    return {"acc": acc, "acc_plus": acc_plus, "score": 100 * acc + 100 * acc_plus, "questions": len(rows),
            "images": len(per_image), "other": sum(parse_prediction(r.prediction) == "other" for r in rows)}


def score_mme(results: dict[str, list[MMEResult]]) -> dict:
    """Per-subtask scores and the perception / cognition totals over the subtasks present."""
    subtasks = {name: score_subtask(rows) for name, rows in results.items()}
    return {
        "subtasks": subtasks,
        "perception": sum(s["score"] for name, s in subtasks.items() if name in PERCEPTION),
        "cognition": sum(s["score"] for name, s in subtasks.items() if name in COGNITION),
        "perception_subtasks": sum(name in PERCEPTION for name in subtasks),
        "cognition_subtasks": sum(name in COGNITION for name in subtasks),
    }
