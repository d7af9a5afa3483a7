"""MME's default protocol against the official tool's own outputs.

data/mme/results/ holds one result file per subtask (3 to 6 images each) written for the cases where the readers
differ: predictions with leading spaces ("  Yes"), an image whose two questions are not consecutive lines (count),
CRLF line ends (OCR), a last line without a line break (color), empty and unclear predictions.
expected_scores.json is what the official tool's calculation.py (the MME eval_tool.zip of
BradyFU/Awesome-Multimodal-Large-Language-Models, Evaluation branch) prints for that folder. A tab inside a
prediction, a blank line and an odd number of lines stop calculation.py (ValueError, ValueError, AssertionError).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hadpo.evaluate.mme import read_results, score_mme
from hadpo.records import RecordError

DATA = Path(__file__).parent / "data" / "mme"


def test_scores_equal_the_official_tool():
    expected = json.loads((DATA / "expected_scores.json").read_text())
    rows, skipped = read_results(DATA / "results")
    scores = score_mme(rows)
    assert skipped == 0
    assert {name: s["score"] for name, s in scores["subtasks"].items()} == expected["subtasks"]
    assert (scores["perception"], scores["cognition"]) == (expected["perception"], expected["cognition"])


def test_hadpo_protocol_on_the_same_files():
    """The size of the difference (docs/evaluation.md): stripping "  Yes" (existence 70 -> 100, position 87.5 ->
    125) and pairing by image name (count 133.3 -> 100) move perception from 1085.8 to 1120.0."""
    scores = score_mme(read_results(DATA / "results", "hadpo")[0], "hadpo")
    subtasks = {name: round(s["score"], 2) for name, s in scores["subtasks"].items()}
    assert (subtasks["existence"], subtasks["position"], subtasks["count"]) == (100.0, 125.0, 100.0)
    assert round(scores["perception"], 2) == 1120.0


@pytest.mark.parametrize(
    "content, message",
    [
        ("a.jpg\tq1\tYes\tYes\tit is\na.jpg\tq2\tNo\tno\n", r"existence.txt:1: .*found 5 tab-separated"),
        ("a.jpg\tq1\tYes\tYes\n\na.jpg\tq2\tNo\tno\n", r"existence.txt:2: .*found 1 tab-separated"),
        ("a.jpg\tq1\tYes\tYes\na.jpg\tq2\tNo\tno\nb.jpg\tq1\tYes\tyes\n", r"existence.txt: 3 lines"),
    ],
)
def test_lines_the_official_tool_stops_at_are_errors(tmp_path, content, message):
    shutil.copytree(DATA / "results", tmp_path / "results")
    (tmp_path / "results" / "existence.txt").write_text(content)
    with pytest.raises(RecordError, match=message):
        read_results(tmp_path / "results")
    rows, skipped = read_results(tmp_path / "results", "hadpo")  # hadpo keeps the tab, skips the blank line
    assert len(rows["existence"]) == 2 + content.count("b.jpg") and skipped == 0
