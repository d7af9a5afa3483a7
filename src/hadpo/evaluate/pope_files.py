"""POPE's question and answer files: read the official question files (JSON lines `question_id`, `image`, `text`,
`label`), write them as the released files are written (integer ids), and line answers up with their questions,
by id or, in the official answer format, by line.

A file that would score other answers than the model gave is an error naming its line: a question or answer id
written twice, an answer to a question the file does not hold, official-format answers whose count or questions
differ from the question file's (shifted by a line). A malformed question line is logged and skipped (counted by
the scorer as `skipped_questions`); an empty answer is the scorer's business (the reference reads it as "yes").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from hadpo.records import PopeQuestion, RecordError, json_objects

log = logging.getLogger(__name__)


def read_questions(path: str | Path) -> tuple[list[PopeQuestion], int]:
    """Read an official POPE question file (JSON lines). A bad line (not JSON, a missing field, a label that is
    not yes/no) is logged as `FILE:LINE: why` and skipped; returns (questions, skipped). A file without a question
    and a repeated question_id are errors."""
    path = Path(path)
    questions: list[PopeQuestion] = []
    first_line: dict[str, int] = {}
    skipped = 0
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                log.warning("%s: not valid JSON (%s); skipped", where, error.msg)
                skipped += 1
                continue
            missing = [
                key
                for key in ("question_id", "image", "text", "label")
                if not isinstance(data, dict) or key not in data
            ]
            if missing:
                log.warning("%s: missing field '%s'; skipped", where, missing[0])
                skipped += 1
                continue
            label = str(data["label"]).strip().lower()
            if label not in ("yes", "no"):
                log.warning("%s: label %r is not yes/no; skipped", where, data["label"])
                skipped += 1
                continue
            question_id = str(data["question_id"])
            if question_id in first_line:
                raise RecordError(
                    f"{where}: field 'question_id': {question_id} repeats line {first_line[question_id]}; "
                    "answers are matched to questions by id"
                )
            first_line[question_id] = line_number
            questions.append(
                PopeQuestion(
                    question_id=question_id,
                    image=str(data["image"]),
                    text=str(data["text"]),
                    label=label,
                    object=str(data.get("object", "")),
                    split=str(data.get("split", "")),
                )
            )
    if not questions:
        raise RecordError(f"{path}: no questions" + (f" ({skipped} bad lines skipped)" if skipped else ""))
    return questions, skipped


def write_questions(path: str | Path, questions: Iterable[PopeQuestion]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for question in questions:
            row = question.to_json()
            if question.question_id.isdigit():  # the released files number their questions with integers
                row["question_id"] = int(question.question_id)
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_answers(
    path: str | Path, questions: list[PopeQuestion], missing: str = "error"
) -> tuple[list[str | None], int]:
    """Raw answer texts aligned with `questions`: "" (or blanks) where an answer is empty (logged, counted by the
    caller), None where it lacks its text field (logged, counted); a text field that is not a string is an error.

    Formats: official `{"question", "answer"}` lines in label order, or LLaVA-style `{"question_id", "text"}`
    (also hadpo's `Answer` records) matched by id. Errors, naming the line, since each would score other answers
    than the model gave: a line that is not JSON, a repeated question_id, an answer to a question the file does
    not hold; in the official format a line count other than the questions' or a question that differs from the
    question file's at the same line (answers shifted). A question without an answer is an error too, unless
    `missing="skip"` (hadpo's runner, which reports the images it could not read): then it is left out."""
    path = Path(path)
    rows = list(json_objects(path))
    if not rows:
        raise RecordError(f"{path}: no answers")
    if any("question_id" in d for _, d in rows):
        located, key = _answers_by_id(path, rows, questions, missing), "text"
    else:
        if len(rows) != len(questions):
            raise RecordError(
                f"{path}: {len(rows)} answers for {len(questions)} questions; the official format "
                "pairs them by line (write question_id with each answer to match them by id)"
            )
        located, key = rows, "answer"
        for (where, data), question in zip(located, questions):
            if data.get("question", question.text) != question.text:
                raise RecordError(
                    f"{where}: field 'question': {data['question']!r} is not the question file's "
                    f"{question.text!r} (question_id {question.question_id}): answers shifted?"
                )
    answers: list[str | None] = []
    for (where, data), question in zip(located, questions):
        value = data.get(key, data.get("text") if key == "answer" else None)
        if where is None:
            answers.append(None)
        elif value is not None and not isinstance(value, str):
            # A number or a list is not a model's answer text (a file another tool wrote): skipping each one
            # would score what is left, or nothing, as if the model had answered that way.
            raise RecordError(f"{where}: field '{key}': {value!r} is not an answer text (a JSON string)")
        elif value is None:
            log.warning("%s (question %s): no '%s' field; skipped", where, question.question_id, key)
            answers.append(None)
        else:
            if not value.strip():
                log.warning("%s (question %s): empty answer", where, question.question_id)
            answers.append(value)
    return answers, sum(a is None for a in answers)


def _answers_by_id(
    path: Path, rows: list[tuple[str, dict]], questions: list[PopeQuestion], missing: str
) -> list[tuple[str | None, dict]]:
    by_id: dict[str, tuple[str, dict]] = {}
    asked = {q.question_id for q in questions}
    for where, data in rows:
        if "question_id" not in data:
            raise RecordError(f"{where}: no field 'question_id' (the other lines have one)")
        question_id = str(data["question_id"])
        if question_id in by_id:
            raise RecordError(f"{where}: field 'question_id': {question_id} repeats {by_id[question_id][0]}")
        if question_id not in asked:
            raise RecordError(
                f"{where}: field 'question_id': {question_id} is not a question of the question file "
                "(answers of another split?)"
            )
        by_id[question_id] = (where, data)
    unanswered = [q.question_id for q in questions if q.question_id not in by_id]
    if unanswered and missing == "error":
        raise RecordError(
            f"{path}: no answer to {len(unanswered)} of {len(questions)} questions (first: question_id "
            f"{unanswered[0]}); score complete answer files only"
        )
    if unanswered:
        log.warning("%s: no answer to %d questions (e.g. %s); left out", path, len(unanswered), unanswered[0])
    return [by_id.get(q.question_id, (None, {})) for q in questions]
