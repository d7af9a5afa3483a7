"""POPE's default protocol against the reference code's own outputs.

data/pope/ holds a synthetic POPE input (segmentation.jsonl: 160 images, objects drawn from overlapping families so
that counts tie) and what RUCAIBox/POPE (commit 3df3ba1) makes of it: expected_<split>.jsonl are the files its
utils.pope writes when run as its main.py does (`random.seed(0)`, images with >= 3 objects, `random.sample` of 60,
then the random, popular and adversarial splits from the same stream), with the asked object added as `object`
(its question text reads "imange" where "an" is needed: the released files and hadpo write "image").
answers_adversarial.jsonl is a set of answers in its answer format (24 of 360 empty), and
expected_scores_adversarial.json is what its evaluate.py prints for them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hadpo.evaluate.pope import SPLITS, build_pope_files, score_pope

DATA = Path(__file__).parent / "data" / "pope"


@pytest.mark.parametrize("protocol", ["reference", "hadpo"])
def test_builder_writes_the_reference_files(tmp_path, protocol):
    paths = build_pope_files(DATA / "segmentation.jsonl", tmp_path, num_images=60, seed=0, protocol=protocol)
    differing = 0
    for split in SPLITS:
        expected = [json.loads(line) for line in (DATA / f"expected_{split}.jsonl").read_text().splitlines()]
        written = [json.loads(line) for line in paths[split].read_text().splitlines()]
        fields = ("question_id", "image", "object", "label")
        differing += sum([row[f] for f in fields] != [ours[f] for f in fields] for row, ours in zip(expected, written))
        assert len(written) == len(expected) == 360
        assert all(isinstance(row["question_id"], int) for row in written)  # as in the released files
    # The hadpo protocol samples the images in id order, draws each split from its own stream and breaks ties
    # alphabetically: the same kind of files, other questions.
    assert differing == (0 if protocol == "reference" else 282)


def test_scorer_counts_empty_answers_as_the_reference_does():
    expected = json.loads((DATA / "expected_scores_adversarial.json").read_text())
    scored = score_pope(DATA / "expected_adversarial.jsonl", DATA / "answers_adversarial.jsonl")
    for name in ("tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "yes_ratio", "empty_answers"):
        assert scored[name] == expected[name], name
    assert (scored["n"], scored["skipped_answers"]) == (360, 0)
    # hadpo's protocol leaves the 24 empty answers out: accuracy 0.6548 instead of 0.6417.
    hadpo = score_pope(DATA / "expected_adversarial.jsonl", DATA / "answers_adversarial.jsonl", protocol="hadpo")
    assert (hadpo["n"], hadpo["skipped_answers"], round(hadpo["accuracy"], 4)) == (336, 24, 0.6548)
