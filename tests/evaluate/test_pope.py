"""POPE: sampling by hand-checkable rules, the official answer rule, and metrics worked out by hand."""

from __future__ import annotations

import json

import pytest

from hadpo.evaluate.pope import (
    build_pope,
    mean_over_splits,
    pope_metrics,
    question_text,
    read_questions,
    score_pope,
    write_questions,
)
from hadpo.evaluate.pope_annotations import AnnotatedImage, load_annotations
from hadpo.inference import parse_answer
from hadpo.records import RecordError

# Four images; "person" is in all of them, "car" in three, so frequency ranks person, car, dog, ...
IMAGES = [
    AnnotatedImage("1", "1.jpg", ["person", "dog", "frisbee"]),
    AnnotatedImage("2", "2.jpg", ["person", "car", "bus"]),
    AnnotatedImage("3", "3.jpg", ["person", "car", "dog", "umbrella"]),
    AnnotatedImage("4", "4.jpg", ["car", "person", "apple"]),
    AnnotatedImage("5", "5.jpg", ["car", "tree"]),  # fewer than 3 objects: never sampled
]


def _pairs(questions):
    return [(q.object, q.label) for q in questions]


def test_question_template_uses_an_before_a_vowel():
    assert question_text("apple") == "Is there an apple in the image?"
    assert question_text("dog") == "Is there a dog in the image?"


def test_popular_negatives_are_the_most_frequent_absent_objects_in_order():
    splits = build_pope(IMAGES, num_images=10, seed=0, splits=["popular"], protocol="hadpo")
    questions = splits["popular"]
    assert len(questions) == 4 * 3 * 2  # 4 eligible images x 3 positives x (yes + no)
    by_image = {}
    for q in questions:
        by_image.setdefault(q.image, []).append((q.object, q.label))
    # Counts over the 4 sampled images: person 4, car 3, dog 2, then apple, bus, frisbee, umbrella 1 each (ties
    # alphabetical). Image 1 has person, dog, frisbee: its absent objects by rank are car, apple, bus.
    assert by_image["1.jpg"] == [
        ("person", "yes"),
        ("car", "no"),
        ("dog", "yes"),
        ("apple", "no"),
        ("frisbee", "yes"),
        ("bus", "no"),
    ]
    # Image 4 (car, person, apple): absent by rank dog, bus, frisbee.
    assert by_image["4.jpg"] == [
        ("car", "yes"),
        ("dog", "no"),
        ("person", "yes"),
        ("bus", "no"),
        ("apple", "yes"),
        ("frisbee", "no"),
    ]
    assert [q.question_id for q in questions] == [str(i) for i in range(1, 25)]


def test_adversarial_negatives_co_occur_most_with_the_positive():
    questions = build_pope(IMAGES, num_images=10, seed=0, splits=["adversarial"], protocol="hadpo")["adversarial"]
    image_2 = [(q.object, q.label) for q in questions if q.image == "2.jpg"]
    # Image 2 = person, car, bus. Co-occurrence with person: car 3, dog 2, then apple, bus, frisbee, umbrella 1
    # -> the first absent one is dog. With car: person 3, then apple, bus, dog, umbrella 1 -> apple. With bus:
    # person 1, car 1 -> both in the image, the list is exhausted -> random fallback among the absent,
    # not-yet-asked objects (frisbee, umbrella).
    assert image_2[:4] == [("person", "yes"), ("dog", "no"), ("car", "yes"), ("apple", "no")]
    assert image_2[4] == ("bus", "yes") and image_2[5][1] == "no" and image_2[5][0] in {"frisbee", "umbrella"}


def test_random_negatives_are_absent_and_never_repeated_and_the_build_is_deterministic():
    first = build_pope(IMAGES, num_images=4, seed=7, protocol="hadpo")
    assert first == build_pope(IMAGES, num_images=4, seed=7, protocol="hadpo")
    for split, questions in first.items():
        assert len(questions) == 4 * 6, split
        for image in {q.image for q in questions}:
            objects = next(im.objects for im in IMAGES if im.image == image)
            negatives = [q.object for q in questions if q.image == image and q.label == "no"]
            assert len(set(negatives)) == 3 and not set(negatives) & set(objects)
    # The three splits ask about the same sampled images and the same positives.
    assert [q for q in first["random"] if q.label == "yes"] == [
        q.__class__(**{**q.__dict__, "split": "random"}) for q in first["adversarial"] if q.label == "yes"
    ]
    # Sampling 2 of the 4 eligible images depends on the seed only.
    assert build_pope(IMAGES, num_images=2, seed=3, protocol="hadpo") == build_pope(
        IMAGES, num_images=2, seed=3, protocol="hadpo"
    )


