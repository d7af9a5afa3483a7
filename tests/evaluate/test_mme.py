"""MME: both folder layouts, the official parsing rule, and acc / acc+ / totals worked out by hand."""

from __future__ import annotations

import pytest

from hadpo.evaluate.mme import (
    MMEResult,
    parse_prediction,
    read_mme,
    read_results,
    score_mme,
    score_subtask,
    write_results,
)
from hadpo.records import RecordError


def _touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a jpg")


def test_reads_both_layouts_and_reports_bad_records(tmp_path, caplog):
    # Side by side: existence/1.jpg + 1.txt.
    _touch_image(tmp_path / "existence" / "1.jpg")
    (tmp_path / "existence" / "1.txt").write_text(
        "Is there a dog? Please answer yes or no.\tYes\nIs there a cat? Please answer yes or no.\tNo\n"
    )
    # A txt whose image is missing, and a line with a bad answer.
    (tmp_path / "existence" / "2.txt").write_text("Is there a cow?\tyes\n")
    _touch_image(tmp_path / "existence" / "3.png")
    (tmp_path / "existence" / "3.txt").write_text("Is there a cow?\tmaybe\nIs there a hen?\tno\n")
    # images/ + questions_answers_YN/.
    _touch_image(tmp_path / "posters" / "images" / "tt01.jpg")
    (tmp_path / "posters" / "questions_answers_YN").mkdir(parents=True)
    (tmp_path / "posters" / "questions_answers_YN" / "tt01.txt").write_text("Is it Up?\tyes\nIs it Cars?\tno\n")
    # A subtask folder without answer files.
    _touch_image(tmp_path / "scene" / "a.jpg")
    questions, skipped = read_mme(tmp_path)
    assert [(q.subtask, q.image, q.answer) for q in questions] == [
        ("existence", "1.jpg", "yes"),
        ("existence", "1.jpg", "no"),
        ("existence", "3.png", "no"),
        ("posters", "tt01.jpg", "yes"),
        ("posters", "tt01.jpg", "no"),
    ]
    assert questions[3].image_path == tmp_path / "posters" / "images" / "tt01.jpg"
    assert skipped == 3  # 2.txt without image, the "maybe" line, scene without answer files
    assert f"{tmp_path / 'existence' / '3.txt'}:1: expected" in caplog.text
    assert f"{tmp_path / 'scene'}: no question/answer .txt files" in caplog.text


def test_official_parsing():
    assert parse_prediction("Yes") == "yes" and parse_prediction(" no ") == "no"
    assert parse_prediction("Yes, it is.") == "yes"  # "yes" within the first 4 characters
    assert parse_prediction("No, it is not.") == "no"
    assert parse_prediction("The answer is yes") == "other"
    assert parse_prediction("Nope") == "no"  # "no" in "nope"[:4]
    assert parse_prediction("I do not know") == "other"


def test_scores_worked_out_by_hand(tmp_path):
    existence = [
        MMEResult("a.jpg", "q1", "yes", "Yes"),
        MMEResult("a.jpg", "q2", "no", "No"),  # both right
        MMEResult("b.jpg", "q1", "yes", "Yes"),
        MMEResult("b.jpg", "q2", "no", "Yes"),  # one right
        MMEResult("c.jpg", "q1", "yes", "maybe"),
        MMEResult("c.jpg", "q2", "no", "no."),  # one right ("other")
    ]
    # acc = 4 right / 6 questions; acc+ = 1 image of 3 with both right; score = 100 * (2/3 + 1/3) = 100.
    scores = score_subtask(existence)
    assert scores["acc"] == pytest.approx(2 / 3) and scores["acc_plus"] == pytest.approx(1 / 3)
    assert scores["score"] == pytest.approx(100.0) and scores["other"] == 1
    code = [MMEResult("x.png", "q1", "yes", "yes"), MMEResult("x.png", "q2", "no", "no")]  # 100 + 100 = 200
    count = [MMEResult("y.png", "q1", "yes", "no"), MMEResult("y.png", "q2", "no", "yes")]  # 0
    write_results(tmp_path, "existence", existence)
    write_results(tmp_path, "code_reasoning", code)
    write_results(tmp_path, "count", count)
    (tmp_path / "broken.txt").write_text("only\ttwo\n")
    results, skipped = read_results(tmp_path, protocol="hadpo")
    assert results["existence"] == existence and skipped == 1
    with pytest.raises(RecordError, match=r"broken.txt:1: expected .*found 2 tab-separated"):
        read_results(tmp_path)  # the official calculation.py stops at such a line
    (tmp_path / "broken.txt").unlink()
    assert read_results(tmp_path)[0] == {name: rows for name, rows in results.items() if name != "broken"}
    totals = score_mme(results)
    # Perception = existence 100 + count 0; cognition = code_reasoning 200.
    assert (totals["perception"], totals["cognition"]) == (pytest.approx(100.0), pytest.approx(200.0))
    assert (totals["perception_subtasks"], totals["cognition_subtasks"]) == (2, 1)