def test_official_parsing_keeps_its_quirks_and_strict_mode_does_not():
    assert parse_answer("No, there is no dog.") == "no"
    assert parse_answer("Yes. There is not a cat.") == "yes"  # only the text before the first '.' counts
    assert parse_answer("There is not a dog") == "no"
    assert parse_answer("NO") == "yes" and parse_answer("Nope") == "yes"  # official quirks, kept on purpose
    assert parse_answer("no,") == "no"  # commas are removed first
    assert parse_answer("NO", strict=True) == "no"
    assert parse_answer("Nope", strict=True) == "other"
    assert parse_answer("Yes, a dog.", strict=True) == "yes"


def test_metrics_worked_out_by_hand():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "yes", "no", "yes", "no", "no", "other", "other"]
    # TP = 2 (q1, q2); FP = 1 (q4); TN = 2 (q5, q6); FN = 2 (q3, q8); q7 ("other" on a no) is in no cell.
    # accuracy = (2 + 2) / 8 = 0.5; precision = 2 / 3; recall = 2 / 4 = 0.5;
    # F1 = 2 * (2/3) * 0.5 / (2/3 + 0.5) = (2/3) / (7/6) = 4/7; yes_ratio = 3 predicted yes / 8.
    metrics = pope_metrics(labels, preds)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(4 / 7)
    assert metrics["yes_ratio"] == pytest.approx(3 / 8)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"], metrics["other"]) == (2, 1, 2, 2, 2)


def test_mean_over_splits_is_the_unweighted_mean():
    a = {"accuracy": 0.8, "precision": 0.9, "recall": 0.6, "f1": 0.72, "yes_ratio": 0.4}
    b = {"accuracy": 0.6, "precision": 0.5, "recall": 0.8, "f1": 0.6, "yes_ratio": 0.6}
    assert mean_over_splits({"random": a, "popular": b}) == pytest.approx(
        {"accuracy": 0.7, "precision": 0.7, "recall": 0.7, "f1": 0.66, "yes_ratio": 0.5}
    )


def _write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_score_reads_both_answer_formats_and_counts_bad_records(tmp_path, caplog):
    questions = _write_lines(
        tmp_path / "q.jsonl",
        [
            {"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"},
            {"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "label": "no"},
            {"question_id": 3, "image": "b.jpg", "text": "Is there a cup in the image?", "label": "maybe"},
            {"question_id": 4, "image": "b.jpg", "txt": "Is there a car in the image?", "label": "no"},
            {"question_id": 5, "image": "b.jpg", "text": "Is there a bus in the image?", "label": "yes"},
            {"question_id": 6, "image": "b.jpg", "text": "Is there a cow in the image?", "label": "no"},
        ],
    )
    llava = _write_lines(
        tmp_path / "llava.jsonl",
        [
            {"question_id": 1, "text": "Yes, there is."},
            {"question_id": 2, "text": "Yes."},
            {"question_id": 5, "text": "   "},
            {"question_id": 6, "text": "No."},
        ],
    )
    result = score_pope(questions, llava, protocol="hadpo")
    # Questions 3 (label "maybe") and 4 (no "text") are skipped; the answer to 5 is empty: hadpo leaves it out.
    # Scored: 1 yes/yes (TP), 2 no/yes (FP), 6 no/no (TN): accuracy 2/3, precision 1/2, recall 1, yes_ratio 2/3.
    assert (result["skipped_questions"], result["skipped_answers"], result["n"], result["empty_answers"]) == (
        2,
        1,
        3,
        1,
    )
    assert result["accuracy"] == pytest.approx(2 / 3) and result["precision"] == pytest.approx(0.5)
    assert result["recall"] == 1.0 and result["yes_ratio"] == pytest.approx(2 / 3)
    # The reference reads the empty answer as "yes" (no "no"/"not" in it): 5 yes/yes is a TP, and it is counted.
    result = score_pope(questions, llava)
    assert (result["skipped_answers"], result["n"], result["empty_answers"], result["tp"]) == (0, 4, 1, 2)
    assert (result["accuracy"], result["yes_ratio"]) == (0.75, 0.75)
    assert f"{questions}:3: label 'maybe' is not yes/no" in caplog.text
    assert f"{questions}:4: missing field 'text'" in caplog.text

    official = _write_lines(
        tmp_path / "official.jsonl",
        [
            {"question": "Is there a dog in the image?", "answer": "Yes"},
            {"question": "Is there a cat in the image?", "answer": "No"},
            {"question": "Is there a bus in the image?", "answer": "no"},
            {"question": "Is there a cow in the image?", "answer": "not at all"},
        ],
    )
    result = score_pope(questions, official)
    # Answers out of the question file's order would be scored against other labels: an error naming the line.
    swapped = _write_lines(
        tmp_path / "swapped.jsonl",
        [
            {"question": "Is there a cat in the image?", "answer": "No"},
            {"question": "Is there a dog in the image?", "answer": "Yes"},
            {"question": "Is there a bus in the image?", "answer": "no"},
            {"question": "Is there a cow in the image?", "answer": "no"},
        ],
    )
    with pytest.raises(RecordError, match=rf"^{swapped}:1: field 'question': .* answers shifted\?$"):
        score_pope(questions, swapped)
    # TP (q1), TN (q2), FN (q5), TN (q6): accuracy 3/4, precision 1, recall 1/2, yes_ratio 1/4.
    assert (result["accuracy"], result["precision"], result["recall"], result["yes_ratio"]) == (0.75, 1.0, 0.5, 0.25)


def test_a_file_of_which_nothing_is_scored_is_no_result(tmp_path):
    """Metrics over no answer read 0.00: `hadpo eval pope score` refuses the file instead of printing them."""
    from hadpo.evaluate.suite import score_pope_answers

    rows = [{"question_id": i, "image": "0.png", "text": "Is there a dog?", "label": "yes"} for i in range(2)]
    questions = _write_lines(tmp_path / "pope_random.jsonl", rows)
    empty = _write_lines(tmp_path / "empty.jsonl", [{"question_id": 0, "text": ""}, {"question_id": 1, "text": " "}])
    # The reference reads an empty answer as "yes" and scores it; the hadpo protocol leaves it out: nothing left.
    assert score_pope_answers(questions, empty)["n"] == 2
    with pytest.raises(RecordError, match=r"empty.jsonl: no answer could be scored \(2 skipped: empty, left out"):
        score_pope_answers(questions, empty, protocol="hadpo")


def test_build_from_image_records_and_coco_and_round_trip(image_records, tmp_path):
    images = load_annotations(image_records, image_root=tmp_path)
    # Fixture images 0 and 2 have 3 objects each; 1 and 3 have fewer.
    splits = build_pope(images, num_images=500, seed=0)
    assert {q.image for q in splits["random"]} == {"images/0.png", "images/2.png"}
    write_questions(tmp_path / "pope_random.jsonl", splits["random"])
    read_back, skipped = read_questions(tmp_path / "pope_random.jsonl")
    assert read_back == splits["random"] and skipped == 0

    coco = {
        "images": [{"id": 9, "file_name": "COCO_9.jpg"}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "hot dog"}],
        "annotations": [{"image_id": 9, "category_id": c} for c in (2, 1, 2, 3)],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    assert load_annotations(tmp_path / "instances.json") == [
        AnnotatedImage("9", "COCO_9.jpg", ["cat", "dog", "hot dog"])
    ]
    vg = [{"image_id": 5, "objects": [{"names": ["Tree"]}, {"names": ["man"]}, {"names": ["tree"]}]}]
    (tmp_path / "objects.json").write_text(json.dumps(vg))
    assert load_annotations(tmp_path / "objects.json") == [AnnotatedImage("5", "5.jpg", ["tree", "man"])]
